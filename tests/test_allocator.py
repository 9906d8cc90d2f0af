"""The training worker's malloc settings (features/training/allocator.py) do what they claim, on glibc.

A fresh Python mallocs, fills and frees a 40 MB block ten times (through ctypes: numpy's huge-page
advice would change the count), counting the loop's minor page faults: with glibc's defaults every round
maps fresh pages (40 MB lies above the largest mmap threshold glibc picks by itself); once tuned the heap
keeps them and only the first round faults.  Each case runs in its own interpreter, so the test process's
allocator is left alone.
Run: python -m pytest tests/test_allocator.py -q
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest
from convscope.features.training.allocator import tune_for_training

ROUNDS = 10
MB = 40

_PROBE = f"""
import ctypes, json, resource, sys
sys.path.insert(0, {repr(sys.path[0])})
from convscope.features.training.allocator import tune_for_training
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
tuned = tune_for_training() if sys.argv[1] == "tuned" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({ROUNDS}):
    a = libc.malloc({MB} << 20)
    ctypes.memset(a, 1, {MB} << 20)  # touch every page
    libc.free(a)
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({{"tuned": tuned, "faults": after - before}}))
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)


def _faults(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout)


@glibc
def test_tuned_heap_keeps_big_blocks_between_steps() -> None:
    pages = (MB << 20) // 4096
    default, tuned = _faults("default"), _faults("tuned")
    assert tuned["tuned"] is True, "mallopt refused the settings on glibc"
    # Defaults: every round faults its pages in again.  Tuned: the first round only (plus a little noise).
    assert default["faults"] >= 0.8 * ROUNDS * pages, default
    assert tuned["faults"] <= 2 * pages, tuned


def test_bad_thresholds_are_refused_by_name() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("does nothing off Linux")
    with pytest.raises(ValueError, match="mmap_threshold"):
        tune_for_training(mmap_threshold=0)
    with pytest.raises(ValueError, match="trim_threshold"):
        tune_for_training(mmap_threshold=1 << 20, trim_threshold=1 << 10)
