"""What the embedding feature shares with the inference and training processes: the vector kinds, the
layouts of the filters and images segments, and the images-job messages both worker protocols carry.

Both processes import it: numpy only.  The render side creates each segment; the worker attaches and
fills it (docs/PROTOCOLS.md has the flow).  An images job writes two segments: labels and pixels (read by
the render process) and the vectors (read by the t-SNE process straight from there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from convscope.engine.graph.spec import NetSpec

# The four per-filter vector kinds of the paper's section 3.2.3 (computed by vectors.py).
KINDS = ("coefficients", "filter_gradients", "activations", "activation_gradients")
KIND_LABELS = {
    "coefficients": "filter coefficients",
    "filter_gradients": "filter gradients",
    "activations": "activation maps",
    "activation_gradients": "activation gradients",
}
IMAGES = "images"  # the kind of the second mode: many images by one layer's activations
MAX_IMAGE_DIM = 2048  # ImageVectors' max_dim: wider maps are average pooled (see image_dim)


def conv_layers(spec: NetSpec) -> list:
    return [layer for layer in spec.layers if layer.kind == "conv"]


# -- images-job messages, worker -> render (the same in the inference and the training protocol) -------


class ImgAttached(NamedTuple):
    job: int  # both segments are mapped: the render side unlinks the pixels one


class ImgProgress(NamedTuple):
    job: int
    fraction: float


class ImgDone(NamedTuple):
    job: int
    meta: dict  # seconds, n, batches, longest_batch_s (and step, from the trainer)


class ImgFailed(NamedTuple):
    job: int
    text: str


IMAGE_MESSAGES = (ImgAttached, ImgProgress, ImgDone, ImgFailed)


# -- segment layouts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterLayout:
    """Where one conv layer's filter vectors sit in the filters slot: stable ids, then the four KINDS."""

    layer: str
    index: int  # among the conv layers, from 0
    count: int  # filters (C_out)
    weight_shape: tuple[int, int, int]  # (C_in / groups, kh, kw): a coefficient / filter-grad row
    map_shape: tuple[int, int]  # (H, W): an activation / activation-gradient row as a map

    @classmethod
    def of(cls, spec: NetSpec, index: int) -> FilterLayout:
        convs = conv_layers(spec)
        if not 0 <= index < len(convs):
            raise ValueError(f"conv layer index {index} out of range: the network has {len(convs)}")
        conv = convs[index]
        c, h, w = conv.shape
        if getattr(conv, "inputs", None):  # a traced Dag layer: the window and channels sit on its edge set
            e = conv.inputs[0]
            cin = int(e.in_shape[0]) // max(int(e.groups), 1)
            return cls(conv.name, index, int(c), (cin, int(e.kernel[0]), int(e.kernel[1])), (int(h), int(w)))
        before = spec.layers[spec.index(conv.name) - 1]
        k = conv.kernel or 1
        return cls(conv.name, index, int(c), (int(before.shape[0]), int(k), int(k)), (int(h), int(w)))

    def dim(self, kind: str) -> int:
        return int(
            np.prod(self.weight_shape if kind in ("coefficients", "filter_gradients") else self.map_shape)
        )

    @property
    def ids(self) -> slice:
        return slice(0, self.count)

    def block(self, kind: str) -> slice:
        at = self.count
        for k in KINDS:
            n = self.count * self.dim(k)
            if k == kind:
                return slice(at, at + n)
            at += n
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")

    @property
    def total(self) -> int:
        return self.count * (1 + sum(self.dim(k) for k in KINDS))


def filter_slot_count(spec: NetSpec) -> int:
    """Floats in the filters slot of `spec`: enough for its largest conv layer."""
    return max(FilterLayout.of(spec, i).total for i in range(len(conv_layers(spec))))


