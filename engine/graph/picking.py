"""Picking: which node is drawn under the pointer — a CPU ray cast against the squares as drawn.

Two ways to answer "which node is under the pointer" were measured (tools/bench_hover.py,
docs/DETAILS.md), for LeNet at 1280x720 on the 2-core development machine with Mesa llvmpipe:

  CPU ray cast (this module)       ~0.04-0.1 ms per pick (p50), no GL, nothing waits
  GPU id buffer, one pixel read    ~2-4 ms (1x1 pick-matrix target) or ~9-12 ms (viewport-sized)
                                   per pick: the node pass is drawn again and glReadPixels waits
                                   for the GPU to finish everything queued before it

The CPU route wins on llvmpipe by 20x or more, needs no second shader to keep in step with
nodes.glsl, and on a real GPU avoids the pipeline stall of a read-back, so convscope picks on the
CPU.  To be exact — the node actually drawn under the pointer,
not a neighbour, at any zoom — it repeats the geometry of shaders/nodes.glsl (engine.gpu.nodes):

  * grid layers (NodeStyle.flat "grids") are squares lying in their layer's XZ plane; the other
    layers are squares facing the camera (camera right / up as their axes);
  * half size = 0.5 x layout size x size_scale, grown toward the node pitch when the node is
    smaller than ~6 px on screen (close_gaps), with the shader's very formula;
  * rounded corners (radius u_corner, faded out below ~1.5 px), discarded outside;
  * the highlighted node's white ring (extent 1 + max(0.3, 2.5 px)) counts as that node, and it
    wins depth ties the way the shader's depth bias makes it win;
  * hidden layers are skipped; among several squares on the ray, the nearest (NDC depth) wins,
    and only what lies between the near and far planes counts.

How: a grid layer is cut by the ray once (its plane); the hit point is rounded to the nearest cell
of each feature map (numpy over all maps at once: O(maps), not O(nodes)), which names the only
node of that layer that can be there.  The other nodes (camera-facing ones; flat ones off a regular
grid) are screened by a screen-space disc per node, computed once per camera pose, so a sweep of
the pointer with a still camera only compares numbers.  The few candidates left (usually 1-6) get
the exact test in plain Python floats, cheaper than numpy's per-call overhead at that size.

Known sub-pixel differences from the rasteriser: on the exact edge of a square a pixel centre may
go either way, and the corner radius fades with the pixel footprint, which the quads and point
sprites estimate slightly differently for nodes 3-10 px wide.  Point sprites (NodeBatch "points",
used for small nodes) are dropped whole when their centre leaves the screen; a pick at the very
screen edge may then name a node that was not drawn.

The coarser questions scenes ask go through the same ray cast: `pick_map` (the feature map under
the pointer, for the training scene: the drawn node's map, else the map rectangle the ray crosses)
and `pick_layer` (the kiosk's tapped layer: the drawn node's layer, else a layer sheet with a margin).

Any network works: the picker reads only what every layer of a Dag (or a NetSpec) has, its node-id
range, shape and whether it is a grid, and the positions the layout gave each node; a layer of any
op kind (conv, pool, add, concat, opaque ...) is picked the same way.

Pixel coordinates are framebuffer pixels, origin top-left (engine.camera); a pixel's centre is at
(i + 0.5, j + 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.graph.layout import Layout


@dataclass(frozen=True)
class PickStyle:
    """The parts of engine.gpu.nodes.NodeStyle that change where a node is drawn (same defaults;
    pass the renderer's NodeStyle itself to `Picker`, any object with these fields will do)."""

    corner: float = 0.3
    size_scale: float = 1.0
    flat: str = "grids"
    close_gaps: bool = True


@dataclass(frozen=True)
class _Frame:
    """What a pick needs from the camera, as plain floats (see Picker._frame)."""

    eye: list[float]
    right: list[float]  # camera axes in world space
    up: list[float]
    fwd: list[float]
    view_z: list[float]  # third row of the view matrix: view-space z of a world point
    proj_z: tuple[float, float]  # proj[2, 2], proj[2, 3]: view z -> clip z
    px_per_unit: float  # pixels per world unit at view depth 1 (vertical)
    tan: float  # tan(fov_y / 2)
    loose_x: np.ndarray  # (F,) screen position of each loose node's centre
    loose_y: np.ndarray
    loose_r: np.ndarray  # (F,) a bound on how far from its centre the node is drawn, in pixels


HIGHLIGHT_DEPTH_BIAS = 1e-3  # NDC depth the highlighted node is pulled forward by (nodes.glsl)


class Picker:
    """Exact node picking for one layout; `pick(camera, x, y, viewport)` -> node id or -1."""

    def __init__(self, layout: Layout, style: object | None = None) -> None:
        style = style if style is not None else PickStyle()
        self.corner = float(style.corner)
        self.size_scale = float(style.size_scale)
        self.flat_mode = str(style.flat)
        self.close_gaps = bool(style.close_gaps)
        if self.flat_mode not in ("grids", "all", "none"):
            raise ValueError(f"flat must be 'grids', 'all' or 'none', not {self.flat_mode!r}")
        self._cache: tuple | None = None
        self.set_layout(layout)

    # -- per layout -------------------------------------------------------------------------------

    def set_layout(self, layout: Layout) -> None:
        """Precompute the per-map grids (once per layout; a re-layout after hiding a layer too)."""
        self.layout = layout
        self._cache = None
        spec = layout.spec
        pos, sizes = layout.positions, layout.sizes
        n_layers = len(spec.layers)
        self.fill = np.ones(n_layers)
        for i, layer in enumerate(spec.layers):
            steps = np.abs(np.diff(pos[layer.start : layer.stop, 0]))
            steps = steps[steps > 1e-6]
            size = float(sizes[layer.start : layer.stop].max())
            if len(steps) and size > 0:
                self.fill[i] = max(1.0, float(steps.min()) / size)
        grid_rows = []  # one per (flat grid layer, feature map)
        loose = []  # nodes found by their screen disc: camera-facing ones, flat ones off a grid
        for i, layer in enumerate(spec.layers):
            rows = self._grid_rows(i, layer, pos) if self._is_flat(layer) and layer.is_grid else None
            if rows is None:
                loose.append(np.arange(layer.start, layer.stop))
            else:
                grid_rows.extend(rows)
        cols = list(zip(*grid_rows, strict=True)) if grid_rows else [()] * 9
        (g_layer, g_y, g_x0, g_z0, g_px, g_pz, g_h, g_w, g_first) = (np.array(c) for c in cols)
        self._g_layer = g_layer.astype(np.int64)
        self._g_y, self._g_x0, self._g_z0 = g_y.astype(float), g_x0.astype(float), g_z0.astype(float)
        self._g_px, self._g_pz = g_px.astype(float), g_pz.astype(float)
        self._g_h, self._g_w, self._g_first = (
            g_h.astype(np.int64),
            g_w.astype(np.int64),
            g_first.astype(np.int64),
        )
        self._loose = np.concatenate(loose) if loose else np.zeros(0, np.int64)
        self._loose_layer = layout.layer_index[self._loose].astype(np.int64)
        self._all_visible = np.ones(n_layers, bool)
        # Per node, for the exact test: centre, base half size, how far it may grow, flat or facing
        # (numpy for the per-camera discs, Python lists for the per-candidate scalar test).
        self._pos = pos.astype(np.float64)
        self._half = 0.5 * sizes.astype(np.float64) * self.size_scale
        self._fill_node = (self.fill if self.close_gaps else np.ones(n_layers))[layout.layer_index]
        flat = np.array([self._is_flat(layer) for layer in spec.layers])[layout.layer_index]
        self._pos_list = self._pos.tolist()
        self._half_list = self._half.tolist()
        self._fill_list = self._fill_node.tolist()
        self._flat_list = flat.tolist()

    def _is_flat(self, layer) -> bool:
        return self.flat_mode == "all" or (self.flat_mode == "grids" and layer.is_grid)

    @staticmethod
    def _grid_rows(i: int, layer, pos: np.ndarray) -> list[tuple] | None:
        """Per feature map: (layer, plane y, x / z of pixel (0, 0), pitch x / z, h, w, first id), or
        None when the layer's nodes are not a regular grid in one horizontal plane."""
        c, h, w = layer.shape
        p = pos[layer.start : layer.stop].astype(np.float64).reshape(c, h, w, 3)
        y = p[0, 0, 0, 1]
        pitch_x = p[0, 0, 1, 0] - p[0, 0, 0, 0] if w > 1 else 1.0
        pitch_z = p[0, 1, 0, 2] - p[0, 0, 0, 2] if h > 1 else 1.0
        if pitch_x <= 0 or pitch_z <= 0:
            return None
        x0, z0 = p[:, 0, 0, 0], p[:, 0, 0, 2]
        rebuilt_x = x0[:, None, None] + np.arange(w)[None, None, :] * pitch_x
        rebuilt_z = z0[:, None, None] + np.arange(h)[None, :, None] * pitch_z
        tol = 1e-4 * max(pitch_x, pitch_z)
        if not (
            np.allclose(p[..., 0], rebuilt_x, atol=tol)
            and np.allclose(p[..., 2], rebuilt_z, atol=tol)
            and np.allclose(p[..., 1], y, atol=tol)
        ):
            return None
        return [(i, y, x0[ch], z0[ch], pitch_x, pitch_z, h, w, layer.start + ch * h * w) for ch in range(c)]

    # -- per pick ---------------------------------------------------------------------------------

    def pick(
        self,
        camera: OrbitCamera,
        x: float,
        y: float,
        viewport: tuple[int, int],
        visible: tuple[bool, ...] | list[bool] | np.ndarray | None = None,
        highlight: int = -1,
    ) -> int:
        """The id of the node drawn at framebuffer position (x, y), or -1 for none.

        `visible` (per layer) and `highlight` as given to the renderer (RenderSettings)."""
        w, h = int(viewport[0]), int(viewport[1])
        if w <= 0 or h <= 0 or not (0.0 <= x <= w and 0.0 <= y <= h):
            return -1
        spec = self.layout.spec
        vis = self._all_visible if visible is None else np.asarray(visible, bool)
        f = self._frame(camera, w, h)
        # The pointer's ray and its neighbours one pixel right and down: the pixel footprint the
        # fragment shader's fwidth() sees, which sets the corner rounding.  (A handful of scalars:
        # plain Python beats numpy's per-call overhead here.)
        rays = []
        for px, py in ((x, y), (x + 1.0, y), (x, y + 1.0)):
            sx = (2.0 * px / w - 1.0) * f.tan * w / h
            sy = (1.0 - 2.0 * py / h) * f.tan
            d = [f.fwd[i] + sx * f.right[i] + sy * f.up[i] for i in range(3)]
            n = math.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
            rays.append((d[0] / n, d[1] / n, d[2] / n))

        cand = self._grid_candidates(f.eye, rays[0], vis).tolist()
        if len(self._loose):
            # Squares not on a regular grid (camera-facing ones): those whose screen disc reaches.
            near = (np.abs(f.loose_x - x) <= f.loose_r) & (np.abs(f.loose_y - y) <= f.loose_r)
            cand += self._loose[near & vis[self._loose_layer]].tolist()
        hl = int(highlight)
        if 0 <= hl < spec.total_nodes and vis[self.layout.layer_index[hl]] and hl not in cand:
            cand.append(hl)  # its outline ring reaches into its neighbours' cells
        best, best_depth = -1, math.inf
        for node in cand:
            depth = self._hit(node, f, rays, h, hl)
            if depth is not None and depth < best_depth:
                best, best_depth = node, depth
        return best

    def pick_map(
        self,
        camera: OrbitCamera,
        x: float,
        y: float,
        viewport: tuple[int, int],
        visible: tuple[bool, ...] | list[bool] | np.ndarray | None = None,
    ) -> tuple[int, int] | None:
        """The feature map (layer index, channel) at (x, y): the map of the node drawn there, else the
        nearest map whose rectangle (gaps between its nodes included) the ray crosses; None for none."""
        spec = self.layout.spec
        node = self.pick(camera, x, y, viewport, visible)
        if node >= 0:
            i = int(self.layout.layer_index[node])
            layer = spec.layers[i]
            if layer.is_grid:
                _, h, w = layer.shape
                return i, (node - layer.start) // (h * w)
        if len(self._g_layer) == 0:
            return None
        vis = self._all_visible if visible is None else np.asarray(visible, bool)
        eye, d = camera.ray(x, y, int(viewport[0]), int(viewport[1]))
        if abs(d[1]) < 1e-12:
            return None
        half = self._half[self._g_first]
        t = (self._g_y - eye[1]) / d[1]
        hx, hz = eye[0] + t * d[0], eye[2] + t * d[2]
        inside = (
            (t > 0)
            & vis[self._g_layer]
            & (hx >= self._g_x0 - half)
            & (hx <= self._g_x0 + (self._g_w - 1) * self._g_px + half)
            & (hz >= self._g_z0 - half)
            & (hz <= self._g_z0 + (self._g_h - 1) * self._g_pz + half)
        )
        if not inside.any():
            return None
        k = int(np.flatnonzero(inside)[np.argmin(t[inside])])
        i = int(self._g_layer[k])
        layer = spec.layers[i]
        return i, int((self._g_first[k] - layer.start) // (self._g_h[k] * self._g_w[k]))

    def pick_layer(
        self,
        camera: OrbitCamera,
        x: float,
        y: float,
        viewport: tuple[int, int],
        visible: tuple[bool, ...] | list[bool] | np.ndarray | None = None,
    ) -> int | None:
        """The layer at (x, y): the layer of the node drawn there, else the nearest layer whose sheet
        (its bounds, grown by a margin of a node or two so thin rows are easy to hit) the ray crosses."""
        node = self.pick(camera, x, y, viewport, visible)
        if node >= 0:
            return int(self.layout.layer_index[node])
        eye, d = camera.ray(x, y, int(viewport[0]), int(viewport[1]))
        if abs(d[1]) < 1e-9:
            return None
        best, best_t = None, math.inf
        grow = 1.5 * float(self.layout.sizes.max())
        for i, (lo, hi) in enumerate(self.layout.layer_bounds):
            if visible is not None and len(visible) and not visible[i]:
                continue
            ext = hi - lo
            margin = max(float(ext[0]), float(ext[2])) * 0.04 + grow
            t = ((lo[1] + hi[1]) / 2.0 - eye[1]) / d[1]
            if t <= 0 or t >= best_t:
                continue
            p = eye + d * t
            if lo[0] - margin <= p[0] <= hi[0] + margin and lo[2] - margin <= p[2] <= hi[2] + margin:
                best, best_t = i, t
        return best

    def _frame(self, camera: OrbitCamera, w: int, h: int) -> _Frame:
        """Camera matrices and the loose nodes' screen discs, recomputed only when the camera or the
        viewport changed (a hover sweep with a still camera reuses them)."""
        key = (
            *camera.target,
            camera.yaw,
            camera.pitch,
            camera.distance,
            camera.fov_y,
            camera.scene_radius,
            w,
            h,
        )
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        view = camera.view_matrix()
        proj = camera.projection(w / h)
        eye = -view[:3, :3].T @ view[:3, 3]
        ids = self._loose
        vp = proj @ view
        clip = self._pos[ids] @ vp[:, :3].T + vp[:, 3]
        cw = clip[:, 3]
        # Bound on the drawn square's reach from its centre on screen: its grown half diagonal (a
        # sphere around it) seen from the nearest it can be, plus the pixel the rasteriser may add.
        reach = self._half[ids] * self._fill_node[ids] * 1.5
        front = cw > reach + 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            sx = np.where(front, (clip[:, 0] / cw + 1.0) * 0.5 * w, 0.5 * w)
            sy = np.where(front, (1.0 - clip[:, 1] / cw) * 0.5 * h, 0.5 * h)
            # Too near the eye to bound: always a candidate; wholly behind it: never.
            r = np.where(front, reach * proj[1, 1] * 0.5 * h / (cw - reach) + 2.0, np.inf)
            r = np.where(cw < -reach, -np.inf, r)
        frame = _Frame(
            eye=[float(v) for v in eye],
            right=[float(v) for v in view[0, :3]],
            up=[float(v) for v in view[1, :3]],
            fwd=[float(-v) for v in view[2, :3]],
            view_z=[float(v) for v in view[2]],
            proj_z=(float(proj[2, 2]), float(proj[2, 3])),
            px_per_unit=float(proj[1, 1] * 0.5 * h),
            tan=math.tan(camera.fov_y / 2),
            loose_x=sx,
            loose_y=sy,
            loose_r=r,
        )
        self._cache = (key, frame)
        return frame

    def _grid_candidates(
        self, eye: list[float], d: tuple[float, float, float], vis: np.ndarray
    ) -> np.ndarray:
        """Per visible regular grid map cut by the ray: the node whose cell holds the hit point."""
        if len(self._g_layer) == 0 or abs(d[1]) < 1e-12:
            return np.zeros(0, np.int64)
        t = (self._g_y - eye[1]) / d[1]
        q = np.rint((eye[0] + t * d[0] - self._g_x0) / self._g_px).astype(np.int64)
        r = np.rint((eye[2] + t * d[2] - self._g_z0) / self._g_pz).astype(np.int64)
        ok = (t > 0) & vis[self._g_layer] & (q >= 0) & (q < self._g_w) & (r >= 0) & (r < self._g_h)
        return (self._g_first + r * self._g_w + q)[ok]

    def _hit(self, node: int, f: _Frame, rays: list, viewport_h: int, highlight: int) -> float | None:
        """NDC depth at which the pointer's ray meets `node`'s square as nodes.glsl draws it (the
        highlighted node pulled forward by its depth bias), or None where it misses."""
        cx, cy, cz = self._pos_list[node]
        vz = f.view_z
        depth = -(vz[0] * cx + vz[1] * cy + vz[2] * cz + vz[3])  # of the centre, in front > 0
        half = self._half_list[node]
        half_px = half * f.px_per_unit / max(depth, 1e-6)
        fill = self._fill_list[node]
        s = min(max((2.0 * half_px - 2.0) / 4.0, 0.0), 1.0)  # smoothstep(2, 6, 2 * half_px)
        grow = fill + (1.0 - fill) * (s * s * (3.0 - 2.0 * s))
        half *= grow
        half_px *= grow
        is_hl = node == highlight
        extent = 1.0 + max(0.3, 2.5 / max(half_px, 1e-3)) if is_hl else 1.0
        if self._flat_list[node]:  # lies in its layer's XZ plane, local +y toward -Z
            u, v, n = (1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)
        else:  # faces the camera
            u, v, n = f.right, f.up, f.fwd
        ex, ey, ez = f.eye
        rx, ry, rz = cx - ex, cy - ey, cz - ez
        num = rx * n[0] + ry * n[1] + rz * n[2]
        local = []
        for d in rays:
            den = d[0] * n[0] + d[1] * n[1] + d[2] * n[2]
            if abs(den) < 1e-12:
                return None  # the ray runs along the square's plane
            t = num / den
            ox, oy, oz = t * d[0] - rx, t * d[1] - ry, t * d[2] - rz
            local.append(
                (t, (ox * u[0] + oy * u[1] + oz * u[2]) / half, (ox * v[0] + oy * v[1] + oz * v[2]) / half)
            )
        (t0, lx, ly), (_, lx1, ly1), (_, lx2, ly2) = local
        if t0 <= 0.0:
            return None
        per_px = max(abs(lx1 - lx) + abs(lx2 - lx), abs(ly1 - ly) + abs(ly2 - ly))
        r = min(max(self.corner / max(per_px, 1e-12) - 0.5, 0.0), 1.0)  # smoothstep(0.5, 1.5, .)
        r = self.corner * r * r * (3.0 - 2.0 * r)
        ax, ay = abs(lx), abs(ly)
        qx, qy = ax - (1.0 - r), ay - (1.0 - r)
        dist = math.hypot(max(qx, 0.0), max(qy, 0.0)) + min(max(qx, qy), 0.0) - r
        if not (dist <= 0.0 or (is_hl and dist < extent - 1.0 and ax <= extent and ay <= extent)):
            return None
        d = rays[0]
        hz = vz[0] * (ex + t0 * d[0]) + vz[1] * (ey + t0 * d[1]) + vz[2] * (ez + t0 * d[2]) + vz[3]
        if hz >= 0.0:
            return None
        ndc = (f.proj_z[0] * hz + f.proj_z[1]) / -hz
        if abs(ndc) > 1.0:
            return None  # clipped by the near or far plane
        return ndc - (HIGHLIGHT_DEPTH_BIAS if is_hl else 0.0)
