"""MNIST for the tools: find (or download) the raw files and hand back whole splits as tensors.

Owns the one question "where do the images come from": `load_split(data_dir, train)` returns the
images as one uint8 tensor (N, 28, 28) and the labels as int64 (N,), read through
`torchvision.datasets.MNIST(root=data_dir, download=True)`.  Whole tensors instead of a per-image
Dataset/DataLoader, because the tools batch and augment on tensors and per-image Python is the
bottleneck on a 1-2 core machine.

Layout expected under `data_dir` (torchvision's): `MNIST/raw/` holding the four IDX files, either
gzipped (as distributed; torchvision checks their md5 and unpacks them) or already unpacked.
Every failure becomes one MnistDataError whose message says where to put the files.

Used by tools/train.py and tools/evaluate.py; no render-process code imports it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

import torch

# torchvision's names for the four files; `<name>.gz` is the distributed form.
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# A download attempt with no network normally fails at DNS within seconds; this bounds the case of
# a network that accepts the connection and then stalls.
DOWNLOAD_TIMEOUT_S = 20.0


class MnistDataError(Exception):
    """MNIST is absent and cannot be downloaded, or its files are unreadable."""


def raw_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def _where_hint(data_dir: str | os.PathLike) -> str:
    files = ", ".join(f"{n}.gz" for n in RAW_FILES)
    return f"put the raw MNIST files ({files}) in {raw_dir(data_dir)}/ (a writable folder)"


def _has_raw_files(data_dir: str | os.PathLike) -> bool:
    d = raw_dir(data_dir)
    return all((d / n).is_file() or (d / f"{n}.gz").is_file() for n in RAW_FILES)


def load_split(data_dir: str | os.PathLike, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images uint8 (N, 28, 28), labels int64 (N,)) of the train or test split."""
    # Imported here so `--help` and argument errors stay instant.
    from torchvision.datasets import MNIST

    present = _has_raw_files(data_dir)
    raw = raw_dir(data_dir)
    packed_only = present and not all((raw / n).is_file() for n in RAW_FILES)
    # Checked by mode bits too: root may write anywhere, but a folder marked read-only (a shared
    # data copy) is not ours to unpack into.
    if packed_only and (not os.access(raw, os.W_OK) or not raw.stat().st_mode & 0o222):
        raise MnistDataError(
            f"{raw} holds gzipped MNIST but is read-only, and torchvision unpacks beside the files; "
            f"copy the MNIST/ folder under a writable directory and pass that as --data-dir"
        )
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # torchvision reports downloads and unpacking on stdout, which belongs to the tools' results
        # (evaluate.py --json prints exactly one object there).
        with contextlib.redirect_stdout(sys.stderr):
            ds = MNIST(root=str(data_dir), train=train, download=True)
    except PermissionError as exc:
        # The gzipped files are there but torchvision cannot unpack them beside themselves.
        raise MnistDataError(
            f"cannot unpack MNIST in {raw_dir(data_dir)} ({exc.strerror}); copy the MNIST/ folder "
            f"under a writable directory and pass that as --data-dir"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torchvision raises RuntimeError, URLError, OSError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if present:
            raise MnistDataError(
                f"MNIST files in {raw_dir(data_dir)} are corrupt or incomplete ({reason}); "
                f"{_where_hint(data_dir)}"
            ) from None
        raise MnistDataError(
            f"MNIST not found in {raw_dir(data_dir)} and could not be downloaded ({reason}); "
            f"{_where_hint(data_dir)}"
        ) from None
    finally:
        socket.setdefaulttimeout(old_timeout)

    images, labels = ds.data, ds.targets
    if images.dtype != torch.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (28, 28):
        raise MnistDataError(
            f"MNIST images in {raw_dir(data_dir)} have shape {tuple(images.shape)} {images.dtype}, "
            f"expected (N, 28, 28) uint8; {_where_hint(data_dir)}"
        )
    if len(labels) != len(images):
        raise MnistDataError(
            f"MNIST in {raw_dir(data_dir)} has {len(images)} images but {len(labels)} labels; "
            f"{_where_hint(data_dir)}"
        )
    return images, labels.to(torch.int64)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [0, 1], the models' input convention (ink = 1)."""
    return images.unsqueeze(1).to(torch.float32).div_(255.0)
