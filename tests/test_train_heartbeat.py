"""The training worker's heartbeat seen from the render side (features/training/handle.py).

A SIGSTOPped worker is taken for hung within the timeout, killed, reported with where it stopped, and
restarted from a fresh start; a step that takes longer than the timeout while the worker is alive (the
`test_step_sleep` hook sleeps inside the step) is not; a checkpoint load that blocks in open() on a FIFO
is reported, not left hanging.  Each leaves /dev/shm clean.  Uses the built-in digits (no download).
Run: python -m pytest tests/test_train_heartbeat.py -q
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from convscope.engine.proc.shm import list_segments, segment_prefix
from convscope.features.training.handle import TrainHandle

START_TIMEOUT = 120.0  # torch import + data in a fresh process, on 2 shared cores
HYPER = {"lr": 0.02, "batch_size": 8, "seed": 3}
HANG = 2.0  # seconds of silence taken for a hang in these tests


def _check_until(h: TrainHandle, seconds: float) -> bool:
    """Call check() as the render loop does for `seconds`; True as soon as it restarts the worker."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if h.check():
            return True
        h.poll()
        time.sleep(0.05)
    return False


def test_a_stopped_trainer_is_detected_reported_and_restarted():
    h = TrainHandle("digits", hyper=HYPER, val_every=10_000, hang_timeout=HANG)
    try:
        assert h.start(START_TIMEOUT), h.error
        first = h.wait_snapshot(lambda s: s.step > 0)
        assert not h.stale, "a worker that trains is not stale"
        pid = h.pid
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        # Stale shows first (the images/s on screen is out of date), then the hang is called.
        while not h.stale:
            assert time.monotonic() - t0 < HANG, "a stopped worker was not marked stale before the timeout"
            time.sleep(0.05)
        assert _check_until(h, HANG + 5.0), "a stopped worker was not detected"
        took = time.monotonic() - t0
        assert HANG <= took < HANG + 5.0, took
        assert h.pid != pid and h.restarts == 1
        assert "not responding for" in h.error and "stopped" in h.error, h.error
        assert "in step" in h.error or "between steps" in h.error, h.error
        assert "fresh start" in h.error, h.error
        again = h.wait_snapshot(lambda s: s.spec_version > first.spec_version, timeout=START_TIMEOUT)
        assert again.step >= 0 and h.alive
    finally:
        h.close()
    assert list_segments(segment_prefix()) == [], "segments left in /dev/shm"


def test_a_long_step_is_not_taken_for_a_hang():
    # Every step sleeps 1.5 timeouts inside the step, with the heartbeat thread beating through it.
    h = TrainHandle("digits", hyper=HYPER, val_every=10_000, hang_timeout=HANG, test_step_sleep=1.5 * HANG)
    try:
        assert h.start(START_TIMEOUT), h.error
        pid = h.pid
        seen_activity = None
        deadline = time.monotonic() + 4 * HANG
        while time.monotonic() < deadline:
            assert not h.check(), f"a live, long step was taken for a hang: {h.error}"
            h.poll()
            seen_activity = seen_activity or h.activity()
            time.sleep(0.05)
        assert h.pid == pid and h.restarts == 0 and h.alive
        assert h.last is not None and h.last.step >= 1, "the slow steps still complete"
        assert seen_activity is not None and seen_activity.startswith("in step"), seen_activity
        assert "batch 8" in seen_activity, seen_activity
    finally:
        h.close()
    assert list_segments(segment_prefix()) == []


def test_a_checkpoint_load_stuck_on_a_fifo_is_reported(tmp_path):
    fifo = tmp_path / "ckpt.pt"
    os.mkfifo(fifo)
    h = TrainHandle("digits", hyper=HYPER, val_every=10_000, hang_timeout=HANG, start_paused=True)
    try:
        assert h.start(START_TIMEOUT), h.error
        cmd = h.load(fifo)
        restarted = _check_until(h, HANG + 8.0)
        if not restarted:
            # Refusing a FIFO outright (regular files only) is the other acceptable answer.
            ok, text = h.replies.get(cmd, (True, ""))
            assert not ok, f"neither detected nor refused (reply {ok}, {text!r}, error {h.error})"
        else:
            assert "loading a checkpoint" in h.error and "not responding" in h.error, h.error
            assert "stopped" not in h.error.split("(")[1], "a stuck open() is not a stopped process"
    finally:
        h.close()
    assert list_segments(segment_prefix()) == []


def test_hang_timeout_must_be_positive():
    with pytest.raises(ValueError, match="hang_timeout"):
        TrainHandle("digits", hang_timeout=0.0)
