"""CPU cores for a worker that trains: the render process steps off one core while a training scene runs.

Without a GPU, Mesa's llvmpipe rasterises the 3D view on a thread per core, and those threads preempt the
training worker's single torch thread wherever it runs; on a 2-core machine training with the view on fell
to 62-75 % of a bare torch loop.  Keeping every render thread off one core leaves that core to the worker
(tools/bench_training.py measures both; docs/BENCHMARKS.md has the figures).

`CoreReservation(n)`:
    apply(pids, narrow)
                  every thread of this process (Mesa's included) may run on all allowed cores but the last
                  `n`, and so may the processes `narrow` (helpers such as the t-SNE process); the processes
                  `pids` (the worker) may run on every core.  Processes this one starts afterwards inherit
                  the narrower set, so a restarted worker needs apply() again (the scene calls it whenever
                  a pid changes).
    release()     this process's threads get their old cores back.
Linux only (os.sched_setaffinity on thread ids from /proc/self/task); elsewhere, or with fewer than n + 1
cores, both calls do nothing and `active` stays False.  Torch-free: the render process owns it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return []


def supported() -> bool:
    return hasattr(os, "sched_setaffinity") and bool(_threads())


class CoreReservation:
    """Keeps this process's threads off `n` cores so a worker has them; see the module docstring."""

    def __init__(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError(f"reserve at least one core, got {n}")
        self.n = n
        self.active = False
        self.reserved: frozenset[int] = frozenset()
        self._old: dict[int, set[int]] = {}  # thread id -> its cores before apply()
        self._all: set[int] = set()

    def apply(self, pids: Iterable[int | None] = (), narrow: Iterable[int | None] = ()) -> bool:
        """Narrow this process's threads and `narrow`, free `pids`; True when a core is now reserved."""
        if not supported():
            return False
        if not self.active:
            cores = os.sched_getaffinity(0)
            if len(cores) <= self.n:
                return False  # nothing would be left for the render threads
            self._all = set(cores)
            self.reserved = frozenset(sorted(cores)[-self.n :])
            self._old = {}
            for tid in _threads():  # threads started later get every core back on release()
                try:
                    self._old[tid] = os.sched_getaffinity(tid)
                except OSError:
                    continue
        keep = self._all - self.reserved
        for tid in _threads():
            try:
                os.sched_setaffinity(tid, keep)
            except OSError:
                continue  # the thread ended meanwhile
        for group, cores in ((pids, self._all), (narrow, keep)):
            for pid in group:
                if pid is not None:
                    try:
                        os.sched_setaffinity(pid, cores)
                    except OSError:
                        pass  # gone; the scene restarts it and calls apply() again
        self.active = True
        return True

    def release(self) -> None:
        """Give this process's threads their old cores back (threads started since get all of them)."""
        if not self.active:
            return
        for tid in _threads():
            try:
                os.sched_setaffinity(tid, self._old.get(tid, self._all))
            except OSError:
                continue
        self._old.clear()
        self.active = False
