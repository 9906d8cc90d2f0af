"""A drawing (ink 1 on 0, any H x W) as the tensor a model takes: resized to its H x W, copied to every
channel, normalised with its card's mean and std.  WorkerHandle.submit / infer_batch use it for the
explorer's 28x28 drawings; a caller that builds the model input itself passes an array of exactly
InputSpec.shape, which goes through untouched.  numpy only (render process).
"""

from __future__ import annotations

import numpy as np
from convscope.features.inference.messages import InputSpec


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Area-weighted resize of a 2D image (exact box averages when shrinking, bilinear-like when growing)."""
    src_h, src_w = img.shape
    if (src_h, src_w) == (h, w):
        return img

    def weights(n_in: int, n_out: int) -> np.ndarray:
        # Row i of the matrix: how much of each input pixel falls into output pixel i.
        m = np.zeros((n_out, n_in), np.float64)
        scale = n_in / n_out
        for i in range(n_out):
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
                m[i, j] = min(hi, j + 1) - max(lo, j)
        return m / m.sum(axis=1, keepdims=True)

    return (weights(src_h, h) @ img.astype(np.float64) @ weights(src_w, w).T).astype(np.float32)


def drawing_to_input(drawing: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The model input (float32, `spec.shape`) for a 2D drawing; ValueError when the shape cannot take one."""
    img = np.asarray(drawing, np.float32)
    if img.ndim != 2:
        raise ValueError(f"a drawing is a 2D image, got shape {img.shape}")
    shape = tuple(spec.shape)
    if len(shape) == 3:
        c, h, w = shape
        x = np.broadcast_to(_resize(img, h, w), (c, h, w))
        mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    elif img.size == shape[0]:
        x = img.reshape(shape)  # a flat input of as many values as the drawing has pixels (an MLP on 784)
        mean = np.asarray(spec.mean[:1], np.float32)
        std = np.asarray(spec.std[:1], np.float32)
    else:
        raise ValueError(f"a {img.shape[0]}x{img.shape[1]} drawing cannot feed an input of shape {shape}")
    return np.ascontiguousarray((x - mean) / std, np.float32)


def as_model_input(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """`x` itself if it is already a model input (exactly `spec.shape`), else a drawing converted."""
    arr = np.asarray(x, np.float32)
    if arr.shape == tuple(spec.shape):
        return arr
    if arr.ndim == 2:
        return drawing_to_input(arr, spec)
    raise ValueError(
        f"the model takes an input of shape {tuple(spec.shape)} (or a 2D drawing), got {arr.shape}"
    )
