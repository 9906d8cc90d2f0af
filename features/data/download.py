"""Downloading one data file in chunks: progress, md5 check, atomic rename, and a clear reason on failure.

    download_file(url, dest, md5, progress, timeout, cancel)   one URL -> dest
    download_first(urls, dest, md5, ...)                        mirrors in order; the first that works wins

The bytes go to `dest.part` first; only a whole file whose md5 matches is renamed to `dest` (os.replace, so
a reader sees either no file or the whole file).  Any failure (no network, an HTTP error, a stall longer
than `timeout`, a short read, a wrong checksum, a cancel, SIGTERM raising SystemExit) deletes the partial
file, so nothing half-written is ever mistaken for a whole one later.  Failures raise DownloadError, whose
message names the URL and the reason in words a user can act on ("cannot resolve the host (offline?)",
"HTTP 404 Not Found", "checksum mismatch").

`progress(done_bytes, total_bytes_or_None)` is called once when the response starts, at most once per
`interval` seconds while bytes arrive, and once when the transfer ends (done == the file's size for a whole
one; before the checksum is checked); `done` never decreases within one URL.

Stdlib only (urllib): no torch, usable from any process; http(s) and file URLs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

CHUNK = 1 << 16  # bytes per read: ~2,700 reads for CIFAR-10's 170 MB, each cheap next to the network
PROGRESS_INTERVAL_S = 0.1  # at most ~10 progress calls a second: a UI needs no more
USER_AGENT = "convscope"  # some servers refuse urllib's default agent

Progress = Callable[[int, int | None], None]


class DownloadError(Exception):
    """A download that failed; `url` and `reason` say which and why (the message holds both).  After
    several mirrors, `failures` holds each one's error and the message lists them all."""

    def __init__(self, url: str, reason: str, failures: Sequence[DownloadError] = ()) -> None:
        self.url = url
        self.reason = reason
        self.failures = tuple(failures)
        super().__init__("; ".join(str(f) for f in self.failures) if self.failures else f"{url}: {reason}")


def part_path(dest: str | os.PathLike) -> Path:
    """Where `dest` is written until it is whole and verified."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download_file(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    progress: Progress | None = None,
    timeout: float = 20.0,
    cancel: Callable[[], bool] | None = None,
    interval: float = PROGRESS_INTERVAL_S,
) -> Path:
    """Fetch `url` into `dest` (its folder is created); returns `dest`.  Raises DownloadError.

    `md5` (hex) is checked before the rename; None skips the check.  `timeout` bounds the connection and
    every read (a stalled network), not the whole transfer.  `cancel()` is asked between chunks."""
    dest = Path(dest)
    part = part_path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(url, f"cannot create {dest.parent} ({exc.strerror or exc})") from None
    digest = hashlib.md5(usedforsecurity=False)
    done = 0
    total: int | None = None
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if progress is not None:
                progress(0, total)
            last = time.monotonic()
            while True:
                if cancel is not None and cancel():
                    raise DownloadError(url, "cancelled")
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                now = time.monotonic()
                if progress is not None and now - last >= interval:
                    last = now
                    progress(done, total)
            if progress is not None:
                progress(done, total)  # every byte that came is counted, whether or not it checks out
        if total is not None and done != total:
            raise DownloadError(url, f"incomplete: the connection closed after {done:,} of {total:,} bytes")
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise DownloadError(
                url, f"checksum mismatch: md5 {digest.hexdigest()}, expected {md5.lower()} ({done:,} bytes)"
            )
        os.replace(part, dest)
    except DownloadError:
        _remove(part)
        raise
    except BaseException as exc:  # also KeyboardInterrupt / SystemExit: never leave the .part behind
        _remove(part)
        if isinstance(exc, Exception):
            raise DownloadError(url, describe(exc)) from None
        raise
    return dest


def download_first(
    urls: Sequence[str],
    dest: str | os.PathLike,
    md5: str | None = None,
    progress: Progress | None = None,
    timeout: float = 20.0,
    cancel: Callable[[], bool] | None = None,
    interval: float = PROGRESS_INTERVAL_S,
) -> Path:
    """download_file from each of `urls` in turn until one works.  A DownloadError names every URL tried
    and why each failed; a cancel stops at once."""
    if not urls:
        raise DownloadError("(no URL)", "no mirror to download from")
    failures: list[DownloadError] = []
    for url in urls:
        try:
            return download_file(url, dest, md5, progress, timeout, cancel, interval)
        except DownloadError as exc:
            if exc.reason == "cancelled":
                raise
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    raise DownloadError(failures[-1].url, failures[-1].reason, failures)


def describe(exc: BaseException) -> str:
    """A failed transfer's cause, in words: offline, refused, HTTP status, timeout, disk full..."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, http.client.IncompleteRead):
        return f"incomplete: the connection closed after {len(exc.partial):,} bytes"
    inner = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(inner, socket.gaierror):
        return f"cannot resolve the host (offline? {inner.strerror or inner})"
    if isinstance(inner, TimeoutError | socket.timeout):
        return "timed out: no data within the timeout (a stalled or very slow network)"
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused (nothing serves that address)"
    if isinstance(inner, ConnectionError):
        return f"connection lost ({inner.strerror or type(inner).__name__})"
    if isinstance(inner, FileNotFoundError):
        return "no such file"
    if isinstance(inner, OSError) and inner.errno == errno.ENOSPC:
        return "the disk is full"
    if isinstance(inner, OSError) and inner.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"network unreachable (offline? {inner.strerror})"
    text = str(inner).strip()
    return text.splitlines()[0] if text else type(inner).__name__


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # absent, or a read-only folder where nothing was written either
        path.unlink()
