"""What the network sees: drawings, images and files turned into the tensor handed to the model.

The model's input is described by an InputSpec (features/inference/messages.py): shape (C, H, W) and a
per-channel mean / std.  `to_model_input(source, spec)` gives the float32 (C, H, W) array `submit()` takes:

* one channel: the pad's ink (1 on 0, any canvas size) resized to H x W, then normalised;
* three channels: an RGB image (any size) centre-cropped to the model's aspect ratio (a photo is cut,
  never squashed, as torchvision's Resize + CenterCrop do for ImageNet), resized to H x W, scaled to
  [0, 1], then normalised ((x - mean) / std per channel);
* a file (`--input`): an image goes one of the two ways above by the model's channels (a grey model gets
  the ink pipeline below); a `.npy` of exactly (C, H, W) is taken as the model's tensor as it is, so an
  input of any shape can be fed, e.g. the `input` array of a `--dump-activations` file.
  `check_input_file(path)` tells a command line, before the model is known, whether the file is readable.

Decoding files and resampling (`open_image`, `resize`: area averages when shrinking, bilinear when
enlarging; `image_to_model_pixels`: centre crop, then resize) live in features/data/pictures.py, where the
workers' images mode reads them too; they are importable from here as well.

The older 28 x 28 helpers stay for the scenes that still use them:
* `pad_to_input(canvas)`: area-average downsampling of the drawing pad to 28 x 28.
* `image_file_to_input(path)`: any PNG / JPEG / ... of any size and either polarity: grey
  conversion (transparency composited against the ink's opposite colour), ink found against the
  border (a border brighter than the image average means dark ink on light paper: invert), the
  background level taken to 0 and the ink to 1, non-square images padded to square with
  background, then the same area-average to 28x28.

No MNIST-style centring or size normalisation: the network sees the drawing where it is.
numpy and Pillow only (the render process never imports torch).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
from convscope.features.data.pictures import (  # noqa: F401 - part of this module's API
    _MAX_WORK_SIDE,
    MAX_INPUT_PIXELS,
    MAX_INPUT_SIDE,
    InputImageError,
    area_resize,
    centre_crop,
    grey_alpha,
    image_to_model_pixels,
    open_image,
    resize,
    resize_matrix,
    rgb_to_pixels,
)
from PIL import Image, ImageOps

INPUT_SIZE = 28  # the network's input edge


def pad_to_input(canvas: np.ndarray) -> np.ndarray:
    """The drawing pad (any (h, w), ink in [0, 1]) as the network's (28, 28) float32 input."""
    canvas = np.asarray(canvas, np.float32)
    if canvas.ndim != 2:
        raise ValueError(f"pad canvas must be 2-D, got shape {canvas.shape}")
    return np.clip(area_resize(canvas, INPUT_SIZE, INPUT_SIZE), 0.0, 1.0)