@dataclass
class FilterData:
    """One layer's filter vectors, copied out of the filters slot (safe to keep)."""

    cmd: int  # the embed_filters command that asked for them
    spec_version: int  # the TrainHandle.spec_version the filters belong to
    layer: str
    layer_index: int
    ids: np.ndarray  # (C,) int64 stable filter ids, in filter index order (row i is filter i)
    vectors: dict[str, np.ndarray]  # kind -> (C, D) float32, every kind of KINDS
    weight_shape: tuple[int, int, int]
    map_shape: tuple[int, int]
    label: int  # the monitored image's class the gradients are for
    loss: float  # its cross-entropy
    step: int  # optimizer steps of the weights they come from
    monitor_index: int
    seconds: float  # time the worker took

    def shape_of(self, kind: str) -> tuple[int, ...]:
        return self.weight_shape if kind in ("coefficients", "filter_gradients") else self.map_shape


def unpack_filters(lay: FilterLayout, buf: np.ndarray, cmd: int, version: int, meta: dict) -> FilterData:
    return FilterData(
        cmd=cmd,
        spec_version=version,
        layer=lay.layer,
        layer_index=lay.index,
        ids=buf[lay.ids].astype(np.int64),
        vectors={k: buf[lay.block(k)].reshape(lay.count, lay.dim(k)).copy() for k in KINDS},
        weight_shape=lay.weight_shape,
        map_shape=lay.map_shape,
        label=int(meta["label"]),
        loss=float(meta["loss"]),
        step=int(meta["step"]),
        monitor_index=int(meta["monitor_index"]),
        seconds=float(meta["seconds"]),
    )


def image_dim(shape: tuple[int, ...], max_dim: int = MAX_IMAGE_DIM) -> int:
    """Length of one image's vector for a layer of `shape`: what embed_vectors.ImageVectors makes of it
    (grid maps wider than max_dim are average pooled to s x s; `pooled_side`, torch-free here)."""
    if len(shape) == 3:
        c, h, w = (int(v) for v in shape)
        if c * h * w <= max_dim:
            return c * h * w
        s = max(1, min(h, w, math.isqrt(max(max_dim // max(c, 1), 1))))
        return c * s * s
    return int(np.prod(shape))


THUMB_SIDE = 64  # the longest side of an images-job thumbnail (what a hover shows, what a click opens)
THUMB_BYTES = 64 << 20  # all of a job's thumbnails together stay under this (they are in two processes)


def thumb_shape(view: tuple[int, int, int], n: int) -> tuple[int, int, int]:
    """(C, h, w) of the thumbnails of n images of a model that sees (C, H, W): the model's picture itself
    when it is small (a 28 x 28 digit, a 32 x 32 CIFAR image), else shrunk, aspect kept, to at most
    THUMB_SIDE across and THUMB_BYTES for all n (20,000 colour images: 33 x 33)."""
    c, h, w = (int(v) for v in view)
    scale = min(1.0, THUMB_SIDE / max(h, w), math.sqrt(THUMB_BYTES / max(n * c * h * w, 1)))
    if scale >= 1.0:
        return (c, h, w)
    return (c, max(1, int(h * scale)), max(1, int(w * scale)))


@dataclass(frozen=True)
class ImagesLayout:
    """The two segments of one images job.  The pixels segment: labels (n floats), then the images' uint8
    pixels packed four to a float (so the hover picture needs no other round trip); the render process
    reads it.  The vectors segment: n x d floats, read by the t-SNE process straight from there."""

    n: int
    d: int
    image_shape: tuple[int, int, int]  # (C, H, W) per picture: thumb_shape (explorer), the data's (trainer)

    @property
    def labels(self) -> slice:
        return slice(0, self.n)

    @property
    def pixel_bytes(self) -> int:
        return self.n * int(np.prod(self.image_shape))

    @property
    def pixels(self) -> slice:
        return slice(self.n, self.n + (self.pixel_bytes + 3) // 4)

    @property
    def count(self) -> int:
        """Floats in the pixels segment."""
        return self.pixels.stop

    @property
    def vectors_count(self) -> int:
        """Floats in the vectors segment."""
        return self.n * self.d

    def pixel_view(self, payload: np.ndarray) -> np.ndarray:
        """(n, C, H, W) uint8 view of the pixels inside `payload` (a float32 array of `count`)."""
        return payload[self.pixels].view(np.uint8)[: self.pixel_bytes].reshape(self.n, *self.image_shape)
