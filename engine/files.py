"""Files the app writes or reads for the user: checked before a run, written whole or not at all.

    check_output(path, flag, suffixes)   before the run: a known extension, a writable folder, not a
                                         folder, device, FIFO or socket; OutputError names the flag
    atomic_write(path, data_or_writer)   a temporary file in the target folder, fsync, rename, folder
                                         fsync: a failed write leaves no file and any earlier one whole
    write_screenshot(pixels, path)       an RGB frame as PNG or JPEG (by extension) through atomic_write
    read_regular(path, timeout)          the bytes of a regular file (never a FIFO, device or socket,
                                         which would block or never end), given up after `timeout`

Every output the app writes (screenshots, activation dumps, soak reports, checkpoints, the tools'
JSON) goes through atomic_write, and every failure is an OutputError whose message is one line a
user can act on ("the disk is full", "read-only file system").  Stdlib only at import (Pillow is
imported by write_screenshot when called): any process may use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DUMP_SUFFIXES = (".npz",)
JSON_SUFFIXES = (".json",)
READ_TIMEOUT_S = 30.0  # a regular file that takes longer than this (a hung network share) is given up


class OutputError(OSError):
    """An output path that cannot be written, or a write that failed: the message is one line."""

    def __str__(self) -> str:  # OSError's own str() would prefix "[Errno n]"
        return self.args[0] if self.args else "write failed"


class InputFileError(OSError):
    """A file to be read that is not a regular file, is unreadable, or did not answer in time."""

    def __str__(self) -> str:
        return self.args[0] if self.args else "read failed"


def reason(exc: BaseException) -> str:
    """An OSError's cause in words ("the disk is full"), for a one-line message."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full"
        if exc.errno == errno.EROFS:
            return "read-only file system"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        if exc.strerror:
            return exc.strerror[0].lower() + exc.strerror[1:]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_output(path: str | os.PathLike, flag: str, suffixes: Sequence[str]) -> Path:
    """`path` as a Path if a run can write it there; OutputError (message starting with `flag`) if not.

    Checked: the extension is one of `suffixes` (never silently added), the path is not an existing
    folder, device, FIFO or socket, its folder exists and a file can be created in it (a real probe:
    access() says yes to root on a read-only bind mount), and the disk there has room."""
    text = os.fspath(path)
    if not text:
        raise OutputError(f"{flag}: empty path")
    out = Path(text)
    want = suffixes[0] if len(suffixes) == 1 else f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"
    try:
        st = os.stat(out)
    except OSError:
        st = None
    if st is not None and _kind(st.st_mode) is not None:
        raise OutputError(f"{flag}: {out} is {_kind(st.st_mode)}, not a file name ending in {want}")
    if out.suffix.lower() not in suffixes:
        if not out.suffix:
            raise OutputError(f"{flag}: {out} has no extension; use {out}{suffixes[0]}")
        raise OutputError(f"{flag}: {out} ends in {out.suffix}; use a file name ending in {want}")
    folder = out.parent
    if not folder.is_dir():
        raise OutputError(f"{flag}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{out.name}.", suffix=".probe")
    except OSError as exc:
        raise OutputError(f"{flag}: cannot write in {folder} ({reason(exc)})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    try:
        vfs = os.statvfs(folder)
    except OSError:
        return out  # no statistics (some network file systems): the write itself will tell
    if vfs.f_bavail == 0 and vfs.f_blocks > 0:
        raise OutputError(f"{flag}: cannot write {out} (the disk is full)")
    return out


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; some file systems cannot open a folder: then nothing to do."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None], mode: int = 0o644
) -> Path:
    """Write `data` (bytes, or a function that writes into the open binary file) to `path` whole.

    The bytes go to a temporary file beside `path`, are fsynced and renamed over `path`; the folder is
    fsynced after.  Any failure (full disk, read-only file system, an exception in the writer) removes
    the temporary file, leaves an earlier `path` untouched and raises OutputError; an exception that is
    not an OSError (the writer's own bug) passes through after the clean-up."""
    path = Path(path)
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({reason(exc)})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes files private; outputs are meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path} ({reason(exc)})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)
    return path


def write_screenshot(pixels, path: str | os.PathLike) -> None:
    """An (H, W, 3) uint8 frame as PNG, or JPEG for .jpg / .jpeg, written whole or not at all."""
    from PIL import Image  # only when a screenshot is written: start-up stays light

    path = Path(path)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    atomic_write(path, lambda f: Image.fromarray(pixels).save(f, format=fmt))


def open_regular(path: str | os.PathLike) -> int:
    """An O_RDONLY descriptor of `path` if it is a regular file; InputFileError otherwise.  Opened
    non-blocking, so a FIFO with no writer does not hang the open itself."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputFileError(f"{path} not found") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {path} ({reason(exc)})") from None
    kind = _kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise InputFileError(f"{path} is {kind}, not a regular file")
    return fd


def read_regular(path: str | os.PathLike, timeout: float = READ_TIMEOUT_S, limit: int | None = None) -> bytes:
    """The bytes of regular file `path`; InputFileError if it is anything else, unreadable, bigger than
    `limit` bytes, or not read within `timeout` seconds (the reading thread is then left behind: a
    read stuck in the kernel cannot be interrupted, but the caller goes on)."""
    fd = open_regular(path)
    size = os.fstat(fd).st_size
    if limit is not None and size > limit:
        os.close(fd)
        raise InputFileError(f"{path} is {size:,} bytes, more than the {limit:,} expected")
    result: dict = {}

    def read() -> None:
        try:
            with os.fdopen(fd, "rb") as f:
                result["data"] = f.read()
        except OSError as exc:
            result["error"] = exc

    reader = threading.Thread(target=read, name="read_regular", daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise InputFileError(f"reading {path} took more than {timeout:g} s (a hung disk or network share?)")
    if "error" in result:
        raise InputFileError(f"cannot read {path} ({reason(result['error'])})")
    return result["data"]


class StagedOutput:
    """An output that grows during a long run (the soak's report): kept in `<name>.partial` beside `path`,
    rewritten whole at each `write()`, renamed over `path` at `commit()`.

    The file is made, and `reserve` bytes allocated for it, when the run starts: a folder that cannot be
    written fails then, not at the end, and a disk that fills up during the run still has the room for the
    last write.  A failed commit keeps the `.partial` file (the report as of its last write) and says so.
    """

    def __init__(self, path: str | os.PathLike, reserve: int = 1 << 20) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        try:
            self._fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {self.partial} ({reason(exc)})") from None
        try:
            os.posix_fallocate(self._fd, 0, reserve)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # not every FS allocates
                self.discard()
                raise OutputError(f"cannot write {self.path} ({reason(exc)})") from None
        except AttributeError:
            pass  # no posix_fallocate on this platform: the run goes on without the reserve

    def _put(self, data: bytes) -> None:
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))
        os.fsync(self._fd)

    def write(self, data: bytes) -> None:
        """Replace the file's content with `data` (into the reserved blocks, so a full disk is no matter)."""
        try:
            self._put(data)
        except OSError as exc:
            raise OutputError(f"cannot write {self.partial} ({reason(exc)})") from None

    def commit(self, data: bytes) -> Path:
        """Write the final `data` and rename the file to `path`."""
        try:
            self._put(data)
            os.close(self._fd)
            self._fd = -1
            os.replace(self.partial, self.path)
        except OSError as exc:
            raise OutputError(
                f"cannot write {self.path} ({reason(exc)}); the report so far is in {self.partial}"
            ) from None
        _fsync_folder(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Close and remove the partial file (a run that produced nothing to report)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.partial)
