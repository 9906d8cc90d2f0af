"""Shared-memory slots (engine/proc/shm.py): round trips, the seqlock, ownership and the resource tracker.

No torch, no worker: writers in other processes are plain `python -c` scripts.
Run: python -m pytest tests/test_shm.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from convscope.engine.proc.shm import PREFIX, Slot, list_segments, segment_prefix

REPO = Path(__file__).resolve().parents[1]
HAS_DEV_SHM = os.path.isdir("/dev/shm")


@pytest.fixture
def owned():
    """Slots created by a test; always unlinked and closed, even when the test fails."""
    slots: list[Slot] = []
    yield slots
    for slot in slots:
        slot.unlink()
        slot.close()


def test_names_carry_prefix_and_pid(owned):
    slot = Slot.create(16)
    owned.append(slot)
    assert slot.name.startswith(segment_prefix()) and slot.name.startswith(PREFIX)
    if HAS_DEV_SHM:
        assert slot.name in list_segments(segment_prefix())


def test_round_trip_between_two_mappings(owned):
    rng = np.random.default_rng(0)
    slot = Slot.create(100)
    owned.append(slot)
    other = Slot.attach(slot.name, 100)
    try:
        out = np.full(100, -1, np.float32)
        assert other.read_into(out) == (0, 0), "a fresh slot reads as seq 0"
        assert not out.any()
        data = rng.random(100, dtype=np.float32)
        slot.write(7, data, aux=3)
        assert other.read_into(out) == (7, 3)
        np.testing.assert_array_equal(out, data)
    finally:
        other.close()


def test_attach_checks_size(owned):
    slot = Slot.create(50)
    owned.append(slot)
    with pytest.raises(ValueError, match="holds 50 floats, expected 60"):
        Slot.attach(slot.name, 60)


def test_reader_refuses_a_write_in_progress(owned):
    slot = Slot.create(8)
    owned.append(slot)
    payload = slot.begin_write()
    payload[:] = 1.0
    out = np.empty(8, np.float32)
    assert slot.read_into(out, tries=10) is None, "a half-written slot must not be read"
    slot.end_write(1)
    assert slot.read_into(out) == (1, 0)
    assert (out == 1.0).all()


def test_only_the_creator_unlinks_and_memory_outlives_the_name(owned):
    slot = Slot.create(4)
    owned.append(slot)
    other = Slot.attach(slot.name, 4)
    try:
        with pytest.raises(RuntimeError, match="creator unlinks"):
            other.unlink()
        slot.unlink()
        slot.unlink()  # idempotent
        if HAS_DEV_SHM:
            assert slot.name not in list_segments(PREFIX)
        slot.write(5, np.arange(4, dtype=np.float32))
        out = np.empty(4, np.float32)
        assert other.read_into(out) == (5, 0), "both mappings still share memory after unlink"
        np.testing.assert_array_equal(out, np.arange(4, dtype=np.float32))
    finally:
        other.close()
        other.close()  # idempotent
    assert other.closed


def test_reader_never_sees_a_torn_write(owned):
    """A writer in another process fills the whole payload with k and stores seq k, as fast as it can."""
    n, writes = 20_000, 3000
    slot = Slot.create(n)
    owned.append(slot)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                from convscope.engine.proc.shm import Slot
                s = Slot.attach({slot.name!r}, {n})
                for k in range(1, {writes} + 1):
                    s.begin_write()[:] = k
                    s.end_write(k)
                s.close()
                """
            ),
        ],
        cwd=REPO,
        env=dict(os.environ),  # the installed convscope (or the PYTHONPATH that points at a checkout)
    )
    out = np.empty(n, np.float32)
    reads, seen = 0, set()
    deadline = time.monotonic() + 60
    try:
        while writer.poll() is None and time.monotonic() < deadline:
            got = slot.read_into(out)
            if got is None:
                continue
            seq = got[0]
            lo, hi = out.min(), out.max()
            assert lo == hi == seq, f"torn read: seq {seq}, payload spans {lo}..{hi}"
            reads += 1
            seen.add(seq)
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert slot.read_into(out) == (writes, 0)
    assert reads > 0 and len(seen) > 1, (
        f"the reader should have overlapped the writer ({reads} reads, {seen})"
    )


@pytest.mark.parametrize("child_fate", ["exits", "sigkilled"])
def test_no_resource_tracker_noise(child_fate, tmp_path):
    """Create here, attach in a spawned child, unlink after its ack: stderr stays clean, /dev/shm empty."""
    script = """
        import multiprocessing as mp, os, signal, sys
        import numpy as np
        from convscope.engine.proc.shm import Slot, list_segments, segment_prefix

        def child(conn, name):
            s = Slot.attach(name, 10)
            conn.send("attached")
            if conn.recv() == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            s.write(1, np.ones(10, np.float32))
            s.close()
            conn.send("closed")

        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            slot = Slot.create(10)
            a, b = ctx.Pipe()
            p = ctx.Process(target=child, args=(b, slot.name))
            p.start()
            assert a.recv() == "attached"
            slot.unlink()
            a.send(sys.argv[1])
            if sys.argv[1] != "kill":
                assert a.recv() == "closed"
            p.join()
            out = np.empty(10, np.float32)
            print("read", slot.read_into(out))
            slot.close()
            print("left", list_segments(segment_prefix()))
    """
    # Written to a file: spawn re-imports __main__, which `python -c` does not have.
    path = tmp_path / "tracker_probe.py"
    path.write_text(textwrap.dedent(script))
    proc = subprocess.run(
        [sys.executable, str(path), "kill" if child_fate == "sigkilled" else "go"],
        cwd=REPO,
        env=dict(os.environ),  # the installed convscope (or the PYTHONPATH that points at a checkout)
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "left []" in proc.stdout, proc.stdout
    if child_fate == "exits":
        assert "read (1, 0)" in proc.stdout, proc.stdout
    for noise in ("Traceback", "KeyError", "leaked", "Warning"):
        assert noise not in proc.stderr, f"unexpected {noise!r} on stderr:\n{proc.stderr}"


def test_writing_closes_the_seqlock_even_when_the_write_fails(owned):
    """`with slot.writing(seq)`: readers see the new payload and seq after the block; a block that raises
    leaves the slot readable (no reader spins) with seq 0, so half a write is never taken for a result."""
    slot = Slot.create(4)
    owned.append(slot)
    out = np.empty(4, np.float32)
    with slot.writing(3, aux=9) as payload:
        payload[:] = [1, 2, 3, 4]
    del payload
    assert slot.read_into(out) == (3, 9) and out.tolist() == [1, 2, 3, 4]
    with pytest.raises(RuntimeError), slot.writing(4) as payload:
        payload[:2] = 7
        raise RuntimeError("the write failed halfway")
    del payload
    assert slot.read_into(out, tries=1) == (0, 0), "a failed write must read as 'nothing valid'"
