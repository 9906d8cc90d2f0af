"""Where the image panel's pictures come from: files, folders and test sets read with numpy and Pillow.

An `ImageSource` is a numbered list of pictures, each with a name and its true label ("" where none is
known); `pixels(i)` decodes one on demand as (h, w, 3) RGB (uint8, or float in [0, 1] for files).

* `open_path(path)`: one image file; a folder of images (sorted by name); or a torchvision-style
  ImageFolder (class folders of images: labels are the folder names, classes and files in torchvision's
  sorted order, so label numbers match a model trained on it).
* CIFAR-10's test set, never unpickled: the binary version (`cifar-10-batches-bin/test_batch.bin`,
  records of one label byte and 3072 pixel bytes, planes R, G, B) or an npz holding `x_test` / `y_test`
  (uint8 N x 32 x 32 x 3) or `test_jpeg` / `test_offsets` / `y_test` (JPEG files end to end), read with
  `allow_pickle=False`.  torchvision's `cifar-10-batches-py` pickles are pointed out but not read.
  `DatasetEntry.open_training()` reads the training split beside it the same ways (`data_batch_*.bin`,
  `x_train` / `y_train`, `train_jpeg` / `train_offsets` / `y_train`), where there is one.
* `find_datasets(data_dir)`: the test sets above, and ImageFolders at `data_dir`, `data_dir/test`,
  `data_dir/val` and one folder level down, found without listing whole trees.

A source of a labelled set also has `targets` (class numbers, -1 where unknown) and `classes` (names).
Every failure is a `SourceError` with one line naming the file or folder.  numpy and Pillow only: the
explorer's Image panel and the workers' images mode (features/data/image_set.py) both read these.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from convscope.features.data.pictures import InputImageError, open_image, rgb_to_pixels
from PIL import Image

# torchvision's IMG_EXTENSIONS, and GIF, which Pillow reads too.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue planes
_PROBE_FOLDERS = 32  # class folders looked into when deciding whether a folder is an ImageFolder


class SourceError(ValueError):
    """A file, folder or data set could not be read; the message is one line naming it."""


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


class ImageSource:
    """A numbered list of pictures with names and true labels (subclasses say how to decode one)."""

    title: str = ""

    def __init__(
        self,
        title: str,
        names: list[str],
        labels: list[str],
        targets: np.ndarray | None = None,
        classes: tuple[str, ...] = (),
    ) -> None:
        self.title = title
        self._names = names
        self._labels = labels
        # Class numbers in `classes` order (-1: unknown), for the t-SNE window's colours.
        self.targets = np.full(len(names), -1, np.int64) if targets is None else np.asarray(targets, np.int64)
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return len(self._names)

    def name(self, i: int) -> str:
        return self._names[i]

    def label(self, i: int) -> str:
        return self._labels[i]

    def pixels(self, i: int) -> np.ndarray:
        raise NotImplementedError


class FileList(ImageSource):
    """Image files on disk, decoded when picked.  Paths are kept as strings: an ImageNet-sized folder
    (50,000 files) lists in a fraction of a second that way, Path objects take seconds."""

    def __init__(
        self,
        title: str,
        paths: list[str],
        labels: list[str],
        root: str,
        targets: np.ndarray | None = None,
        classes: tuple[str, ...] = (),
    ) -> None:
        cut = len(os.path.join(root, ""))
        names = [q[cut:] if q.startswith(root) else os.path.basename(q) for q in paths]
        super().__init__(title, names, labels, targets, classes)
        self.paths = paths

    def pixels(self, i: int) -> np.ndarray:
        try:
            with open_image(self.paths[i]) as img:
                return rgb_to_pixels(img)
        except InputImageError as exc:
            raise SourceError(str(exc)) from None


class ArrayImages(ImageSource):
    """Decoded uint8 (N, H, W, 3) images in memory (CIFAR-10's binary batch or an npz's x_test)."""

    def __init__(self, title: str, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> None:
        names = [f"#{i}" for i in range(len(images))]
        super().__init__(title, names, [_class(classes, y) for y in labels], labels, classes)
        self.images = images

    def pixels(self, i: int) -> np.ndarray:
        return self.images[i]


class JpegImages(ImageSource):
    """JPEG files end to end in one buffer (`offsets[i]:offsets[i + 1]` is image i), decoded when picked."""

    def __init__(
        self,
        title: str,
        buffer: np.ndarray,
        offsets: np.ndarray,
        labels: np.ndarray,
        classes: tuple[str, ...],
    ) -> None:
        names = [f"#{i}" for i in range(len(labels))]
        super().__init__(title, names, [_class(classes, y) for y in labels], labels, classes)
        self.buffer, self.offsets = buffer, offsets

    def pixels(self, i: int) -> np.ndarray:
        data = self.buffer[int(self.offsets[i]) : int(self.offsets[i + 1])].tobytes()
        try:
            with Image.open(io.BytesIO(data)) as img:
                return np.asarray(img.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as exc:
            raise SourceError(f"{self.title}: image #{i} is not a readable JPEG ({exc})") from None


def _class(classes: tuple[str, ...], y) -> str:
    y = int(y)
    return classes[y] if 0 <= y < len(classes) else str(y)


# -- files and folders ------------------------------------------------------------------------------------


def _class_folders(root: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise SourceError(f"cannot read folder {root}: {exc.strerror or exc}") from None


def _images_under(folder: Path) -> list[str]:
    """Image files anywhere under `folder`, in torchvision's order (sorted walk, sorted names)."""
    found: list[str] = []
    seen: set[tuple[int, int]] = set()  # folders already walked: a symlink loop is walked once
    walked = []
    for here, dirs, files in os.walk(folder, followlinks=True):
        try:
            st = os.stat(here)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        walked.append((here, files))
    for here, files in sorted(walked):
        found += [os.path.join(here, f) for f in sorted(files) if is_image_file(f)]
    return found


