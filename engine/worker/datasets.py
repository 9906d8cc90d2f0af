"""Training data for the live-training scene: whole splits as uint8 tensors in memory, and their source.

`make_dataset(name, data_dir)` answers "what do we train on": CIFAR-10 (the paper's data) or MNIST, read from
`data_dir`, or — when that data is not at hand — scikit-learn's built-in 8x8 digits upscaled to 32x32, with
`Dataset.note` saying so.  Every image set is one uint8 tensor (N, C, H, W) (no per-image Dataset/DataLoader:
on a 1-2 core machine per-image Python is the bottleneck), converted to float in [0, 1] per batch by
`to_input`.

Where each set is looked for under `data_dir`, in order:
  CIFAR-10  1. a `*cifar*.npz` in data_dir or data_dir/cifar10/ holding x_train, y_train, x_test, y_test
               (uint8, images N x 32 x 32 x 3), read with np.load(allow_pickle=False) — never unpickled;
            2. torchvision's layout, data_dir/cifar-10-batches-py/ (torchvision checks the md5 sums);
            3. torchvision's download into data_dir, when online and `download` is true.
  MNIST     1. data_dir/MNIST/raw/ with the four IDX files, gzipped or not, parsed here (works on a
               read-only copy); 2. torchvision's download into data_dir.  Images are padded 28 -> 32.
A set that is absent and cannot be downloaded raises DatasetUnavailable, whose message says where to put it.

Torch-side only (the worker process and the tools); the render process never imports this.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGIT_CLASSES = tuple(str(i) for i in range(10))
MNIST_FILES = {  # torchvision's names: (images, labels) per split
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NAMES = ("cifar10", "mnist", "digits")

# A download with no network normally fails at DNS within seconds; this bounds a network that stalls.
DOWNLOAD_TIMEOUT_S = 20.0


class DatasetUnavailable(Exception):
    """The data set is absent and could not be downloaded, or its files are unreadable."""


@dataclass(frozen=True)
class Dataset:
    name: str  # "cifar10", "mnist" or "digits"
    x_train: torch.Tensor  # uint8 (N, C, H, W)
    y_train: torch.Tensor  # int64 (N,)
    x_val: torch.Tensor  # uint8 (M, C, H, W): held out, the test split where the data set has one
    y_val: torch.Tensor  # int64 (M,)
    classes: tuple[str, ...]  # class names in label order
    source: str  # where the images came from, for the UI and the checkpoint
    note: str = ""  # why this set stands in for the one asked for; empty when it is that one

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("val", self.x_val, self.y_val)):
            if x.dtype != torch.uint8 or x.ndim != 4 or y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(
                    f"{self.name} {split}: expected uint8 (N, C, H, W) images and int64 (N,) labels, "
                    f"got {x.dtype} {tuple(x.shape)} and {y.dtype} {tuple(y.shape)}"
                )
            if len(x) == 0:
                raise ValueError(f"{self.name} {split} split is empty")
        if self.x_train.shape[1:] != self.x_val.shape[1:]:
            raise ValueError(f"{self.name}: train and val image shapes differ")

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def size(self) -> int:
        return int(self.x_train.shape[-1])


def to_input(images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1] on `device`: the network's input convention."""
    return images.to(device=device).to(torch.float32).div_(255.0)


# -- built-in digits ---------------------------------------------------------------------------------------
def builtin_digits(channels: int = 3, val_fraction: float = 0.2, seed: int = 0, size: int = 32) -> Dataset:
    """scikit-learn's 1797 8x8 digits (values 0-16), upscaled bilinearly to size x size uint8.

    `channels` 3 repeats the grey image (so the paper's 3-channel model runs on it), 1 keeps it grey.
    The held-out split takes `val_fraction` of every class, chosen by `seed`.
    """
    from sklearn.datasets import load_digits  # ships its data inside the package: no network

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    big = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    images = big.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).expand(-1, channels, -1, -1)
    labels = torch.from_numpy(digits.target.astype(np.int64))

    g = torch.Generator().manual_seed(seed)
    val = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(10):  # stratified: every class keeps the same share in both splits
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        val[idx[: round(val_fraction * len(idx))]] = True
    return Dataset(
        name="digits",
        x_train=images[~val].contiguous(),
        y_train=labels[~val],
        x_val=images[val].contiguous(),
        y_val=labels[val],
        classes=DIGIT_CLASSES,
        source=f"scikit-learn load_digits (8x8, upscaled to {size}x{size})",
    )


