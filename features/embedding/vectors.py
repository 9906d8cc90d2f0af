"""The vectors the 2D embedding view places with t-SNE, computed from a live torch model.

Per filter of one conv layer (the paper's section 3.2.3, four kinds, `KINDS`):

    coefficients          the filter's weights, flattened: (C_out, C_in*k*k)
    filter_gradients      d loss / d those weights: (C_out, C_in*k*k).  Computed for the monitored image
                          and its label (the same single forward/backward as the two kinds below), or for
                          the batch passed as `grad_batch` (mean cross-entropy over it) when the caller
                          has one
    activations           the filter's activation map of the monitored image, after the ReLU (what the scene
                          draws as the conv layer): (C_out, H*W)
    activation_gradients  d loss / d that map for the monitored image and its label: (C_out, H*W)

The loss is the cross-entropy of the network's logits (`forward_all(x)["output"]`) against `label`; with
`label=None` (the explorer: a drawing has no label) against the network's own top guess for the image,
taken from the same forward pass, so the gradients say how the filters would move to make the network
surer of what it already believes.  Gradients come from `torch.autograd.grad`, so the parameters' `.grad`
(the trainer's) are never touched.

Per image (the second mode): one layer's activations for many images, flattened; maps too large are average
pooled first, so 20,000 images of a 16x32x32 layer stay a few tens of MB.  `ImageVectors` computes them one
batch per step() on a copy of the network, so a training worker can interleave them with its steps;
`image_vectors` does it in one call.

Works on any network that follows a small protocol (`ConvNet`): `describe()` lists its layers (the conv ones
with kind "conv"), `forward_all(x)` returns every layer's activation by name, and its `nn.Conv2d` modules, in
registration order, are those conv layers in order.  models/revacnn.py RevaCNN and models/nets.py LeNet do.

Torch side: imported by the worker processes, the tools and the tests, never by the render process.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from convscope.features.embedding.messages import KINDS
from torch import nn

OUTPUT = "output"  # forward_all's logits


class ConvNet(Protocol):
    """What embed_vectors needs of a network (RevaCNN and LeNet qualify)."""

    def describe(self) -> list: ...  # LayerSpecs; conv layers have kind "conv"

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def modules(self): ...  # nn.Module's: yields the nn.Conv2d of the conv layers, in order


def conv_layers(net: ConvNet) -> list[tuple[str, nn.Conv2d]]:
    """(forward_all name, module) of every conv layer, input side first."""
    names = [layer.name for layer in net.describe() if layer.kind == "conv"]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if len(names) != len(convs):
        raise ValueError(f"{type(net).__name__}: describe() lists {len(names)} conv layers, has {len(convs)}")
    return list(zip(names, convs, strict=True))


def _conv(net: ConvNet, layer: str | int) -> tuple[str, nn.Conv2d]:
    layers = conv_layers(net)
    if isinstance(layer, int):
        if not 0 <= layer < len(layers):
            raise ValueError(f"conv layer index {layer} out of range: the network has {len(layers)}")
        return layers[layer]
    for name, conv in layers:
        if name == layer:
            return name, conv
    raise ValueError(f"no conv layer {layer!r}; the network has {[n for n, _ in layers]}")


def _as_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images -> float [0, 1] (the networks' convention); floats pass as they are."""
    if images.dtype == torch.uint8:
        return images.to(device=device).to(torch.float32).div_(255.0)
    return images.to(device=device, dtype=torch.float32)


@dataclass(frozen=True)
class FilterVectors:
    """The four kinds for one conv layer; each (C_out, D) float32, D given by `weight_shape` / `map_shape`."""

    layer: str
    vectors: dict[str, np.ndarray]  # kind -> (C_out, D); only the kinds asked for
    weight_shape: tuple[int, int, int]  # (C_in, k, k): how a coefficient / filter-gradient row is a filter
    map_shape: tuple[int, int]  # (H, W): how an activation / activation-gradient row is a map; (0, 0) if none
    label: int  # the class the gradients are for (the top guess when asked with None; -1: no forward pass)
    loss: float  # its cross-entropy (nan when no kind needed a forward pass)

    def __getitem__(self, kind: str) -> np.ndarray:
        return self.vectors[kind]

    @property
    def count(self) -> int:
        return len(next(iter(self.vectors.values())))

    def shape_of(self, kind: str) -> tuple[int, ...]:
        """The per-filter picture shape of `kind`'s rows."""
        return self.weight_shape if kind in ("coefficients", "filter_gradients") else self.map_shape


