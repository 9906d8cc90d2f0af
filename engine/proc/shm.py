"""Shared-memory slots: one float32 payload behind a small header, guarded by a seqlock.

Ownership: the render process creates every segment (`Slot.create`) and unlinks it as
soon as the worker has attached, so /dev/shm holds nothing of ours once a model is running, even if
either process is later SIGKILLed.  The worker only attaches (`Slot.attach`) and closes.

Why attach keeps away from the resource tracker: a spawned worker shares its parent's tracker, so a
segment attached in Python 3.11 is registered a second time under the same name; the tracker keeps a
set, so unregistering in the worker (the usual advice) removes the creator's entry, and the creator's
own unlink then makes the tracker print a KeyError traceback.  Attaching without registering (what
3.13's `track=False` does) leaves exactly one registration, owned by the creator.

Layout: 64-byte header of int64 [gen, seq, count, aux, ...] then `count` float32.  A writer
(`with slot.writing(seq) as out:`) makes `gen` odd, writes the payload, stores `seq`, and makes `gen`
even; a reader copies the payload and accepts it only if `gen` was even and unchanged across the copy,
so it never sees a torn write.
Each slot has exactly one writer (input: the render process; results: the worker).
"""

from __future__ import annotations

import itertools
import mmap
import os
import sys
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

PREFIX = "convscope_"  # every segment we create starts with this, then the creating pid
HEADER_BYTES = 64  # keeps the float payload cache-line aligned
_GEN, _SEQ, _COUNT, _AUX = 0, 1, 2, 3

_names = itertools.count()


def segment_prefix(pid: int | None = None) -> str:
    """Name prefix of the segments created by process `pid` (default: this one)."""
    return f"{PREFIX}{os.getpid() if pid is None else pid}_"


def list_segments(prefix: str = PREFIX) -> list[str]:
    """Names in /dev/shm starting with `prefix` (empty where the platform has no /dev/shm)."""
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _attach_untracked(name: str) -> SharedMemory:
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)
    # 3.11/3.12 have no track flag: skip the registration for this one call.  Safe because the worker
    # attaches from its only Python thread.
    register = resource_tracker.register

    def skip_shared_memory(rname: str, rtype: str) -> None:
        if rtype != "shared_memory":
            register(rname, rtype)

    resource_tracker.register = skip_shared_memory
    try:
        return SharedMemory(name=name)
    finally:
        resource_tracker.register = register


class _Writing:
    """Slot.writing()'s context manager (a class: a generator-based one costs ~2 us more per write, and
    the inference hot path writes once per drawing)."""

    __slots__ = ("slot", "seq", "aux")

    def __init__(self, slot: Slot, seq: int, aux: int) -> None:
        self.slot, self.seq, self.aux = slot, seq, aux

    def __enter__(self) -> np.ndarray:
        return self.slot.begin_write()

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is None:
            self.slot.end_write(self.seq, self.aux)
        else:
            self.slot.end_write(0)  # nothing valid here: see Slot.writing
        return False


