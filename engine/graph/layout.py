"""Layout: where every node of a NetSpec sits in 3D (pure numpy; computed once per model).

The arrangement follows Harley 2015: layers are horizontal sheets stacked along +Y (input at the
bottom, output on top).  Inside a grid layer each feature map is a square grid lying in the XZ
plane (image row -> +Z, image column -> +X, so seen from the default camera in front and above,
the picture is upright), and the maps of one layer sit side by side along X.  Vector layers
(fully connected, output) are rows along X, wrapped into several rows when very long.

Arrays are indexed by node id, so they can be uploaded to the GPU as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from convscope.engine.graph.spec import LayerSpec, NetSpec


@dataclass(frozen=True)
class LayoutStyle:
    grid_pitch: float = 1.0  # distance between neighbouring pixels of a feature map
    grid_node: float = 0.8  # node size in a feature map (world units)
    map_gap: float = 4.0  # gap between two feature maps of one layer, in addition to a quarter map
    vector_pitch: float = 2.0  # distance between units of a fully connected row
    vector_node: float = 1.5
    output_pitch: float = 7.0  # output units are few and labelled: space them out
    output_node: float = 4.0
    max_row: int = 160  # longer vector layers wrap into several rows
    layer_gap: float = 28.0  # vertical distance between consecutive layers
    max_maps_per_row: int = 16  # more maps than this are arranged in a near-square block


@dataclass(frozen=True)
class Layout:
    spec: NetSpec
    positions: np.ndarray  # (N, 3) float32 centre of each node, by node id
    sizes: np.ndarray  # (N,) float32 edge length of each node's square
    layer_index: np.ndarray  # (N,) int32 index into spec.layers
    layer_bounds: np.ndarray  # (L, 2, 3) float32 min / max corner of each layer (node extents included)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.layer_bounds[:, 0].min(axis=0), self.layer_bounds[:, 1].max(axis=0)

    def layer_center(self, i: int) -> np.ndarray:
        return self.layer_bounds[i].mean(axis=0)


def _grid_layer(layer: LayerSpec, style: LayoutStyle) -> tuple[np.ndarray, float]:
    c, h, w = layer.shape
    p = style.grid_pitch
    map_w, map_h = w * p, h * p
    gap = style.map_gap + 0.25 * max(map_w, map_h)
    per_row = c if c <= style.max_maps_per_row else math.ceil(math.sqrt(c))
    rows = math.ceil(c / per_row)
    ch = np.arange(c)
    mcol, mrow = ch % per_row, ch // per_row
    # Centre of each map, the whole block centred on the origin.
    cx = (mcol - (per_row - 1) / 2) * (map_w + gap)
    cz = (mrow - (rows - 1) / 2) * (map_h + gap)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    lx = (xx.ravel() - (w - 1) / 2) * p
    lz = (yy.ravel() - (h - 1) / 2) * p
    pos = np.zeros((c, h * w, 3), np.float32)
    pos[:, :, 0] = cx[:, None] + lx[None, :]
    pos[:, :, 2] = cz[:, None] + lz[None, :]
    return pos.reshape(-1, 3), style.grid_node


def _vector_layer(layer: LayerSpec, style: LayoutStyle) -> tuple[np.ndarray, float]:
    n = layer.count
    if layer.kind == "output":
        pitch, node = style.output_pitch, style.output_node
    else:
        pitch, node = style.vector_pitch, style.vector_node
    per_row = n if n <= style.max_row else math.ceil(n / math.ceil(n / style.max_row))
    rows = math.ceil(n / per_row)
    i = np.arange(n)
    pos = np.zeros((n, 3), np.float32)
    pos[:, 0] = (i % per_row - (per_row - 1) / 2) * pitch
    pos[:, 2] = (i // per_row - (rows - 1) / 2) * pitch
    return pos, node


def build_layout(
    spec: NetSpec, style: LayoutStyle | None = None, visible: list[bool] | None = None
) -> Layout:
    """Place every node of `spec`.  Hidden layers (visible[i] False) keep their nodes but take no
    vertical room, so the remaining layers close up."""
    style = style or LayoutStyle()
    n = spec.total_nodes
    positions = np.zeros((n, 3), np.float32)
    sizes = np.zeros(n, np.float32)
    layer_index = np.zeros(n, np.int32)
    bounds = np.zeros((len(spec.layers), 2, 3), np.float32)
    level = 0
    for i, layer in enumerate(spec.layers):
        pos, node = _grid_layer(layer, style) if layer.is_grid else _vector_layer(layer, style)
        pos[:, 1] = level * style.layer_gap
        if visible is None or visible[i]:
            level += 1
        positions[layer.start : layer.stop] = pos
        sizes[layer.start : layer.stop] = node
        layer_index[layer.start : layer.stop] = i
        half = node / 2
        bounds[i, 0] = pos.min(axis=0) - half
        bounds[i, 1] = pos.max(axis=0) + half
    # Centre the stack vertically so the orbit target (origin) sits in the middle of the network.
    mid = (bounds[:, 0, 1].min() + bounds[:, 1, 1].max()) / 2
    positions[:, 1] -= mid
    bounds[:, :, 1] -= mid
    return Layout(spec, positions, sizes, layer_index, bounds)