def filter_vectors(
    net: ConvNet,
    layer: str | int,
    image: torch.Tensor,
    label: int | None,
    kinds: tuple[str, ...] = KINDS,
    grad_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FilterVectors:
    """The per-filter vectors of conv `layer` (name or index) for the monitored `image` and its `label`.

    `image`: (C, H, W) or (1, C, H, W), uint8 or float in [0, 1].  `label` None: the network's top guess for
    `image` (FilterVectors.label says which).  `grad_batch` (images, labels): compute the filter gradients on
    that batch instead of the monitored image.  One forward and one backward at most.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; choose from {KINDS}")
    name, conv = _conv(net, layer)
    weight = conv.weight
    c_out, c_in, kh, kw = weight.shape
    device = weight.device
    out: dict[str, np.ndarray] = {}

    def rows(t: torch.Tensor) -> np.ndarray:
        return t.detach().reshape(c_out, -1).to("cpu", torch.float32).numpy().copy()

    if "coefficients" in kinds:
        out["coefficients"] = rows(weight)

    x = _as_input(image if image.ndim == 4 else image.unsqueeze(0), device)
    if x.shape[0] != 1:
        raise ValueError(f"filter_vectors takes one monitored image, got a batch of {x.shape[0]}")
    need_map = any(k in kinds for k in ("activations", "activation_gradients"))
    need_wgrad_here = "filter_gradients" in kinds and grad_batch is None
    loss_value = float("nan")
    map_shape: tuple[int, int] = (0, 0)
    if need_map or need_wgrad_here:
        with torch.enable_grad():  # the caller may be inside no_grad (a worker's inference loop)
            acts = net.forward_all(x)
            act = acts[name]  # (1, C_out, H, W) after the ReLU
            map_shape = (int(act.shape[-2]), int(act.shape[-1]))
            logits = acts[OUTPUT]
            if label is None:
                label = int(logits.detach().argmax(1)[0])
            loss = F.cross_entropy(logits, torch.tensor([int(label)], device=device))
            loss_value = float(loss.detach())
            wrt = []
            if need_wgrad_here:
                wrt.append(weight)
            if "activation_gradients" in kinds:
                wrt.append(act)
            grads = list(torch.autograd.grad(loss, wrt)) if wrt else []
        if need_wgrad_here:
            out["filter_gradients"] = rows(grads.pop(0))
        if "activations" in kinds:
            out["activations"] = rows(act[0])
        if "activation_gradients" in kinds:
            out["activation_gradients"] = rows(grads.pop(0)[0])
    if "filter_gradients" in kinds and grad_batch is not None:
        xb = _as_input(grad_batch[0], device)
        yb = grad_batch[1].to(device)
        with torch.enable_grad():
            loss_b = F.cross_entropy(net.forward_all(xb)[OUTPUT], yb)
            (g,) = torch.autograd.grad(loss_b, [weight])
        out["filter_gradients"] = rows(g)
    return FilterVectors(
        layer=name,
        vectors={k: out[k] for k in kinds},
        weight_shape=(int(c_in), int(kh), int(kw)),
        map_shape=map_shape,
        label=-1 if label is None else int(label),
        loss=loss_value,
    )


def pooled_side(channels: int, height: int, width: int, max_dim: int) -> int | None:
    """Side s of the s x s average pooling that fits channels*s*s into max_dim, or None when the maps fit."""
    if channels * height * width <= max_dim:
        return None
    return max(1, min(height, width, math.isqrt(max(max_dim // max(channels, 1), 1))))


class ImageVectors:
    """`layer`'s activations for many images, one batch per `step()`, so a training worker can interleave
    the 20,000 forward passes (seconds) with its steps instead of stalling for all of them.

    The network is copied at construction: every image is seen by the same weights even while training
    goes on between steps.  `images`: (N, C, H, W) uint8 or float in [0, 1], or anything with a length whose
    slices are such tensors (the inference worker's images, made at the model's size one batch at a time).
    Maps with more than `max_dim`
    values are average-pooled to s x s first (`pooled_side`): t-SNE reduces them to 50 PCA dimensions
    anyway, and 20,000 full 16x32x32 maps would be 1.3 GB.
    """

    def __init__(
        self, net: ConvNet, images: torch.Tensor, layer: str, batch_size: int = 256, max_dim: int = 2048
    ) -> None:
        self.net = copy.deepcopy(net)
        self.images, self.layer = images, layer
        self.batch_size, self.max_dim = batch_size, max_dim
        self.device = next(self.net.parameters()).device  # type: ignore[attr-defined]
        self.done = 0  # images computed so far
        self.out: np.ndarray | None = None
        self._side: int | None = None
        if len(images) == 0:
            raise ValueError("ImageVectors: no images")

    @property
    def finished(self) -> bool:
        return self.done >= len(self.images)

    @property
    def fraction(self) -> float:
        return self.done / len(self.images)

    def step(self) -> float:
        """Compute the next batch; returns the fraction done."""
        if self.finished:
            return 1.0
        s, e = self.done, min(len(self.images), self.done + self.batch_size)
        with torch.no_grad():
            a = self.net.forward_all(_as_input(self.images[s:e], self.device))[self.layer]
            if a.ndim == 4:
                if self.out is None:
                    self._side = pooled_side(*a.shape[1:], self.max_dim)
                if self._side is not None:
                    a = F.adaptive_avg_pool2d(a, self._side)
            a = a.flatten(1)
        if self.out is None:
            self.out = np.empty((len(self.images), a.shape[1]), np.float32)
        self.out[s:e] = a.to("cpu", torch.float32).numpy()
        self.done = e
        return self.fraction

    def run(self, progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Every remaining batch; `progress(fraction)` after each.  Returns (N, D) float32."""
        while not self.finished:
            fraction = self.step()
            if progress is not None:
                progress(fraction)
        return self.out


def image_vectors(
    net: ConvNet,
    images: torch.Tensor,
    layer: str,
    batch_size: int = 256,
    max_dim: int = 2048,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """`layer`'s activations for every image, flattened: (N, D) float32, D <= max_dim for grid layers
    (ImageVectors in one call)."""
    return ImageVectors(net, images, layer, batch_size, max_dim).run(progress)


__all__ = [
    "ConvNet",
    "FilterVectors",
    "ImageVectors",
    "KINDS",
    "conv_layers",
    "filter_vectors",
    "image_vectors",
    "pooled_side",
]
