"""The labelled images the t-SNE window's images mode embeds, for a model of any input shape.

`image_kind(shape)` says which images a model's input takes: "grey" for one channel of any H x W (or a
flat vector of n * n values), "colour" for three; ValueError with the reason for anything else.
`open_image_set(data_dir, kind)` loads them once (the inference worker does it in a thread):

  grey    MNIST (test 10,000, then training 60,000) from DATA_DIR/MNIST/raw/, else scikit-learn's 1,797
          built-in 8x8 digits upscaled to 28 x 28, with a note saying so;
  colour  the test set the explorer's Image panel opens first under `data_dir` (image_sources.py:
          CIFAR-10's binary batch or npz, never unpickled, or an ImageFolder), with CIFAR-10's training
          split after it where there is one; none there is a NoImageSet with one line.

The images stay in the data set's own form (uint8 arrays at their size, or JPEG bytes, or file paths):
`ImageSet.batch(start, stop, shape)` makes one batch of what the model sees, in [0, 1] before
normalisation, and its thumbnails, the same way the explorer feeds one picture (grey: `resize` to H x W;
colour: centre crop to the model's aspect ratio, then `resize`, features/data/pictures.py).  So a 20,000
image job for a 3 x 224 x 224 model holds 20,000 CIFAR images of 3 KB, not 20,000 resized ones of 600 KB.

numpy and Pillow at import (the render process reads `image_kind`); MNIST is read with
features/data/datasets.py, which imports torch, only when a grey set is opened.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from convscope.features.data.image_sources import ImageSource, SourceError, find_datasets
from convscope.features.data.pictures import image_to_model_pixels, model_pixels_batch, resize_batch

GREY, COLOUR = "grey", "colour"
MNIST_SIDE = 28  # MNIST's and the upscaled built-in digits' edge
NO_COLOUR_SET = "images mode needs CIFAR-10 or an ImageFolder under --data-dir"


class NoImageSet(Exception):
    """No images fit the model (a colour model without CIFAR-10 or an ImageFolder); one line."""


def flat_side(shape: tuple[int, ...]) -> int:
    """n when `shape` is a flat vector of n * n values (n >= 2), else 0."""
    if len(shape) != 1:
        return 0
    n = math.isqrt(int(shape[0]))
    return n if n >= 2 and n * n == int(shape[0]) else 0


def image_kind(shape: tuple[int, ...]) -> str:
    """GREY or COLOUR: the images a model of input `shape` is fed; ValueError when it takes no pictures."""
    shape = tuple(int(s) for s in shape)
    if flat_side(shape) or (len(shape) == 3 and shape[0] == 1):
        return GREY
    if len(shape) == 3 and shape[0] == 3:
        return COLOUR
    raise ValueError(
        f"images mode feeds pictures (1 or 3 channels, or a flat n x n grey vector); this model takes {shape}"
    )


def view_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of the picture a model of input `shape` sees (a flat n * n input: (1, n, n))."""
    n = flat_side(tuple(int(s) for s in shape))
    if n:
        return (1, n, n)
    c, h, w = (int(s) for s in shape)
    return (c, h, w)


@dataclass
class Batch:
    """One batch of an images job: what the model sees and what the window shows."""

    inputs: np.ndarray  # float32 (B, *model shape) in [0, 1]: the model's input before normalisation
    thumbs: np.ndarray  # uint8 (B, C, th, tw): the same pictures at the thumbnail size


class ImageSet:
    """Labelled images, held-out ones first (ids 0..n_test-1), then training ones (module docstring)."""

    def __init__(self, kind: str, parts: list, labels: np.ndarray, info: dict) -> None:
        self.kind = kind
        self._parts = parts  # [(first id, uint8 (N, h, w[, 3]) array or ImageSource)], in id order
        self.labels = labels  # int64 (n_test + n_train,)
        self.info = info
        self.n_test, self.n_train = int(info["n_test"]), int(info["n_train"])

    def __len__(self) -> int:
        return self.n_test + self.n_train

    def count(self, include_train: bool) -> int:
        return self.n_test + (self.n_train if include_train else 0)

    def batch(self, start: int, stop: int, shape: tuple[int, ...], thumb: tuple[int, int, int]) -> Batch:
        """Images start..stop as the model of input `shape` sees them, and at the thumbnail size `thumb`."""
        c, h, w = view_shape(shape)
        if c != (1 if self.kind == GREY else 3):
            raise ValueError(f"{self.info['dataset']} images are {self.kind}; the model takes {tuple(shape)}")
        pics = np.concatenate(
            [self._view(part, first, start, stop, h, w) for first, part in self._spans(start, stop)]
        )
        if pics.ndim == 3:
            pics = pics[:, None]  # grey: (B, 1, H, W)
        else:
            pics = pics.transpose(0, 3, 1, 2)  # colour: (B, 3, H, W)
        pics = np.ascontiguousarray(pics, np.float32)
        small = pics
        if thumb[1:] != (h, w):
            small = resize_batch(pics.transpose(0, 2, 3, 1), thumb[1], thumb[2]).transpose(0, 3, 1, 2)
        thumbs = np.rint(np.clip(small, 0.0, 1.0) * 255.0).astype(np.uint8)
        return Batch(pics.reshape(len(pics), *shape), thumbs)

    def _spans(self, start: int, stop: int):
        ends = [first for first, _ in self._parts[1:]] + [len(self)]
        for (first, part), end in zip(self._parts, ends, strict=True):
            if first < stop and start < end:
                yield first, part

    @staticmethod
    def _view(part, first: int, start: int, stop: int, h: int, w: int) -> np.ndarray:
        """Rows start..stop of `part` (ids from `first`) clipped to it, at h x w in [0, 1]."""
        lo, hi = max(start - first, 0), min(stop - first, len(part))
        if isinstance(part, np.ndarray):
            if part.ndim == 3:  # grey uint8 (N, h0, w0)
                return np.clip(resize_batch(part[lo:hi].astype(np.float32) / 255.0, h, w), 0.0, 1.0)
            return model_pixels_batch(part[lo:hi], h, w)
        pics: list[np.ndarray | None] = []
        for k in range(lo, hi):  # decoded one by one: JPEG bytes or files of any size
            try:
                pics.append(part.pixels(k))
            except SourceError:
                pics.append(None)  # an unreadable file among thousands stays black rather than end the job
        first = pics[0] if pics else None
        if first is not None and all(
            p is not None and p.dtype == np.uint8 and p.shape == first.shape for p in pics
        ):
            return model_pixels_batch(np.stack(pics), h, w)  # CIFAR's JPEGs: one size, resized together
        out = np.zeros((hi - lo, h, w, 3), np.float32)
        for i, pic in enumerate(pics):
            if pic is not None:
                out[i] = image_to_model_pixels(pic, h, w)
        return out


