"""ProcessHandle: the render side's owner of one worker process, the base of every feature's handle.

It owns what every worker needs and what used to be written out once per handle: spawning (the "spawn"
context, one torch / BLAS / OpenMP thread in the child's environment), the pipe (`_send`, `_wait`,
`_drain`), restart with back-off when the process dies or hangs, hang detection (a subclass's own
silence rule, or the heartbeat of heartbeat.py), teardown (quit, then terminate, then kill) and the
/dev/shm hygiene that goes with it (`_release` frees the feature's segments on every teardown).  A dead
worker becomes one line in `error`, as concurrent.futures.process turns one into BrokenProcessPool.

A feature's handle subclasses it and supplies the process target (`_target`), what to do with each
message (`_handle`), what to send after a spawn (`_spawned`) and what to free (`_release`).  Only numpy
and the standard library: the render process imports every handle, and never torch.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing as mp
import os
import time
import weakref
from collections.abc import Callable

from convscope.engine.proc.heartbeat import Beat, Heartbeat

# One thread per worker: the nets are small, the machine is shared with the render loop, and threads
# cost more in wake-ups than they save.  Set in the child's environment before numpy / torch load there.
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
STOPPED, READY = "stopped", "ready"  # states every handle has; subclasses add theirs in between
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.25, 8.0  # a worker that keeps dying is restarted ever more slowly


class ProcessHandle:
    """One worker process for the render loop.  Subclasses set the class attributes and the hooks."""

    process_name = "convscope-worker"  # the child's process name
    what = "worker process"  # how messages name it: "the training process", ...
    join_s = 1.0  # seconds a graceful close waits for the process to quit by itself
    heartbeat = False  # give the process a heartbeat segment (its name is the target's `pulse` argument)

    def __init__(self, *, hang_timeout: float | None = None) -> None:
        if hang_timeout is not None and not hang_timeout > 0:
            raise ValueError(
                f"hang_timeout must be a positive number of seconds or None, got {hang_timeout!r}"
            )
        self._hang_timeout = hang_timeout
        self._ctx = mp.get_context("spawn")  # fork would copy the GL context and the render threads
        self._proc: mp.process.BaseProcess | None = None
        self._conn = None
        self._lost = False  # the pipe hit EOF or a send failed: the process is gone even if not reaped
        self._heart: Heartbeat | None = None
        self._state = STOPPED
        self.error: str | None = None  # the last problem as one line; the subclass clears it when ready
        self.restarts = 0
        self._fail_streak = 0  # restarts since the process was last ready; drives the back-off
        self._next_restart = 0.0
        self._closed = False
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit)

    # -- hooks for subclasses ------------------------------------------------------------------

    def _target(self) -> tuple[Callable, tuple, dict]:
        """The process's entry point, the arguments after the pipe, and keyword arguments."""
        raise NotImplementedError

    def _handle(self, msg: object) -> None:
        """Act on one message from the process."""
        raise NotImplementedError

    def _spawned(self) -> None:
        """Called right after a (re)spawn: send what the new process needs first."""

    def _release(self) -> None:
        """Free the feature's segments and end its jobs: the process is gone (or going)."""

    def _quit_message(self) -> object | None:
        """What asks the process to end by itself on close(); None: terminate it."""
        return None

    def _silence(self, now: float) -> str | None:
        """Why the live process counts as hung now, or None.  Default: its heartbeat went quiet."""
        if self._heart is None or self._hang_timeout is None:
            return None
        beat = self._heart.read(now)
        if beat.count == 0 or beat.silent_s < self._hang_timeout:
            return None  # not beating yet (still starting up) or beating
        return f"{self.what} not responding for {beat.silent_s:.0f} s ({self._describe(beat)})"

    def _describe(self, beat: Beat) -> str:
        """Where a beat says the worker was, in words (subclasses name their phases)."""
        return f"phase {beat.phase}"

    def _prepare_restart(self) -> str:
        """Called before a restart tears the old process down: keep what the new one should start from.
        Returns what the restart brings back, in words, appended to the restart message."""
        return ""

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The subclass's own handshake state; "ready" once the process serves requests."""
        return self._state

    @property
    def ready(self) -> bool:
        return self._state == READY

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self._lost and self._proc.is_alive()

    @property
    def closed(self) -> bool:
        return self._closed

    def beat(self) -> Beat | None:
        """The newest heartbeat (None for a worker without one, or none running)."""
        return self._heart.read() if self._heart is not None else None

    # -- lifecycle -----------------------------------------------------------------------------

    def launch(self) -> None:
        """Start the process without waiting; what it says arrives through the subclass's poll()."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        if self._proc is None:
            self._spawn()

    def check(self) -> bool:
        """Restart the process if it died or hung (with back-off while it keeps dying before it is
        ready); True if it restarted now.  Call once per frame."""
        if self._closed or self._proc is None:
            return False
        now = time.monotonic()
        if self.alive:
            why = self._silence(now)
            if why is None:
                return False
            self._proc.kill()  # SIGKILL: works on a stopped or deadlocked process too
            self._proc.join(5.0)
            why = f"{why}; restarted it"
        elif now < self._next_restart:
            return False  # it died again before it ever got ready: back off instead of spawning per frame
        else:
            self._drain()  # it may have said why before it went
            why = f"{self.what} died (exit code {self._proc.exitcode}); restarted it"
        note = self._prepare_restart()
        self._teardown(graceful=False)
        self.restarts += 1
        self._fail_streak += 1
        self._next_restart = now + min(BACKOFF_FIRST_S * 2 ** (self._fail_streak - 1), BACKOFF_MAX_S)
        self.error = why + note
        self._spawn()
        return True

    def _ready_now(self) -> None:
        """The subclass saw the process get ready: a later death restarts it at once again."""
        self._fail_streak = 0
        self._next_restart = 0.0

    def close(self) -> None:
        """Stop the process and free every segment.  Idempotent; also runs at interpreter exit."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        quit_msg = self._quit_message()
        if self.alive and quit_msg is not None:
            self._send(quit_msg)
        self._teardown(graceful=quit_msg is not None)

    def __enter__(self):
        self.launch()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipe ------------------------------------------------------------------------------

    def _send(self, msg: object) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.send(msg)
            return True
        except (OSError, ValueError):
            self._lost = True
            return False

    def _wait(self, timeout: float) -> None:
        """Block up to `timeout` for a message, then handle everything waiting."""
        if self._conn is None:
            time.sleep(timeout)
            return
        try:
            ready = self._conn.poll(timeout)
        except (EOFError, OSError):
            self._lost = True
            return
        if ready:
            self._drain()

    def _drain(self) -> None:
        try:
            while self._conn is not None and self._conn.poll(0):
                self._handle(self._conn.recv())
        except (EOFError, OSError):
            self._lost = True

    # -- internals -----------------------------------------------------------------------------

    def _spawn(self) -> None:
        target, args, kwargs = self._target()
        if self.heartbeat:
            self._heart = Heartbeat()
            kwargs = {**kwargs, "pulse": self._heart.name}
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=target, args=(child, *args), kwargs=kwargs, name=self.process_name, daemon=True
        )
        # The child inherits this environment at exec: one thread before numpy / torch load there.
        saved = {k: os.environ.get(k) for k in ONE_THREAD}
        os.environ.update(ONE_THREAD)
        try:
            proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()  # only the process holds its end, so its death reads as EOF here
        self._proc, self._conn, self._lost = proc, parent, False
        self._spawned()

    def _teardown(self, graceful: bool) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None:
            if graceful:
                proc.join(self.join_s)
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
            proc.join()
            proc.close()
        if conn is not None:
            conn.close()
        if self._heart is not None:
            self._heart.close()
            self._heart = None
        self._lost = False
        self._release()


def _close_at_exit(ref: weakref.ref) -> None:
    handle = ref()
    if handle is not None:
        handle.close()
