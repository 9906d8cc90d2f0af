"""Many scatter points as one picture: the Embedding panel's images mode draws 20,000 points this way.

ImPlot draws each marker as its own polygon (a filled square is 4 vertices and 2 triangles), which is nothing
for a GPU but costs Mesa's llvmpipe about 10 ms a frame for 20,000 points on two cores (measured in the
explorer, docs/BENCHMARKS.md).  `rasterize` paints the same squares into an RGBA array in numpy (about 2 ms
for 20,000 points, and only when the points or the axes change); the panel shows it with
`implot.plot_image` over the axis limits it was painted for, so it stays put in data space.

    img = rasterize(xs, ys, colors, limits=(x0, x1, y0, y1), size=(w, h), side=3)

`colors` is (n, 4) uint8.  Where squares overlap, the later point's colour is the one numpy assigns last
(it does assign in order for one flat index array, though it does not promise to): at 2-3 pixels a point
covered by its neighbour looks the same either way.  Rows are top first
(y = y1 at row 0), the convention of engine/gpu/imgui_renderer.UiTexture.  numpy only: no GL, no ImGui.
"""

from __future__ import annotations

import numpy as np


def square_side(marker_size: float, scale: float = 1.0) -> int:
    """Pixels across ImPlot's square marker of `marker_size` (its corners sit at +-size/sqrt(2))."""
    return max(1, int(round(2.0 * 0.70710678 * marker_size * scale)))


def rasterize(
    xs: np.ndarray,
    ys: np.ndarray,
    colors: np.ndarray,
    limits: tuple[float, float, float, float],
    size: tuple[int, int],
    side: int,
) -> np.ndarray:
    """(h, w, 4) uint8: a `side` x `side` square of each point's colour, centred on it, on transparency."""
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ValueError(f"rasterize: size must be positive, got {size}")
    x0, x1, y0, y1 = (float(v) for v in limits)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"rasterize: empty limits {limits}")
    xs, ys = np.asarray(xs, np.float64).reshape(-1), np.asarray(ys, np.float64).reshape(-1)
    colors = np.asarray(colors, np.uint8).reshape(-1, 4)
    if not len(xs) == len(ys) == len(colors):
        raise ValueError(f"rasterize: {len(xs)} x, {len(ys)} y and {len(colors)} colours")
    img = np.zeros(h * w, np.uint32)  # one RGBA pixel per element: a quarter of the index work of bytes
    keep = np.isfinite(xs) & np.isfinite(ys)
    # Pixel coordinates: x0 at the left edge of column 0, y1 at the top edge of row 0.
    cx = np.floor((xs[keep] - x0) * (w / (x1 - x0)))
    cy = np.floor((y1 - ys[keep]) * (h / (y1 - y0)))
    rgba = np.ascontiguousarray(colors[keep]).view(np.uint32).reshape(-1)
    r = side // 2
    off = np.arange(side, dtype=np.int64) - r  # a square spans cx - r .. cx + side - 1 - r
    # Squares wholly inside (nearly all): one flat index per pixel, no clipping.
    inner = (cx >= r) & (cx <= w - side + r) & (cy >= r) & (cy <= h - side + r)
    centre = cy[inner].astype(np.int64) * w + cx[inner].astype(np.int64)
    square = (off[:, None] * w + off[None, :]).reshape(-1)
    img[(centre[:, None] + square).reshape(-1)] = np.repeat(rgba[inner], side * side)
    # Squares that cross an edge, or points beyond it: clip pixel by pixel.
    edge = ~inner
    if edge.any():
        ex, ey = cx[edge].astype(np.int64), cy[edge].astype(np.int64)
        px, py = ex[:, None] + off, ey[:, None] + off  # (m, side) columns and rows
        ok = ((py >= 0) & (py < h))[:, :, None] & ((px >= 0) & (px < w))[:, None, :]
        flat = py[:, :, None] * w + px[:, None, :]
        img[flat[ok]] = np.broadcast_to(rgba[edge][:, None, None], ok.shape)[ok]
    return img.view(np.uint8).reshape(h, w, 4)


__all__ = ["rasterize", "square_side"]
