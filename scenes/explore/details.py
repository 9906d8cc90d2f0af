"""NodeDetails: the selected node's calculation for the Node details panel, and its images.

Per frame `update` redoes the explanation (engine/graph/explain.py) only when the selection, the
result, the weights or the colour settings changed; for a conv node it also builds three RGB strips
(the input patch coloured like its nodes, the filter, and their product over [-m, m]; one k x k tile
per input channel, 1 px apart).  `upload` is the only place they reach the GPU (UiTextures it owns
and frees in `release`).  What the panel shows lands in ExploreState (details, details_note).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from convscope.engine.gpu import colormaps
from convscope.engine.gpu.imgui_renderer import UiTexture
from convscope.engine.graph.explain import Explanation, explain
from convscope.engine.graph.spec import NetSpec
from convscope.scenes.explore.state import ExploreState

DETAIL_IMAGES = ("patch", "filter", "product")  # conv node details: three strips of k x k tiles


class NodeDetails:
    def __init__(self) -> None:
        self.key: tuple | None = None  # what the details were computed for
        self.images: dict[str, np.ndarray] = {}  # built in update, uploaded in upload
        self.version = 0
        self.textures: dict[str, UiTexture] = {}

    def invalidate(self) -> None:
        self.key = None

    def update(
        self,
        s: ExploreState,
        spec: NetSpec | None,
        activations: np.ndarray | None,
        weights: dict | None,
        versions: tuple[int, int],
        node_range: Callable[[str], tuple[float, float]],
    ) -> None:
        """Redo the selected node's calculation when the selection or the numbers changed.
        `versions`: (result, weights) versions; `node_range(layer)`: a layer's colour range."""
        key = (s.selected, *versions, s.colormap, s.normalize)
        if key == self.key:
            return
        self.key = key
        s.details, s.details_note = None, None
        self.images = {}
        self.version += 1
        if s.selected < 0 or spec is None or s.selected >= spec.total_nodes:
            return
        if activations is None:
            s.details_note = "waiting for the network..."
            return
        try:
            e = explain(spec, s.selected, activations, weights)
        except ValueError:
            s.details_note = (
                "waiting for the model's weights..." if weights is None else "no weights for this layer"
            )
            return
        s.details = e
        if e.patch is not None:
            below = spec.layers[spec.index(e.layer.name) - 1]
            self.images = conv_images(e, s.colormap, node_range(below.name))

    def upload(self, ctx) -> None:
        for name in DETAIL_IMAGES:
            img = self.images.get(name)
            if img is None:
                continue
            h, w = img.shape[:2]
            tex = self.textures.get(name)
            if tex is None or tex.size != (w, h):
                if tex is not None:
                    tex.release()
                tex = self.textures[name] = UiTexture(ctx, (w, h), 3, smooth=False)
            tex.sync(img, self.version)

    def refs(self) -> dict:
        """The textures the panel shows this frame."""
        return {k: t.ref for k, t in self.textures.items() if self.images.get(k) is not None}

    def release(self) -> None:
        for tex in self.textures.values():
            tex.release()
        self.textures = {}


def conv_images(e: Explanation, cmap: str, patch_range: tuple[float, float]) -> dict[str, np.ndarray]:
    """The input patch (over `patch_range`, like its nodes), the filter and their product (over
    [-m, m]), as RGB strips of one k x k tile per input channel, 1 px apart."""
    out = {}
    for name, block, rng in (
        ("patch", e.patch, patch_range),
        ("filter", e.filter, None),
        ("product", e.product, None),
    ):
        if rng is None:
            m = float(np.abs(block).max()) or 1.0
            rng = (-m, m)
        t = (block.astype(np.float64) - rng[0]) / max(rng[1] - rng[0], 1e-20)
        rgb = colormaps.sample(cmap, t)  # (C, k, k, 3)
        c, k, _ = block.shape
        strip = np.zeros((k, c * (k + 1) - 1, 3), np.float32)
        for ch in range(c):
            strip[:, ch * (k + 1) : ch * (k + 1) + k] = rgb[ch]
        out[name] = strip
    return out
