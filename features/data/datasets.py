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
            3. downloaded into data_dir when `download` is true: torchvision's archive (its CIFAR10.url,
               filename and tgz_md5), unpacked into a temporary folder that is renamed into place whole.
  MNIST     1. data_dir/MNIST/raw/ with the four IDX files, gzipped or not, parsed here (works on a
               read-only copy); 2. the missing .gz files downloaded there (torchvision's MNIST.mirrors in
               order, MNIST.resources' md5 sums).  Images are padded 28 -> 32.
A set that is absent and cannot be downloaded raises DatasetUnavailable, whose message says why (the URL
and the reason: offline, HTTP status, timeout, checksum) and where to put the files.

Downloads go through features/data/download.py (chunked, md5-checked, written to a `.part` file renamed only
when whole), so an interrupted download never leaves a file that a later run would take for a whole one.
`mirror` (a base URL holding the files under torchvision's names, e.g. http://lan-host/data/ with
cifar-10-python.tar.gz and train-images-idx3-ubyte.gz ...) replaces the official URLs: a kiosk's offline
mirror, or a test's local http.server.  `progress(what, done, total)` hears "Downloading CIFAR-10" with bytes
(total None when the server does not say), then "Extracting CIFAR-10" / "Loading MNIST" with None, None.

Test seam: `mnist_sources` and `cifar10_source` are the only places URLs and md5 sums come from; a test
replaces them (monkeypatch) to serve small files of its own with their own md5 sums.  Nothing else turns
the checksum off.

Torch-side only (the worker process and the tools); the render process never imports this.

Length: three sources (CIFAR-10 in two layouts, MNIST, the built-in digits) each with its own
checks and clear failures; they share the Dataset they return and the download plan, so they stay together.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable
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

# A download with no network normally fails at DNS within seconds; this bounds a network that stalls
# (no byte for this long), not a slow transfer.
DOWNLOAD_TIMEOUT_S = 20.0

Progress = Callable[[str, int | None, int | None], None]  # (what, done bytes or None, total or None)


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
    broken: tuple[Path, str] | None = None
    for path in dict.fromkeys(candidates):  # ordered, without repeats
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                if {"x_train", "y_train", "x_test", "y_test"} <= set(z.files):
                    return path
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            broken = broken or (path, type(exc).__name__)  # another candidate may be whole
    if broken is not None and not (data_dir / "cifar-10-batches-py").is_dir():
        # A file that is there but unreadable is corrupt, not absent (and no download would help).
        raise DatasetUnavailable(
            f"{broken[0]} is corrupt (not a readable npz file: {broken[1]}); replace or delete it; "
            f"{_cifar_hint(data_dir)}"
        )
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
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetUnavailable(f"{path} is not a readable npz ({exc})") from None
    if len(names) != 10:
        names = CIFAR_CLASSES
    return Dataset("cifar10", xt, yt, xv, yv, names, source=str(path))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _no_progress(what: str, done: int | None, total: int | None) -> None:
    pass


def _urls(mirror: str | None, official: list[str], filename: str) -> list[str]:
    """A given mirror replaces the official URLs (a kiosk offline or a test must not reach the internet)."""
    return [mirror.rstrip("/") + "/" + filename] if mirror else official


def mnist_sources(mirror: str | None = None) -> list[tuple[str, str, list[str]]]:
    """(file name, md5, URLs to try in order) for each MNIST file, from torchvision's MNIST.resources and
    MNIST.mirrors.  The test seam for checksums (module docstring)."""
    from torchvision.datasets import MNIST

    return [
        (name, md5, _urls(mirror, [m + name for m in MNIST.mirrors], name)) for name, md5 in MNIST.resources
    ]


def cifar10_source(mirror: str | None = None) -> tuple[str, str, list[str]]:
    """(archive name, md5, URLs) of CIFAR-10's python archive, from torchvision's CIFAR10 attributes.  The
    test seam for checksums (module docstring)."""
    from torchvision.datasets import CIFAR10

    return CIFAR10.filename, CIFAR10.tgz_md5, _urls(mirror, [CIFAR10.url], CIFAR10.filename)


def _fetch(
    what: str,
    urls: list[str],
    dest: Path,
    md5: str,
    progress: Progress,
    cancel: Callable[[], bool] | None,
) -> None:
    """download_first with the progress labelled; DownloadError (URL and reason) passes through."""
    from convscope.features.data.download import download_first

    download_first(
        urls, dest, md5, lambda done, total: progress(what, done, total), DOWNLOAD_TIMEOUT_S, cancel
    )


def load_cifar10(
    data_dir: str | os.PathLike,
    download: bool = True,
    progress: Progress | None = None,
    mirror: str | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Dataset:
    """CIFAR-10 train (50,000) and test (10,000) images, or whatever subset an npz holds."""
    data_dir = Path(data_dir)
    progress = progress or _no_progress
    npz = _cifar_npz(data_dir)
    if npz is not None:
        progress("Loading CIFAR-10", None, None)
        return _load_cifar_npz(npz)
    from torchvision.datasets import CIFAR10  # imported late: the npz path needs no torchvision

    folder = data_dir / CIFAR10.base_folder
    present = folder.is_dir()
    if not present:
        if not download:
            raise DatasetUnavailable(f"CIFAR-10 not found in {data_dir}; {_cifar_hint(data_dir)}")
        _download_cifar10(data_dir, folder, progress, mirror, cancel)
    progress("Loading CIFAR-10", None, None)
    try:
        train = CIFAR10(root=str(data_dir), train=True, download=False)
        test = CIFAR10(root=str(data_dir), train=False, download=False)
    except Exception as exc:  # noqa: BLE001 - torchvision raises RuntimeError, OSError, pickle errors, ...
        raise DatasetUnavailable(
            f"CIFAR-10 in {data_dir} is corrupt or incomplete ({_reason(exc)}); delete {folder} and it is "
            f"downloaded again, or {_cifar_hint(data_dir)}"
        ) from None

    def split(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    (xt, yt), (xv, yv) = split(train), split(test)
    return Dataset(
        "cifar10", xt, yt, xv, yv, tuple(train.classes), source=str(data_dir / CIFAR10.base_folder)
    )


def _download_cifar10(
    data_dir: Path, folder: Path, progress: Progress, mirror: str | None, cancel: Callable[[], bool] | None
) -> None:
    """Fetch the archive (unless a whole one is there) and unpack it; `folder` appears only when whole."""
    from convscope.features.data.download import DownloadError
    from torchvision.datasets.utils import check_integrity, extract_archive

    name, md5, urls = cifar10_source(mirror)
    archive = data_dir / name
    if not check_integrity(str(archive), md5):  # an archive from an earlier run is reused only if whole
        try:
            _fetch("Downloading CIFAR-10", urls, archive, md5, progress, cancel)
        except DownloadError as exc:
            raise DatasetUnavailable(
                f"CIFAR-10 is absent from {data_dir} and could not be downloaded ({exc}); "
                f"{_cifar_hint(data_dir)}"
            ) from None
    progress("Extracting CIFAR-10", None, None)
    # Unpacked beside its final place and renamed in one step: an interrupted unpack leaves only the
    # temporary folder (removed here, or ignored later), never a half cifar-10-batches-py/.
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".cifar10-unpack-", dir=data_dir))
        extract_archive(str(archive), str(tmp))
        os.replace(tmp / folder.name, folder)
    except Exception as exc:  # noqa: BLE001 - tarfile.ReadError, OSError (disk full, read-only), ...
        raise DatasetUnavailable(
            f"could not unpack {archive} ({_reason(exc)}); {_cifar_hint(data_dir)}"
        ) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


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
        raise DatasetUnavailable(
            f"{path} is unreadable ({_reason(exc)}); delete it and it is downloaded again"
        ) from None
    magic, n = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
    if magic == 2051 and len(data) == 16 + n * 28 * 28:
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, 28, 28)
    if magic == 2049 and len(data) == 8 + n:
        return np.frombuffer(data, np.uint8, offset=8)
    raise DatasetUnavailable(
        f"{path} is not a whole MNIST IDX file (magic {magic}, {len(data)} bytes); delete it and it is "
        "downloaded again"
    )