# -- CIFAR-10 ------------------------------------------------------------------------------------------------
def _cifar_hint(data_dir: Path) -> str:
    return (
        f"put torchvision's cifar-10-batches-py/ folder, or a cifar10.npz holding uint8 x_train/y_train/"
        f"x_test/y_test arrays, in {data_dir}"
    )


def _cifar_npz(data_dir: Path) -> Path | None:
    """The first `*cifar*.npz` under data_dir (or data_dir/cifar10) that holds the four arrays."""
    candidates = [data_dir / "cifar10.npz"]
    for folder in (data_dir, data_dir / "cifar10"):
        if folder.is_dir():
            candidates += sorted(folder.glob("*cifar*.npz"))
    for path in dict.fromkeys(candidates):  # ordered, without repeats
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                if {"x_train", "y_train", "x_test", "y_test"} <= set(z.files):
                    return path
        except (OSError, ValueError):
            continue  # not a readable npz: another candidate may be
    return None


def _split(
    path: Path, z, xkey: str, ykey: str, side: int, channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check and convert one split of an npz: images (N, side, side, channels) uint8 -> (N, C, H, W)."""
    x, y = z[xkey], z[ykey]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (side, side, channels):
        raise DatasetUnavailable(
            f"{path}: {xkey} is {x.dtype} {x.shape}, expected uint8 (N, {side}, {side}, {channels})"
        )
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DatasetUnavailable(f"{path}: {ykey} is {y.dtype} {y.shape}, expected {len(x)} integer labels")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DatasetUnavailable(f"{path}: {ykey} holds labels outside 0..9")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(
        y.astype(np.int64)
    )


def _load_cifar_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            xt, yt = _split(path, z, "x_train", "y_train", 32, 3)
            xv, yv = _split(path, z, "x_test", "y_test", 32, 3)
            names = tuple(str(s) for s in z["label_names"]) if "label_names" in z.files else CIFAR_CLASSES
    except DatasetUnavailable:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetUnavailable(f"{path} is not a readable npz ({exc})") from None
    if len(names) != 10:
        names = CIFAR_CLASSES
    return Dataset("cifar10", xt, yt, xv, yv, names, source=str(path))


@contextlib.contextmanager
def _download_guard():
    """Bound socket waits and keep torchvision's progress lines off stdout (it may carry results)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        socket.setdefaulttimeout(old)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_cifar10(data_dir: str | os.PathLike, download: bool = True) -> Dataset:
    """CIFAR-10 train (50,000) and test (10,000) images, or whatever subset an npz holds."""
    data_dir = Path(data_dir)
    npz = _cifar_npz(data_dir)
    if npz is not None:
        return _load_cifar_npz(npz)
    from torchvision.datasets import CIFAR10  # imported late: the npz path needs no torchvision

    present = (data_dir / CIFAR10.base_folder).is_dir()
    if not present and not download:
        raise DatasetUnavailable(f"CIFAR-10 not found in {data_dir}; {_cifar_hint(data_dir)}")
    try:
        with _download_guard():
            train = CIFAR10(root=str(data_dir), train=True, download=not present)
            test = CIFAR10(root=str(data_dir), train=False, download=False)
    except Exception as exc:  # noqa: BLE001 - torchvision raises RuntimeError, URLError, OSError, ...
        what = "is corrupt or incomplete" if present else "is absent and could not be downloaded"
        raise DatasetUnavailable(
            f"CIFAR-10 in {data_dir} {what} ({_reason(exc)}); {_cifar_hint(data_dir)}"
        ) from None

    def split(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    (xt, yt), (xv, yv) = split(train), split(test)
    return Dataset(
        "cifar10", xt, yt, xv, yv, tuple(train.classes), source=str(data_dir / CIFAR10.base_folder)
    )


# -- MNIST ---------------------------------------------------------------------------------------------------
def _mnist_raw(data_dir: Path) -> Path:
    return data_dir / "MNIST" / "raw"


def _mnist_present(data_dir: Path) -> bool:
    raw = _mnist_raw(data_dir)
    names = [n for pair in MNIST_FILES.values() for n in pair]
    return all((raw / n).is_file() or (raw / f"{n}.gz").is_file() for n in names)


def _read_idx(raw: Path, name: str) -> np.ndarray:
    path = raw / name if (raw / name).is_file() else raw / f"{name}.gz"
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetUnavailable(f"{path} is unreadable ({_reason(exc)})") from None
    magic, n = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
    if magic == 2051 and len(data) == 16 + n * 28 * 28:
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, 28, 28)
    if magic == 2049 and len(data) == 8 + n:
        return np.frombuffer(data, np.uint8, offset=8)
    raise DatasetUnavailable(f"{path} is not a whole MNIST IDX file (magic {magic}, {len(data)} bytes)")


def load_mnist(data_dir: str | os.PathLike, download: bool = True, channels: int = 1) -> Dataset:
    """MNIST train (60,000) and test (10,000), zero-padded from 28x28 to 32x32; `channels` 1 or 3."""
    data_dir = Path(data_dir)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not _mnist_present(data_dir):
        hint = f"put the four MNIST IDX files (.gz or unpacked) in {_mnist_raw(data_dir)}/"
        if not download:
            raise DatasetUnavailable(f"MNIST not found in {_mnist_raw(data_dir)}; {hint}")
        from torchvision.datasets import MNIST

        try:
            with _download_guard():
                MNIST(root=str(data_dir), train=True, download=True)
        except Exception as exc:  # noqa: BLE001 - see load_cifar10
            raise DatasetUnavailable(
                f"MNIST is absent from {data_dir} and could not be downloaded ({_reason(exc)}); {hint}"
            ) from None
    raw = _mnist_raw(data_dir)
    splits = []
    for train in (True, False):
        x = _read_idx(raw, MNIST_FILES[train][0])
        y = _read_idx(raw, MNIST_FILES[train][1])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetUnavailable(f"MNIST in {raw}: {len(x)} images but {len(y)} labels")
        images = F.pad(torch.from_numpy(x.copy()), (2, 2, 2, 2)).unsqueeze(1)
        splits.append(
            (images.expand(-1, channels, -1, -1).contiguous(), torch.from_numpy(y.astype(np.int64)))
        )
    (xt, yt), (xv, yv) = splits
    return Dataset("mnist", xt, yt, xv, yv, DIGIT_CLASSES, source=str(raw))


# -- choice with fallback ------------------------------------------------------------------------------------
def make_dataset(
    name: str = "cifar10",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    channels: int | None = None,
) -> Dataset:
    """The named data set from `data_dir`, or the built-in digits with `note` saying why.

    `channels` defaults to the named set's own (3 for CIFAR-10, 1 for MNIST); the stand-in digits get the
    same, so the model built for the requested set also fits the stand-in.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {NAMES}")
    channels = channels if channels is not None else (1 if name == "mnist" else 3)
    if name == "digits":
        return builtin_digits(channels=channels)
    try:
        if data_dir is None:
            raise DatasetUnavailable(f"no data directory given for {name}")
        if name == "cifar10":
            ds = load_cifar10(data_dir, download=download)
            return ds if channels == 3 else _grey(ds)
        return load_mnist(data_dir, download=download, channels=channels)
    except DatasetUnavailable as exc:
        fallback = builtin_digits(channels=channels)
        note = (
            f"{exc}. Training on the built-in digits instead (scikit-learn's 1797 8x8 digits, "
            f"upscaled to 32x32, {len(fallback.x_train)} train / {len(fallback.x_val)} held out)."
        )
        return Dataset(**{**fallback.__dict__, "note": note})


def _grey(ds: Dataset) -> Dataset:
    """RGB -> one luminance channel (ITU-R 601 weights), for a 1-channel model on CIFAR-10."""
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)

    def conv(x: torch.Tensor) -> torch.Tensor:
        return (x.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)

    return Dataset(
        ds.name, conv(ds.x_train), ds.y_train, conv(ds.x_val), ds.y_val, ds.classes, ds.source, ds.note
    )
