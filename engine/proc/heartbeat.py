"""The heartbeat: a worker says "still making progress, and here is where" through a tiny shared segment.

The render side creates the segment (`Heartbeat.create`, one per worker process, see handle.py), names it
in the spawn arguments, and unlinks it once the first beat shows the worker attached.  The worker side
(`Pulse`) writes a beat counter, a phase code and two numbers (say step and batch size); the render side
(`Heartbeat.read`) notes when the counter last moved.

Legitimately long work (a training step at batch 4096, a refit, a validation pass, waiting on the pipe
while paused) runs inside `with pulse.during(phase, a, b):`: a thread of the worker beats every `period`
seconds meanwhile.  Everything else (file I/O above all) beats only when the main loop comes round again,
so a worker blocked in open() on a FIFO goes silent, and a SIGSTOPped one stops both threads.  Only
numpy and the standard library here: both processes import it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from convscope.engine.proc.shm import Slot

BEAT_COUNT = 4  # payload floats: phase, b, seconds since the phase began, spare
PERIOD_S = 0.25  # seconds between the beats of a `during` block
MIN_GAP_S = 0.05  # the main loop's beats are written at most this often


@dataclass(frozen=True)
class Beat:
    """The newest beat, as the render side read it."""

    count: int  # beats so far; 0 before the first
    phase: int  # the worker's phase code (the feature names them)
    a: int  # two numbers that go with the phase, e.g. step and batch size
    b: int
    phase_s: float  # seconds the worker had spent in this phase when it beat
    silent_s: float  # seconds since the counter last moved, seen from here


class Heartbeat:
    """Render side: owns the segment and tells how long the worker has been silent."""

    def __init__(self) -> None:
        self.slot = Slot.create(BEAT_COUNT)
        self.name = self.slot.name
        self._buf = np.empty(BEAT_COUNT, np.float32)
        self._count = 0
        self._moved = time.monotonic()
        self._last = Beat(0, 0, 0, 0, 0.0, 0.0)

    def read(self, now: float | None = None) -> Beat:
        now = time.monotonic() if now is None else now
        if self.slot.closed:
            return self._last
        got = self.slot.read_into(self._buf)
        if got is not None and got[0] != self._count:
            self._count, self._moved = got[0], now
            if self.slot.owner:
                self.slot.unlink()  # the worker has it mapped: nothing can leak from here on
            b = self._buf
            self._last = Beat(got[0], int(b[0]), got[1], int(b[1]), float(b[2]), 0.0)
        last = self._last
        return Beat(last.count, last.phase, last.a, last.b, last.phase_s, now - self._moved)

    def restart_clock(self) -> None:
        """Silence is counted from now (a fresh process, a message that proves it is alive)."""
        self._moved = time.monotonic()

    def close(self) -> None:
        self.slot.unlink()
        self.slot.close()


class Pulse:
    """Worker side: beat from the main loop, or keep beating through a long stretch with `during`."""

    def __init__(self, name: str, period: float = PERIOD_S, min_gap: float = MIN_GAP_S) -> None:
        self._slot = Slot.attach(name, BEAT_COUNT)
        self._period = period
        self._min_gap = min_gap
        self._lock = threading.Lock()  # the seqlock wants one writer at a time: the loop or the thread
        self._count = 0
        self._phase = (0, 0, 0)
        self._since = self._written = time.monotonic()
        self._covered = 0  # depth of `during` blocks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_while_covered, name="pulse", daemon=True)
        self._thread.start()
        self.beat(force=True)

    def beat(self, phase: int | None = None, a: int = 0, b: int = 0, *, force: bool = False) -> None:
        """One beat from the main loop (with `phase`: where it is now).  Written at most every `min_gap`
        seconds unless `force`d, so a loop of millisecond steps pays a clock read per turn, not a write."""
        if phase is not None and (phase, a, b) != self._phase:
            self._phase, self._since = (phase, a, b), time.monotonic()
        if force or time.monotonic() - self._written >= self._min_gap:
            with self._lock:
                self._write()

    @contextmanager
    def during(self, phase: int, a: int = 0, b: int = 0) -> Iterator[None]:
        """A legitimately long stretch: the pulse thread beats every `period` seconds until it ends."""
        saved, since = self._phase, self._since
        self._phase, self._since = (phase, a, b), time.monotonic()
        self._covered += 1
        try:
            yield
        finally:
            self._covered -= 1
            self._phase, self._since = saved, since

    def _write(self) -> None:
        if self._slot.closed:
            return
        self._count += 1
        phase, a, b = self._phase
        self._written = now = time.monotonic()
        with self._slot.writing(self._count, a) as out:
            out[0], out[1], out[2] = phase, b, now - self._since
        del out

    def _beat_while_covered(self) -> None:
        while not self._stop.wait(self._period):
            if self._covered:
                with self._lock:
                    self._write()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._slot.close()


class NoPulse:
    """A worker run without a heartbeat (in a test, or by a tool): the same calls, doing nothing."""

    def beat(self, phase: int | None = None, a: int = 0, b: int = 0, *, force: bool = False) -> None:
        pass

    def during(self, phase: int, a: int = 0, b: int = 0) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def close(self) -> None:
        pass