def _read_mnist(raw: Path, channels: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
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
    return splits


def _refetch_broken_mnist(
    data_dir: Path, progress: Progress, mirror: str | None, cancel: Callable[[], bool] | None
) -> bool:
    """Download again every MNIST .gz whose md5 is wrong (it replaces the broken file only when whole);
    True if any was fetched.  A failed download keeps the reason of the broken file's error."""
    from convscope.features.data.download import DownloadError

    raw = _mnist_raw(data_dir)
    fetched = False
    for name, md5, urls in mnist_sources(mirror):
        path = raw / name
        if not path.is_file() or _md5(path) == md5:
            continue
        try:
            _fetch(f"Downloading MNIST again ({name} was incomplete)", urls, path, md5, progress, cancel)
        except DownloadError:
            return False
        fetched = True
    return fetched


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_mnist(
    data_dir: str | os.PathLike,
    download: bool = True,
    channels: int = 1,
    progress: Progress | None = None,
    mirror: str | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Dataset:
    """MNIST train (60,000) and test (10,000), zero-padded from 28x28 to 32x32; `channels` 1 or 3."""
    data_dir = Path(data_dir)
    progress = progress or _no_progress
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not _mnist_present(data_dir):
        hint = f"put the four MNIST IDX files (.gz or unpacked) in {_mnist_raw(data_dir)}/"
        if not download:
            raise DatasetUnavailable(f"MNIST not found in {_mnist_raw(data_dir)}; {hint}")
        _download_mnist(data_dir, progress, mirror, cancel, hint)
    progress("Loading MNIST", None, None)
    raw = _mnist_raw(data_dir)
    try:
        splits = _read_mnist(raw, channels)
    except DatasetUnavailable:
        # A file cut short (an interrupted copy, an old downloader) is fetched again when its md5 is wrong.
        if not download or not _refetch_broken_mnist(data_dir, progress, mirror, cancel):
            raise
        splits = _read_mnist(raw, channels)
    (xt, yt), (xv, yv) = splits
    return Dataset("mnist", xt, yt, xv, yv, DIGIT_CLASSES, source=str(raw))


def _download_mnist(
    data_dir: Path, progress: Progress, mirror: str | None, cancel: Callable[[], bool] | None, hint: str
) -> None:
    """Fetch the missing .gz files into MNIST/raw/ (a file already there, whole or unpacked, is kept)."""
    from convscope.features.data.download import DownloadError

    raw = _mnist_raw(data_dir)
    sources = mnist_sources(mirror)
    for i, (name, md5, urls) in enumerate(sources):
        stem = name.removesuffix(".gz")
        if (raw / stem).is_file() or (raw / f"{stem}.gz").is_file():
            continue
        try:
            what = f"Downloading MNIST (file {i + 1} of {len(sources)})"
            _fetch(what, urls, raw / name, md5, progress, cancel)
        except DownloadError as exc:
            raise DatasetUnavailable(
                f"MNIST is absent from {data_dir} and could not be downloaded ({exc}); {hint}"
            ) from None


# -- choice with fallback ------------------------------------------------------------------------------------
def make_dataset(
    name: str = "cifar10",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    channels: int | None = None,
    progress: Progress | None = None,
    mirror: str | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Dataset:
    """The named data set from `data_dir`, or the built-in digits with `note` saying why.

    `channels` defaults to the named set's own (3 for CIFAR-10, 1 for MNIST and the grey built-in digits,
    which run as one channel rather than three identical ones); the stand-in digits for a missing set get
    the requested set's count, so the model built for it also fits the stand-in.  `progress`, `mirror` and
    `cancel`: see the module docstring and features/data/download.py (a cancel falls back like a failure).
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {NAMES}")
    channels = channels if channels is not None else (3 if name == "cifar10" else 1)
    if name == "digits":
        return builtin_digits(channels=channels)
    try:
        if data_dir is None:
            raise DatasetUnavailable(f"no data directory given for {name}")
        if name == "cifar10":
            ds = load_cifar10(data_dir, download, progress, mirror, cancel)
            return ds if channels == 3 else _grey(ds)
        return load_mnist(data_dir, download, channels, progress, mirror, cancel)
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