def _has_image(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(e.is_file() and is_image_file(e.name) for e in entries)
    except OSError:
        return False


def looks_like_image_folder(root: Path) -> bool:
    """Class folders holding images (only the first few folders are looked into, and not recursively)."""
    try:
        return any(_has_image(root / c) for c in _class_folders(root)[:_PROBE_FOLDERS])
    except SourceError:
        return False


def open_image_folder(root: Path) -> FileList:
    """A torchvision ImageFolder: every image under each class folder, labelled with the folder's name."""
    paths: list[str] = []
    labels: list[str] = []
    targets: list[int] = []
    classes = _class_folders(root)
    for k, c in enumerate(classes):
        found = _images_under(root / c)
        paths += found
        labels += [c] * len(found)
        targets += [k] * len(found)
    if not paths:
        raise SourceError(f"no images in the class folders of {root}")
    title = f"{root.name}/ ({len(classes)} classes)"
    return FileList(title, paths, labels, str(root), np.array(targets, np.int64), tuple(classes))


def open_path(path: str | Path) -> ImageSource:
    """An image file, a folder of images, or an ImageFolder (see the module docstring)."""
    text = str(path).strip()
    if not text:
        raise SourceError("type the path of an image file or a folder")
    p = Path(text).expanduser()
    if not p.exists():
        raise SourceError(f"no such file or folder: {p}")
    if p.is_file():
        return FileList(p.name, [str(p)], [""], str(p.parent))
    if not p.is_dir():
        raise SourceError(f"cannot read {p}: not a regular file or folder")
    try:
        files = sorted(e.name for e in os.scandir(p) if e.is_file() and is_image_file(e.name))
    except OSError as exc:
        raise SourceError(f"cannot read folder {p}: {exc.strerror or exc}") from None
    if files:
        return FileList(f"{p.name}/", [os.path.join(p, f) for f in files], [""] * len(files), str(p))
    if looks_like_image_folder(p):
        return open_image_folder(p)
    raise SourceError(f"no images in folder {p} (looked for {', '.join(IMAGE_EXTENSIONS)})")


# -- CIFAR-10 without pickles -------------------------------------------------------------------------------


def _cifar_records(path: Path) -> np.ndarray:
    try:
        raw = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise SourceError(f"cannot read CIFAR-10 batch {path}: {exc.strerror or exc}") from None
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise SourceError(
            f"{path} is not a CIFAR-10 binary batch: {raw.size} bytes is not a whole number of "
            f"{CIFAR_RECORD}-byte records"
        )
    return raw.reshape(-1, CIFAR_RECORD)


def read_cifar_binary(path: str | Path, more: tuple[Path, ...] = ()) -> ArrayImages:
    """CIFAR-10's binary batch (e.g. cifar-10-batches-bin/test_batch.bin), and the batches in `more`
    after it; class names from the batches.meta.txt beside it when there is one."""
    path = Path(path)
    records = np.concatenate([_cifar_records(p) for p in (path, *more)]) if more else _cifar_records(path)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    classes = CIFAR_CLASSES
    meta = path.parent / "batches.meta.txt"
    if meta.is_file():
        names = tuple(x.strip() for x in meta.read_text(encoding="utf-8", errors="replace").splitlines())
        classes = tuple(x for x in names if x) or CIFAR_CLASSES
    return ArrayImages(f"CIFAR-10 {path.stem}", np.ascontiguousarray(images), records[:, 0], classes)


def read_cifar_npz(path: str | Path, split: str = "test") -> ImageSource:
    """The test (or "train") split of a CIFAR-10 npz: exact pixels (x_test, y_test) or JPEGs (test_jpeg,
    test_offsets, y_test); label_names when present."""
    path = Path(path)
    xk, yk, jk, ok = (f"x_{split}", f"y_{split}", f"{split}_jpeg", f"{split}_offsets")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            classes = tuple(str(s) for s in z["label_names"]) if "label_names" in keys else CIFAR_CLASSES
            if {xk, yk} <= keys:
                x, y = z[xk], z[yk]
                if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 or y.shape != (len(x),):
                    raise SourceError(
                        f"{path}: {xk} must be uint8 (N, H, W, 3) with N labels, got {x.dtype} {x.shape} "
                        f"and {y.shape}"
                    )
                return ArrayImages(f"CIFAR-10 {split} ({path.name})", x, y, classes)
            if {jk, ok, yk} <= keys:
                buf, off, y = z[jk], z[ok], z[yk]
                if off.shape != (len(y) + 1,) or buf.dtype != np.uint8 or int(off[-1]) > len(buf):
                    raise SourceError(f"{path}: {ok} do not fit {jk} and {yk}")
                return JpegImages(f"CIFAR-10 {split} ({path.name}, JPEG)", buf, off, y, classes)
    except SourceError:
        raise
    except FileNotFoundError:
        raise SourceError(f"cannot read {path}: no such file") from None
    except (OSError, ValueError, KeyError) as exc:
        raise SourceError(f"cannot read {path}: not a readable npz ({exc})") from None
    raise SourceError(f"{path} holds no {split} split ({xk} / {yk}, or {jk} / {ok} / {yk})")


# -- what a data folder offers ----------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetEntry:
    title: str  # what the panel lists
    path: Path  # the file or folder it opens
    kind: str  # "cifar-bin", "cifar-npz" or "imagefolder"

    def open(self) -> ImageSource:
        if self.kind == "cifar-bin":
            return read_cifar_binary(self.path)
        if self.kind == "cifar-npz":
            return read_cifar_npz(self.path)
        return open_image_folder(self.path)

    def open_training(self) -> ImageSource | None:
        """The training split that goes with this test set (CIFAR-10's), or None where there is none."""
        if self.kind == "cifar-bin":
            batches = tuple(sorted(self.path.parent.glob("data_batch_*.bin")))
            return read_cifar_binary(batches[0], batches[1:]) if batches else None
        if self.kind == "cifar-npz":
            try:
                return read_cifar_npz(self.path, "train")
            except SourceError:
                return None  # a test-only npz
        return None


def _short(stem: str) -> str:
    """A file's name without the data set's name in it (cifar10_exact_subset -> exact_subset), so the
    source list stays narrow."""
    name = re.sub(r"^[_\-. ]*cifar[_\-]?10[_\-. ]*|[_\-. ]*cifar[_\-]?10[_\-. ]*$", "", stem, flags=re.I)
    return name or stem


def _npz_has_test_split(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:  # reads the zip directory only
            keys = set(z.files)
    except (OSError, ValueError):
        return False
    return {"x_test", "y_test"} <= keys or {"test_jpeg", "test_offsets", "y_test"} <= keys


def find_datasets(data_dir: str | Path) -> tuple[list[DatasetEntry], list[str]]:
    """The test sets under `data_dir` the panel can browse, and notes on what it found but cannot read."""
    root = Path(data_dir)
    found: list[DatasetEntry] = []
    notes: list[str] = []
    if not root.is_dir():
        return found, [f"--data-dir {root} is not a folder"] if str(data_dir) else []
    for folder in (root, root / "cifar-10-batches-bin"):
        test = folder / "test_batch.bin"
        if test.is_file():
            found.append(DatasetEntry(f"CIFAR-10 {test.parent.name}/", test, "cifar-bin"))
    for folder in (root, root / "cifar10", root / "cifar-10"):
        if folder.is_dir():
            for npz in sorted(folder.glob("*.npz")):
                if "cifar" in npz.name.lower() and _npz_has_test_split(npz):
                    found.append(DatasetEntry(f"CIFAR-10 {_short(npz.stem)}", npz, "cifar-npz"))
    if (root / "cifar-10-batches-py").is_dir() and not any(e.kind.startswith("cifar") for e in found):
        notes.append(
            "cifar-10-batches-py/ holds Python pickles, which are never unpickled here: put the binary "
            "version (cifar-10-batches-bin/) or a cifar10.npz in the data folder"
        )
    candidates = [root, root / "test", root / "val"]
    for sub in _class_folders(root) if os.access(root, os.R_OK) else []:
        if sub not in ("test", "val"):
            candidates += [root / sub, root / sub / "test", root / sub / "val"]
    for folder in candidates:
        if folder.is_dir() and looks_like_image_folder(folder):
            rel = folder.relative_to(root)
            found.append(
                DatasetEntry(f"ImageFolder {rel if str(rel) != '.' else root.name}/", folder, "imagefolder")
            )
    return found, notes