def _border(image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    b = max(1, round(0.02 * min(h, w)))
    return np.concatenate(
        [image[:b].ravel(), image[-b:].ravel(), image[:, :b].ravel(), image[:, -b:].ravel()]
    )


def image_to_ink(img: Image.Image, height: int = INPUT_SIZE, width: int = INPUT_SIZE) -> np.ndarray:
    """A decoded Pillow image as ink in [0, 1], (height, width) float32 (see the module docstring)."""
    img = ImageOps.exif_transpose(img)
    factor = max(img.size) // _MAX_WORK_SIDE
    if factor >= 2:
        img = img.reduce(factor)
    grey, alpha = grey_alpha(img)
    if alpha is not None:
        # Transparent parts become the colour opposite to the ink, so the border test below works.
        ink_level = float((grey * alpha).sum() / max(alpha.sum(), 1e-6))
        background = 1.0 if ink_level < 0.5 else 0.0
        grey = grey * alpha + background * (1.0 - alpha)
    if float(np.median(_border(grey))) > float(grey.mean()):
        grey = 1.0 - grey  # dark ink on light paper
    low = float(np.median(_border(grey)))
    high = float(grey.max())  # not a percentile: a thin stroke can be well under 1% of a big image
    if high - low < 1e-3:
        return np.zeros((height, width), np.float32)  # a blank page
    ink = np.clip((grey - low) / (high - low), 0.0, 1.0)
    h, w = ink.shape
    # Padded (not cropped) to the model's aspect ratio with background: a drawing's strokes all count.
    want_w = max(w, round(h * width / height))
    want_h = max(h, round(w * height / width))
    if (want_h, want_w) != (h, w):
        framed = np.zeros((want_h, want_w), np.float32)
        top, left = (want_h - h) // 2, (want_w - w) // 2
        framed[top : top + h, left : left + w] = ink
        ink = framed
    return np.clip(area_resize(ink, height, width), 0.0, 1.0)


def image_to_input(img: Image.Image) -> np.ndarray:
    """A decoded Pillow image as the network's (28, 28) float32 input (see the module docstring)."""
    return image_to_ink(img, INPUT_SIZE, INPUT_SIZE)


def image_file_to_input(path: str | Path) -> np.ndarray:
    """Read an image file as the network's (28, 28) float32 input; InputImageError if unreadable."""
    with open_image(path) as img:
        return image_to_input(img)


# -- any model's input: (C, H, W), normalised per channel ------------------------------------------------


class InputDescription(Protocol):
    """What preprocessing needs of features/inference/messages.py's InputSpec (duck-typed, so the
    render side depends on the fields only)."""

    shape: tuple[int, ...]  # (C, H, W)
    mean: tuple[float, ...]  # one per channel, or one for all
    std: tuple[float, ...]


def _per_channel(values: tuple[float, ...], channels: int, what: str) -> np.ndarray:
    v = np.asarray(values, np.float32).reshape(-1)
    if len(v) == 1:
        v = np.repeat(v, channels)
    if len(v) != channels:
        raise ValueError(f"the input's {what} has {len(v)} values for {channels} channels")
    return v.reshape(channels, 1, 1)


def normalize(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(x - mean) / std per channel of a (C, H, W) array; one mean / std value stands for all channels."""
    x = np.asarray(x, np.float32)
    m = _per_channel(mean, x.shape[0], "mean")
    s = _per_channel(std, x.shape[0], "std")
    if not np.all(s > 0):
        raise ValueError(f"the input's std must be positive, got {tuple(float(v) for v in s.ravel())}")
    return ((x - m) / s).astype(np.float32)


def denormalize(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """The inverse of `normalize`: the model's tensor back in [0, 1] pixel units, for showing it."""
    x = np.asarray(x, np.float32)
    return x * _per_channel(std, x.shape[0], "std") + _per_channel(mean, x.shape[0], "mean")


class _Grid(NamedTuple):
    shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _flat_side(spec: InputDescription) -> int:
    """n when the model takes a flat vector of n * n values (n >= 2), else 0."""
    shape = tuple(int(s) for s in spec.shape)
    if len(shape) != 1:
        return 0
    n = math.isqrt(shape[0])
    return n if n >= 2 and n * n == shape[0] else 0


def _model_shape(spec: InputDescription) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in spec.shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"a picture fits a (C, H, W) input or a flat one of n * n values; this model takes {shape}"
        )
    return shape  # type: ignore[return-value]


def to_model_input(source: np.ndarray | Image.Image | str | Path, spec: InputDescription) -> np.ndarray:
    """The float32 tensor of exactly `spec.shape` handed to the model (see the module docstring).

    `source`: the pad's ink (a 2-D array in [0, 1], any size); an RGB image ((h, w, 3) uint8, or float in
    [0, 1]); a decoded Pillow image; or a file path (`file_to_model_input`).  A grey source given to a
    colour model is repeated over the channels; a colour image given to a grey model goes through the
    ink pipeline (`image_to_ink`).  ValueError (InputImageError for files) when it cannot fit."""
    if isinstance(source, (str, Path)):
        return file_to_model_input(source, spec)
    flat = _flat_side(spec)
    if flat:  # a flat input of n * n values (an MLP that takes 784): the picture at n x n, row by row
        grid = _Grid((1, flat, flat), spec.mean, spec.std)
        return to_model_input(source, grid).reshape(-1)
    c, h, w = _model_shape(spec)
    if isinstance(source, Image.Image):
        if c == 1:
            x = image_to_ink(source, h, w)[None]
        elif c == 3:
            x = image_to_model_pixels(rgb_to_pixels(source), h, w).transpose(2, 0, 1)
        else:
            raise ValueError(f"an image has 1 or 3 channels; this model takes {c} (give it a .npy file)")
        return normalize(x, spec.mean, spec.std)
    arr = np.asarray(source)
    if arr.ndim == 2:  # ink, 1 on 0
        ink = np.clip(resize(np.asarray(arr, np.float32), h, w), 0.0, 1.0)
        if c not in (1, 3):
            raise ValueError(f"the pad's ink fills 1 or 3 channels; this model takes {c}")
        return normalize(np.repeat(ink[None], c, axis=0), spec.mean, spec.std)
    if arr.ndim == 3 and arr.shape[2] == 3:
        if c == 3:
            return normalize(image_to_model_pixels(arr, h, w).transpose(2, 0, 1), spec.mean, spec.std)
        if c == 1:
            pixels = arr if arr.dtype == np.uint8 else (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            return to_model_input(Image.fromarray(np.ascontiguousarray(pixels), "RGB"), spec)
        raise ValueError(f"an RGB image has 3 channels; this model takes {c}")
    raise ValueError(f"cannot feed an array of shape {arr.shape} to a model taking {spec.shape}")


def check_input_file(path: str | Path) -> None:
    """InputImageError (one line naming the file) unless `path` is a readable image or .npy array: for the
    command line, which checks `--input` before the model (and so its input's shape) is known."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            np.load(path, allow_pickle=False, mmap_mode="r")
        except FileNotFoundError:
            raise InputImageError(f"cannot read input {path}: no such file") from None
        except (OSError, ValueError) as exc:
            raise InputImageError(f"cannot read input {path}: not a readable .npy array ({exc})") from None
        return
    with open_image(path):
        pass


def file_to_model_input(path: str | Path, spec: InputDescription) -> np.ndarray:
    """`--input FILE` for any model: an image file (see `to_model_input`), or a `.npy` holding exactly
    the model's (C, H, W) tensor (or that with a batch dimension of one), taken as it is (already
    normalised).  InputImageError with one line naming the file when it cannot be used."""
    path = Path(path)
    shape = tuple(int(s) for s in spec.shape)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise InputImageError(f"cannot read input {path}: no such file") from None
        except (OSError, ValueError) as exc:
            raise InputImageError(f"cannot read input {path}: not a readable .npy array ({exc})") from None
        if arr.shape == (1, *shape):
            arr = arr[0]
        if arr.shape != shape:
            raise InputImageError(
                f"input {path} holds an array of shape {arr.shape}; the model takes {shape}"
            )
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise InputImageError(f"input {path} holds {arr.dtype} values; the model takes real numbers")
        return np.ascontiguousarray(arr, np.float32)
    with open_image(path) as img:
        try:
            return to_model_input(img, spec)
        except ValueError as exc:
            raise InputImageError(f"cannot use image {path}: {exc}") from None
