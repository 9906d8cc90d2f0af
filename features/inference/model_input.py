"""A drawing (ink 1 on 0, any H x W) as the tensor a model takes: resized to its H x W, copied to every
channel, normalised with its card's mean and std.  WorkerHandle.submit / infer_batch use it for the
explorer's 28x28 drawings; a caller that builds the model input itself passes an array of exactly
InputSpec.shape, which goes through untouched.  The resize is the explorer's own
(features/data/pictures.py: area averages down, bilinear up), so a drawing reaches the model the same
way whether the scene or this handle converts it.  numpy and Pillow only (render process).
"""

from __future__ import annotations

import numpy as np
from convscope.features.data.pictures import resize
from convscope.features.inference.messages import InputSpec


def drawing_to_input(drawing: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The model input (float32, `spec.shape`) for a 2D drawing; ValueError when the shape cannot take one."""
    img = np.asarray(drawing, np.float32)
    if img.ndim != 2:
        raise ValueError(f"a drawing is a 2D image, got shape {img.shape}")
    shape = tuple(spec.shape)
    if len(shape) == 3:
        c, h, w = shape
        x = np.broadcast_to(np.clip(resize(img, h, w), 0.0, 1.0), (c, h, w))
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