def _grey_set(data_dir: str) -> ImageSet:
    # datasets.py imports torch: only the worker opens a grey set.
    from convscope.features.data.datasets import DatasetUnavailable, builtin_digits, load_mnist

    note = reason = ""
    try:
        if not data_dir:
            raise DatasetUnavailable("no --data-dir given")
        ds = load_mnist(data_dir, download=False, channels=1)
        crop = (slice(None), 0, slice(2, 30), slice(2, 30))  # undo load_mnist's padding to 32
        x_test, x_train = ds.x_val[crop].numpy(), ds.x_train[crop].numpy()
        name = "MNIST"
    except DatasetUnavailable as exc:
        ds = builtin_digits(channels=1, size=MNIST_SIDE)
        x_test, x_train = ds.x_val[:, 0].numpy(), ds.x_train[:, 0].numpy()
        name = "digits"
        note = f"No MNIST here: scikit-learn's {len(x_test) + len(x_train):,} built-in 8x8 digits, upscaled."
        reason = str(exc)
    labels = np.concatenate([ds.y_val.numpy(), ds.y_train.numpy()]).astype(np.int64)
    info = _info(name, ds.source, len(x_test), len(x_train), ds.classes, data_dir, GREY, note, reason)
    parts = [(0, np.ascontiguousarray(x_test)), (len(x_test), np.ascontiguousarray(x_train))]
    return ImageSet(GREY, parts, labels, info)


def _colour_set(data_dir: str) -> ImageSet:
    if not data_dir or not os.path.isdir(data_dir):
        raise NoImageSet(NO_COLOUR_SET)
    entries, _ = find_datasets(data_dir)
    if not entries:
        raise NoImageSet(NO_COLOUR_SET)
    entry = entries[0]  # what the Image panel opens first, so a click there shows the same picture
    try:
        test = entry.open()
        train = entry.open_training()
    except SourceError as exc:
        raise NoImageSet(f"{NO_COLOUR_SET}: {exc}") from None
    parts: list = [(0, _in_memory(test))]
    labels = [test.targets]
    if train is not None:
        parts.append((len(test), _in_memory(train)))
        labels.append(train.targets)
    info = _info(
        entry.title, str(entry.path), len(test), len(train) if train is not None else 0, test.classes,
        data_dir, COLOUR, "", "",
    )  # fmt: skip
    info["entry"] = str(entry.path)  # the Image panel's DatasetEntry these test images are
    return ImageSet(COLOUR, parts, np.concatenate(labels).astype(np.int64), info)


def _in_memory(source: ImageSource):
    """Decoded arrays of one size as they are (CIFAR-10's), else the source, decoded per batch."""
    images = getattr(source, "images", None)
    return images if isinstance(images, np.ndarray) else source


def _info(name, source, n_test, n_train, classes, data_dir, kind, note, reason) -> dict:
    return {
        "dataset": name,
        "source": source,
        "note": note,  # why these images stand in for the ones looked for ("" when they are those)
        "reason": reason,  # the longer story (where they were looked for)
        "n_test": int(n_test),
        "n_train": int(n_train),
        "classes": tuple(classes),
        "data_dir": data_dir,
        "kind": kind,
        "entry": "",
    }


def open_image_set(data_dir: str, kind: str) -> ImageSet:
    """The image set of `kind` from `data_dir` (module docstring); NoImageSet when there is none."""
    if kind == GREY:
        return _grey_set(data_dir)
    if kind == COLOUR:
        return _colour_set(data_dir)
    raise ValueError(f"unknown image kind {kind!r}")


__all__ = ["COLOUR", "GREY", "Batch", "ImageSet", "NoImageSet", "image_kind", "open_image_set", "view_shape"]