class _FdMapping:
    """What Slot needs of a SharedMemory (name, size, buf, close), made from a file descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.name = f"fd{fd}"
        self.size = os.fstat(fd).st_size
        self._mmap = mmap.mmap(fd, self.size)
        self.buf = memoryview(self._mmap)

    def close(self) -> None:
        self.buf.release()
        self._mmap.close()
        os.close(self._fd)

    def unlink(self) -> None:
        pass  # a handed-over descriptor has no name here


class Slot:
    """A seqlock-guarded float32 vector in one shared-memory segment."""

    def __init__(self, shm: SharedMemory, count: int, owner: bool) -> None:
        self._shm: SharedMemory | None = shm
        self.name = shm.name
        self.count = count
        self.owner = owner
        self._linked = owner
        self._header: np.ndarray | None = np.ndarray((8,), np.int64, shm.buf, 0)
        self.payload: np.ndarray | None = np.ndarray((count,), np.float32, shm.buf, HEADER_BYTES)

    @staticmethod
    def nbytes(count: int) -> int:
        return HEADER_BYTES + 4 * count

    @classmethod
    def create(cls, count: int) -> Slot:
        """Render side: a new zeroed segment named `convscope_<pid>_<n>` for `count` floats."""
        shm = SharedMemory(name=f"{segment_prefix()}{next(_names)}", create=True, size=cls.nbytes(count))
        slot = cls(shm, count, owner=True)
        slot._header[:] = 0
        slot._header[_COUNT] = count
        return slot

    @classmethod
    def attach(cls, name: str, count: int) -> Slot:
        """Worker side: map an existing segment, checking it was made for `count` floats."""
        shm = _attach_untracked(name)
        header = np.ndarray((8,), np.int64, shm.buf, 0)
        found = int(header[_COUNT])
        del header  # a live view would make close() fail
        if shm.size < cls.nbytes(count) or found != count:
            shm.close()
            raise ValueError(f"segment {name} holds {found} floats, expected {count}")
        return cls(shm, count, owner=False)

    @classmethod
    def attach_fd(cls, fd: int, count: int) -> Slot:
        """Worker side: map a segment from a file descriptor another process handed over (POSIX), for a
        segment whose name is already unlinked.  The slot owns `fd` and closes it."""
        mapping = _FdMapping(fd)
        header = np.ndarray((8,), np.int64, mapping.buf, 0)
        found = int(header[_COUNT])
        del header
        if mapping.size < cls.nbytes(count) or found != count:
            mapping.close()
            raise ValueError(f"segment fd {fd} holds {found} floats, expected {count}")
        return cls(mapping, count, owner=False)

    @property
    def fd(self) -> int:
        """The segment's file descriptor in this process (POSIX), for handing it to another process."""
        return self._shm._fd

    # -- single writer -------------------------------------------------------------------------

    def writing(self, seq: int, aux: int = 0) -> _Writing:
        """`with slot.writing(seq) as out: out[...] = ...`: the seqlock around one write.

        Readers never see the payload while the block runs.  If the block raises, the slot is closed
        again with seq 0 ("nothing valid here"), so a reader neither spins for ever nor takes half a
        write for the previous one.  The caller must drop `out` before closing the slot.
        """
        return _Writing(self, seq, aux)

    def begin_write(self) -> np.ndarray:
        """Mark the slot as being written (gen odd) and return the payload to fill.

        Only for a write that spans several turns of a loop (an images job fills its segment one batch
        per turn); a write inside one call uses `writing()`.
        """
        self._header[_GEN] += 1
        return self.payload

    def end_write(self, seq: int, aux: int = 0) -> None:
        self._header[_SEQ] = seq
        self._header[_AUX] = aux
        self._header[_GEN] += 1

    def write(self, seq: int, data: np.ndarray, aux: int = 0) -> None:
        with self.writing(seq, aux) as out:
            np.copyto(out, data.reshape(-1), casting="same_kind")

    # -- any number of readers -----------------------------------------------------------------

    def read_into(self, out: np.ndarray, tries: int = 1000) -> tuple[int, int] | None:
        """Copy a consistent payload into `out`; return (seq, aux), or None if it kept changing.

        seq 0 means nothing was written yet.
        """
        header = self._header
        for _ in range(tries):
            gen = int(header[_GEN])
            if gen & 1:
                continue  # a write is in progress; it takes microseconds
            np.copyto(out, self.payload)
            seq, aux = int(header[_SEQ]), int(header[_AUX])
            if int(header[_GEN]) == gen:
                return seq, aux
        return None

    # -- lifetime ------------------------------------------------------------------------------

    def unlink(self) -> None:
        """Creator only: remove the name from /dev/shm; the memory lives on while mapped."""
        if not self.owner:
            raise RuntimeError(f"segment {self.name} was attached, not created here: the creator unlinks it")
        if self._linked:
            self._linked = False
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Drop our views and unmap.  Idempotent.  Callers must have dropped their own views of payload."""
        if self._shm is None:
            return
        self._header = None
        self.payload = None
        shm, self._shm = self._shm, None
        shm.close()

    @property
    def closed(self) -> bool:
        return self._shm is None
