"""ProcessHandle (engine/proc/handle.py) and the heartbeat (engine/proc/heartbeat.py) with a tiny worker.

The worker below needs no torch: it answers pings, reports its thread environment, beats, sleeps inside
a covered stretch, blocks outside one, or dies at once.  Checked: spawn and the first message, one thread
in the child's environment (and the parent's left as it was), a dead worker restarted with back-off and
one clear error line, a silent worker killed and restarted, a long covered stretch left alone, and
teardown leaving neither a process nor a /dev/shm segment behind.
Run: python -m pytest tests/test_proc_handle.py -q
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from convscope.engine.proc.handle import BACKOFF_FIRST_S, ONE_THREAD, ProcessHandle
from convscope.engine.proc.heartbeat import NoPulse, Pulse
from convscope.engine.proc.shm import list_segments, segment_prefix


def tiny_main(conn, mode: str = "serve", pulse: str | None = None) -> None:
    """The worker: "serve" answers messages, "crash" exits with status 3 at once."""
    if mode == "crash":
        os._exit(3)
    beat = Pulse(pulse, period=0.05) if pulse else NoPulse()
    conn.send(("ready", os.environ.get("OMP_NUM_THREADS")))
    try:
        while True:
            beat.beat(0, 1)
            if not conn.poll(0.02):
                continue
            msg = conn.recv()
            if msg[0] == "quit":
                return
            if msg[0] == "ping":
                conn.send(("pong", msg[1]))
            elif msg[0] == "long":  # legitimately long: the pulse thread beats through it
                with beat.during(1, 7, 4096):
                    time.sleep(msg[1])
                conn.send(("done", msg[1]))
            elif msg[0] == "stuck":  # outside any covered stretch: goes silent
                time.sleep(msg[1])
    except (EOFError, OSError):
        pass
    finally:
        beat.close()


class TinyHandle(ProcessHandle):
    process_name = "convscope-tiny"
    what = "the tiny process"

    def __init__(self, mode: str = "serve", *, heartbeat: bool = False, hang_timeout=None) -> None:
        super().__init__(hang_timeout=hang_timeout)
        self.mode = mode
        self.heartbeat = heartbeat
        self.got: list = []
        self.released = 0

    def _target(self):
        return tiny_main, (self.mode,), {}

    def _handle(self, msg) -> None:
        self.got.append(msg)
        if msg[0] == "ready":
            self._ready_now()

    def _quit_message(self):
        return ("quit",)

    def _release(self) -> None:
        self.released += 1

    def _describe(self, beat) -> str:
        return f"phase {beat.phase}, {beat.a}, {beat.b}"

    def wait_for(self, tag: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.got:
                if msg[0] == tag:
                    self.got.remove(msg)
                    return msg
            self._wait(0.05)
        raise TimeoutError(f"no {tag!r} within {timeout} s; got {self.got}")


@pytest.fixture(autouse=True)
def clean_shm():
    yield
    assert list_segments(segment_prefix()) == [], "segments left in /dev/shm"


def test_spawn_answers_and_runs_with_one_thread():
    before = os.environ.get("OMP_NUM_THREADS")
    with TinyHandle() as h:
        assert h.wait_for("ready")[1] == ONE_THREAD["OMP_NUM_THREADS"]
        assert os.environ.get("OMP_NUM_THREADS") == before, "the parent's environment changed"
        h._send(("ping", 7))
        assert h.wait_for("pong") == ("pong", 7)
        pid = h.pid
        assert h.alive and not h.check()
    assert h.closed and h.pid is None and h.released == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    h.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        h.launch()


def test_a_dying_worker_is_restarted_with_back_off_and_one_error_line():
    h = TinyHandle("crash")
    try:
        h.launch()
        waits, restarted = [], []
        for n in range(1, 4):
            h._proc.join(30)
            now = time.monotonic()
            while not h.check():  # backing off: check() answers False until the wait is over
                assert time.monotonic() - now < 10, "never restarted"
                time.sleep(0.01)
            t = time.monotonic()
            assert h.restarts == n
            waits.append(h._next_restart - t)  # the back-off just set, less the spawn it took
            restarted.append(t)
        assert h.error == "the tiny process died (exit code 3); restarted it", h.error
        # Each death before the worker was ever ready doubles the wait before the next restart (timed
        # from the restart, so a busy machine's slow spawns only shorten what is left of it).
        expected = [BACKOFF_FIRST_S * 2**k for k in range(3)]
        assert all(e - 0.25 < w <= e + 1e-6 for w, e in zip(waits, expected, strict=True)), (waits, expected)
        spacing = [b - a for a, b in zip(restarted, restarted[1:], strict=False)]
        # (t is read after check() returned, the back-off is timed inside it: a few ms of slack.)
        assert all(d >= e - 0.01 for d, e in zip(spacing, expected[:2], strict=True)), (spacing, expected)
        h._proc.join(30)
        h._next_restart = time.monotonic() + 60  # a long back-off: check() must keep waiting
        assert not h.check() and h.restarts == 3, "restarted within the back-off"
    finally:
        h.close()


def test_a_silent_worker_is_killed_and_restarted_but_a_long_covered_stretch_is_not():
    h = TinyHandle(heartbeat=True, hang_timeout=1.0)
    try:
        h.launch()
        h.wait_for("ready")
        h._send(("long", 2.5))  # 2.5 timeouts, beating
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            assert not h.check(), h.error
            time.sleep(0.05)
        assert h.wait_for("done", 5.0) == ("done", 2.5)
        assert h.beat().count > 0 and h.restarts == 0
        pid = h.pid
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        while not h.check():
            assert time.monotonic() - t0 < 5.0, "a stopped worker was not detected"
            time.sleep(0.05)
        assert time.monotonic() - t0 >= 0.9
        assert h.pid != pid and h.restarts == 1
        assert h.error.startswith("the tiny process not responding for 1 s (phase 0, 1, 0)"), h.error
        h.wait_for("ready")
        h._send(("stuck", 30.0))  # blocked outside a covered stretch: silent
        t0 = time.monotonic()
        while not h.check():
            assert time.monotonic() - t0 < 5.0, "a stuck worker was not detected"
            time.sleep(0.05)
        assert h.restarts == 2
    finally:
        h.close()
