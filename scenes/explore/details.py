"""NodeDetails: the selected node's calculation for the Node details panel, and its images.

Per frame `update` redoes the explanation (engine/graph/explain.py, on the network's Dag) only when
the selection, the result, the weights or the colour settings changed; for a conv node (any kernel,
stride, dilation or groups) it also builds three RGB images (the input patch coloured like its source
layer's nodes, the filter, and their product over [-m, m]; one kh x kw tile per input channel of the
node's group, 1 px apart: one strip for a few channels, rows that fit the panel for many).  `upload`
is the only place they reach the GPU (UiTextures it owns and frees in `release`).  What the panel
shows lands in ExploreState (details, details_note).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from convscope.engine.gpu import colormaps
from convscope.engine.gpu.imgui_renderer import UiTexture
from convscope.engine.graph.dag import Dag
from convscope.engine.graph.explain import Explanation, explain, heatmap_grid
from convscope.scenes.explore.state import ExploreState

DETAIL_IMAGES = ("patch", "filter", "product")  # conv node details: three images of k x k tiles


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
        dag: Dag | None,
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
        s.detail_ranges = {}
        self.images = {}
        self.version += 1
        if s.selected < 0 or dag is None or s.selected >= dag.total_nodes:
            return
        if activations is None:
            s.details_note = "waiting for the network..."
            return
        try:
            e = explain(dag, s.selected, activations, weights)
        except ValueError:
            s.details_note = (
                "waiting for the model's weights..." if weights is None else "no weights for this layer"
            )
            return
        s.details = e
        if e.patch is not None:
            source = e.layer.inputs[0].source
            self.images, s.detail_ranges = conv_images(e, s.colormap, node_range(source))

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


def conv_images(
    e: Explanation, cmap: str, patch_range: tuple[float, float]
) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float, str]]]:
    """The input patch (over `patch_range` in `cmap`, like its nodes), the filter and their product (signed:
    the diverging map over [-m, m], zero in its middle colour), as RGB images of one kh x kw tile per input
    channel, 1 px apart, channel after channel along rows of `heatmap_grid`'s width (one strip for a few
    channels); and what each spans, (lo, hi, colormap), for the panel's colour bars."""
    out, ranges = {}, {}
    for name, block in (("patch", e.patch), ("filter", e.filter), ("product", e.product)):
        block = np.nan_to_num(block.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if name == "patch":
            lo, hi = patch_range
            rgb = colormaps.sample(cmap, (block - lo) / max(hi - lo, 1e-20))  # (C, k, k, 3)
            ranges[name] = (lo, hi, cmap)
        else:
            m = float(np.abs(block).max())
            rgb = colormaps.sample(colormaps.DIVERGING, colormaps.signed_t(block, m))
            ranges[name] = (-m, m, colormaps.DIVERGING)
        c, kh, kw = block.shape
        per_row, rows, _ = heatmap_grid(c, kh, kw)
        grid = np.zeros((rows * (kh + 1) - 1, per_row * (kw + 1) - 1, 3), np.float32)
        for ch in range(c):
            y, x = divmod(ch, per_row)
            grid[y * (kh + 1) : y * (kh + 1) + kh, x * (kw + 1) : x * (kw + 1) + kw] = rgb[ch]
        out[name] = grid
    return out, ranges
