"""glibc malloc settings for a process that trains: big tensors reuse heap memory instead of new pages.

Torch on the CPU allocates each step's activations and gradients with malloc and frees them at the end of
the step.  glibc serves a block above its mmap threshold (128 kB, raised on its own up to 32 MB as blocks
are freed) with a fresh mmap, and gives the top of the heap back to the system once more than its trim
threshold lies free there.  At batch 128 the 16-20-20 net moves tens of MB a step, so a young process maps,
faults in (zero-fills) and unmaps them step after step: a fresh training process ran batch 128 at about
1,550-1,750 images/s where one tuned as below ran 1,900-2,050 (tools/bench_train.py, this 2-core machine).

`tune_for_training()` fixes both thresholds: blocks under `mmap_threshold` come from the heap, and up to
`trim_threshold` bytes of free heap are kept for the next step.  The cost is memory held after a peak (at
most `trim_threshold` more than needed), which a long-running trainer reuses anyway.  Linux with glibc
only; elsewhere (musl's mallopt is a stub, macOS and Windows have none) it changes nothing and says so.

Called by the training worker at start (features/training/process.py) and by the benchmarks' bare loops,
so the comparison stays like for like.  Needs no torch.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20  # blocks up to 64 MB from the heap: a batch-512 activation map still fits
TRIM_THRESHOLD = 256 << 20  # free heap kept for reuse before any is returned


def tune_for_training(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Set glibc's mmap and trim thresholds for this process; True when both took effect."""
    if not sys.platform.startswith("linux"):
        return False
    if not 0 < mmap_threshold <= trim_threshold:
        raise ValueError(
            f"need 0 < mmap_threshold <= trim_threshold, got {mmap_threshold} and {trim_threshold}"
        )
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # glibc answers 1 on success; musl's stub answers 0 and changes nothing.
    return (
        mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
        and mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1
    )
