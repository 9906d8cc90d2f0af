"""Pictures as arrays: decoding image files and resampling pixels, shared by the render process (the
explorer's pad, Image panel and image sources) and the workers (the t-SNE window's images mode).

* `open_image(path)`: a file decoded by Pillow, its size checked before its pixels are; one-line
  InputImageError naming the file otherwise.  `rgb_to_pixels` / `grey_alpha`: a decoded image as floats.
* `resize(image, h, w)`: area averages when shrinking (every source pixel counts by the area it covers:
  exact for any ratio, no aliasing, the mean kept; what Harley's pad does) and bilinear with half-pixel
  centres when enlarging (torch's and Pillow's convention), so a 32 px CIFAR image fed to a 224 px model
  is smooth rather than 7 px blocks.  `resize_batch` does the same to many images at once.
* `image_to_model_pixels(rgb, h, w)`: centre crop to the model's aspect ratio (a photo is cut, never
  squashed, as torchvision's Resize + CenterCrop do), then `resize`: what a colour model sees, in [0, 1].

numpy and Pillow only: the render process never imports torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


def grey_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
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


def open_image(path: str | Path) -> Image.Image:
    """Open and decode an image file (size checked before its pixels are decoded); InputImageError with
    one line naming the file when it cannot be read.  The caller closes the image."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            # A FIFO would block Image.open, a device would be read forever.
            raise InputImageError(f"cannot read image {path}: not a regular file")
        with warnings.catch_warnings():
            # Pillow warns about big images on stderr; the size is checked here instead, in one line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        try:
            if img.width * img.height > MAX_INPUT_PIXELS:
                raise InputImageError(
                    f"cannot read image {path}: it is {img.width}x{img.height} pixels; the largest taken is "
                    f"{MAX_INPUT_PIXELS // 1_000_000} megapixels (e.g. {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE})"
                )
            img.load()
            if img.width < 1 or img.height < 1:
                raise InputImageError(f"cannot read image {path}: it is empty")
        except BaseException:
            img.close()
            raise
        return img
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


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of linear interpolation with half-pixel centres, clamped at the edges
    (torch's align_corners=False and Pillow's BILINEAR when enlarging)."""
    x = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0.0, n_in - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = x - lo
    weights = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights.astype(np.float32)


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) resampling weights along one axis: area averages when shrinking (or the same size,
    where it is the identity), bilinear when enlarging (see the module docstring)."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resample {n_in} pixels to {n_out}")
    return _area_matrix(n_in, n_out) if n_out <= n_in else _bilinear_matrix(n_in, n_out)


def _resample_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """`resize_matrix` applied along one axis, without multiplying by its zeros: each output pixel reads
    only the few input pixels its row of the matrix weighs (about n_in / n_out + 2 when shrinking, 2 when
    enlarging), so a photo shrinks to 224 px in milliseconds."""
    weights = resize_matrix(x.shape[axis], n_out)
    nonzero = weights > 0
    first = nonzero.argmax(axis=1)
    band = int(nonzero.sum(axis=1).max())  # the widest row: nonzeros of a row are contiguous
    idx = np.minimum(first[:, None] + np.arange(band), x.shape[axis] - 1)
    w = np.take_along_axis(weights, idx, axis=1) * (first[:, None] + np.arange(band) < x.shape[axis])
    x = np.moveaxis(np.asarray(x, np.float32), axis, 0)
    shape = (n_out, *([1] * (x.ndim - 1)))
    out = np.zeros((n_out, *x.shape[1:]), np.float32)
    for k in range(band):
        out += w[:, k].reshape(shape) * x[idx[:, k]]
    return np.moveaxis(out, 0, axis)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An (h, w) or (h, w, c) float array resampled to (height, width[, c]) float32, each axis as
    `resize_matrix` says (separable, so each channel is resampled on its own)."""
    image = np.asarray(image, np.float32)
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected a non-empty (h, w) or (h, w, c) array, got shape {image.shape}")
    # The axis that shrinks more goes first: the second pass then has less to read.
    if height / image.shape[0] <= width / image.shape[1]:
        out = _resample_axis(_resample_axis(image, height, 0), width, 1)
    else:
        out = _resample_axis(_resample_axis(image, width, 1), height, 0)
    return out.astype(np.float32)


def centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The largest centred part of an (h, w[, c]) image with the aspect ratio width : height."""
    h, w = image.shape[:2]
    if w * height > h * width:  # too wide: cut the sides
        keep = max(1, round(h * width / height))
        left = (w - keep) // 2
        return image[:, left : left + keep]
    keep = max(1, round(w * height / width))  # too tall (or exact): cut top and bottom
    top = (h - keep) // 2
    return image[top : top + keep]


def rgb_to_pixels(img: Image.Image) -> np.ndarray:
    """A decoded Pillow image as (h, w, 3) float32 RGB in [0, 1]: EXIF orientation applied, grey
    repeated, transparency composited over white (cut-outs and icons are drawn for a light page)."""
    img = ImageOps.exif_transpose(img)
    factor = max(img.size) // _MAX_WORK_SIDE
    if factor >= 2:
        img = img.reduce(factor)  # exact box averages; the model sees a few hundred pixels at most
    if img.mode.startswith("I") or img.mode == "F":  # 16-bit / float grey: keep its precision
        grey, alpha = grey_alpha(img)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    else:
        rgba = np.asarray(img.convert("RGBA"), np.float32) / 255.0
        rgb, alpha = rgba[:, :, :3], rgba[:, :, 3]
        if alpha.min() >= 1.0:
            alpha = None
    if alpha is not None:
        rgb = rgb * alpha[:, :, None] + (1.0 - alpha[:, :, None])
    return np.ascontiguousarray(rgb, np.float32)


def image_to_model_pixels(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """An RGB image, (h, w, 3) uint8 or float in [0, 1], centre-cropped and resized: (height, width, 3)
    float32 in [0, 1], what the model sees before normalisation (the panel shows this)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"expected an (h, w, 3) RGB image, got shape {rgb.shape}")
    pixels = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    pixels = resize(centre_crop(pixels, height, width), height, width)
    return np.clip(pixels, 0.0, 1.0)


def resize_batch(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """(n, h, w[, c]) images resampled to (n, height, width[, c]) float32, each exactly as `resize`
    resamples one (the same weights along each axis, in the same order), in two passes over the batch."""
    images = np.asarray(images, np.float32)
    if images.ndim not in (3, 4) or min(images.shape[1:3]) < 1:
        raise ValueError(f"expected a batch of (h, w) or (h, w, c) images, got shape {images.shape}")
    h, w = images.shape[1:3]
    if (h, w) == (height, width):
        return images
    if height / h <= width / w:
        out = _resample_axis(_resample_axis(images, height, 1), width, 2)
    else:
        out = _resample_axis(_resample_axis(images, width, 2), height, 1)
    return out.astype(np.float32)


def model_pixels_batch(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image_to_model_pixels` of a batch of same-sized uint8 (n, h, w, 3) images: (n, height, width, 3)
    float32 in [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 (n, h, w, 3) images, got {images.dtype} {images.shape}")
    crop = np.stack([centre_crop(x, height, width) for x in images]) if len(images) else images
    return np.clip(resize_batch(crop.astype(np.float32) / 255.0, height, width), 0.0, 1.0)
