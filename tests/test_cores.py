"""engine/cores.py: the render process steps off a core for the training worker, and gives it back.

Checks the kernel's affinity masks of this process's threads (one started before, one after), of a child
process named as the worker, and of one started afterwards.  Needs Linux and at least 2 usable cores.
Run: python -m pytest tests/test_cores.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from convscope.engine.cores import CoreReservation, supported

pytestmark = pytest.mark.skipif(
    not supported() or len(os.sched_getaffinity(0)) < 2, reason="needs Linux affinity and 2+ cores"
)


def _thread_cores(started: threading.Event, stop: threading.Event, out: dict) -> None:
    out["tid"] = threading.get_native_id()
    started.set()
    stop.wait(30)


def _start_thread(out: dict) -> tuple[threading.Thread, threading.Event]:
    started, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=_thread_cores, args=(started, stop, out), daemon=True)
    t.start()
    started.wait(10)
    return t, stop


def test_render_threads_leave_the_last_core_to_the_worker_and_get_it_back():
    before = os.sched_getaffinity(0)
    early: dict = {}
    t1, stop1 = _start_thread(early)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    r = CoreReservation(1)
    try:
        assert r.apply([worker.pid]) and r.active
        last = max(before)
        assert r.reserved == {last}
        assert os.sched_getaffinity(0) == before - {last}
        assert os.sched_getaffinity(early["tid"]) == before - {last}, "a thread started before apply()"
        assert os.sched_getaffinity(worker.pid) == before, "the worker may run anywhere"
        late: dict = {}
        t2, stop2 = _start_thread(late)
        assert os.sched_getaffinity(late["tid"]) == before - {last}, "threads started later inherit it"
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        helper = worker  # started before apply(): a t-SNE process, say, that should leave the core too
        try:
            assert os.sched_getaffinity(child.pid) == before - {last}, "so do processes started later"
            assert r.apply([child.pid], narrow=[helper.pid])  # a restarted worker: freed again
            assert os.sched_getaffinity(child.pid) == before
            assert os.sched_getaffinity(helper.pid) == before - {last}
        finally:
            child.kill()
            child.wait()
        r.release()
        assert not r.active
        assert os.sched_getaffinity(0) == before
        assert os.sched_getaffinity(early["tid"]) == before
        assert os.sched_getaffinity(late["tid"]) == before
        stop2.set()
        t2.join()
    finally:
        r.release()
        stop1.set()
        t1.join()
        worker.kill()
        worker.wait()
        os.sched_setaffinity(0, before)


def test_a_dead_worker_pid_or_none_is_ignored():
    before = os.sched_getaffinity(0)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    r = CoreReservation(1)
    try:
        assert r.apply([p.pid, None])
        assert os.sched_getaffinity(0) == before - r.reserved
    finally:
        r.release()
    assert os.sched_getaffinity(0) == before


def test_nothing_is_reserved_when_no_core_would_be_left():
    r = CoreReservation(len(os.sched_getaffinity(0)))
    assert not r.apply([]) and not r.active
    r.release()
    with pytest.raises(ValueError, match="at least one core"):
        CoreReservation(0)
