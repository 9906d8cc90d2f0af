"""What the network sees: drawings and image files turned into 28x28 float32 inputs in [0, 1].

* `pad_to_input(canvas)`: area-average downsampling of the drawing pad (each network pixel is the
  mean ink of the pad pixels it covers), as in Harley's 2015 interactive visualization.
* `image_file_to_input(path)`: any PNG / JPEG / ... of any size and either polarity: grey
  conversion (transparency composited against the ink's opposite colour), ink found against the
  border (a border brighter than the image average means dark ink on light paper: invert), the
  background level taken to 0 and the ink to 1, non-square images padded to square with
  background, then the same area-average to 28x28.

No MNIST-style centring or size normalisation: the network sees the drawing where it is.
numpy and Pillow only.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

INPUT_SIZE = 28  # the network's input edge
# A drawing needs 28x28 pixels; a phone photo of one is ~12 Mpx.  Bigger files are refused before their
# pixels are decoded (a 10000x10000 PNG would take 100 MB to 400 MB of memory for nothing).
MAX_INPUT_SIDE = 5000
MAX_INPUT_PIXELS = MAX_INPUT_SIDE * MAX_INPUT_SIDE
_MAX_WORK_SIDE = 1024  # bigger files are first box-reduced (exact area averages) to about this


class InputImageError(ValueError):
    """An input image could not be read or used; the message names the file."""


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: output cell k is the mean of the input interval [k, k+1) * n_in / n_out,
    counting partly covered input pixels by the covered fraction."""
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    left = np.arange(n_in, dtype=np.float64)
    overlap = np.minimum(left[None, :] + 1.0, edges[1:, None]) - np.maximum(left[None, :], edges[:-1, None])
    weights = np.clip(overlap, 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-average (box) resampling of a 2-D array to (height, width); exact for any size ratio."""
    image = np.asarray(image, np.float32)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"expected a non-empty 2-D array, got shape {image.shape}")
    rows = _area_matrix(image.shape[0], height)
    cols = _area_matrix(image.shape[1], width)
    return (rows @ image @ cols.T).astype(np.float32)


def pad_to_input(canvas: np.ndarray) -> np.ndarray:
    """The drawing pad (any (h, w), ink in [0, 1]) as the network's (28, 28) float32 input."""
    canvas = np.asarray(canvas, np.float32)
    if canvas.ndim != 2:
        raise ValueError(f"pad canvas must be 2-D, got shape {canvas.shape}")
    return np.clip(area_resize(canvas, INPUT_SIZE, INPUT_SIZE), 0.0, 1.0)


def _grey(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Luminance in [0, 1] and alpha in [0, 1] (None when the image has no transparency)."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    alpha = None
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(img.getchannel("A"), np.float32) / 255.0
        img = img.convert("L")
    if img.mode.startswith("I;16"):
        grey = np.asarray(img, np.float32) / 65535.0
    elif img.mode == "I":
        grey = np.asarray(img, np.float32)
        grey = grey / (65535.0 if grey.max(initial=0.0) > 255.0 else 255.0)
    elif img.mode == "F":
        grey = np.asarray(img, np.float32)
        grey = grey / (255.0 if grey.max(initial=0.0) > 1.0 else 1.0)
    else:
        grey = np.asarray(img.convert("L"), np.float32) / 255.0
    if alpha is not None and alpha.min() >= 1.0:
        alpha = None
    return np.clip(grey, 0.0, 1.0), alpha


def _border(image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    b = max(1, round(0.02 * min(h, w)))
    return np.concatenate(
        [image[:b].ravel(), image[-b:].ravel(), image[:, :b].ravel(), image[:, -b:].ravel()]
    )


def image_to_input(img: Image.Image) -> np.ndarray:
    """A decoded Pillow image as the network's (28, 28) float32 input (see the module docstring)."""
    img = ImageOps.exif_transpose(img)
    factor = max(img.size) // _MAX_WORK_SIDE
    if factor >= 2:
        img = img.reduce(factor)
    grey, alpha = _grey(img)
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
        return np.zeros((INPUT_SIZE, INPUT_SIZE), np.float32)  # a blank page
    ink = np.clip((grey - low) / (high - low), 0.0, 1.0)
    h, w = ink.shape
    if h != w:
        side = max(h, w)
        square = np.zeros((side, side), np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = ink
        ink = square
    return np.clip(area_resize(ink, INPUT_SIZE, INPUT_SIZE), 0.0, 1.0)


def image_file_to_input(path: str | Path) -> np.ndarray:
    """Read an image file as the network's (28, 28) float32 input; InputImageError if unreadable."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            # A FIFO would block Image.open, a device would be read forever.
            raise InputImageError(f"cannot read image {path}: not a regular file")
        with warnings.catch_warnings():
            # Pillow warns about big images on stderr; the size is checked here instead, in one line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            if img.width * img.height > MAX_INPUT_PIXELS:
                raise InputImageError(
                    f"cannot read image {path}: it is {img.width}x{img.height} pixels; the largest taken is "
                    f"{MAX_INPUT_PIXELS // 1_000_000} megapixels (e.g. {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE})"
                )
            img.load()
            if img.width < 1 or img.height < 1:
                raise InputImageError(f"cannot read image {path}: it is empty")
            return image_to_input(img)
    except InputImageError:
        raise
    except FileNotFoundError:
        raise InputImageError(f"cannot read image {path}: no such file") from None
    except IsADirectoryError:
        raise InputImageError(f"cannot read image {path}: it is a folder") from None
    except PermissionError:
        raise InputImageError(f"cannot read image {path}: permission denied") from None
    except Image.DecompressionBombError:  # so big that Pillow refuses to open it at all
        raise InputImageError(
            f"cannot read image {path}: it is over {MAX_INPUT_PIXELS // 1_000_000} megapixels, the most taken"
        ) from None
    except UnidentifiedImageError:
        raise InputImageError(f"cannot read image {path}: not an image format Pillow knows") from None
    except (OSError, ValueError, SyntaxError) as exc:
        # Truncated or corrupt data, unsupported modes, absurd sizes.
        raise InputImageError(f"cannot read image {path}: {exc}") from None
