"""NodeBatch: every node of a layout, coloured from one activation texture, one draw per layer.

Activations change with every new result and go into one R32F texture by node id
(`set_activations`: only the layers whose values changed are written).  float32 as it comes from
the worker is the cheapest format that is exact: 4 bytes per node, and on llvmpipe 10M nodes upload
in ~7 ms, while converting them to half floats on the CPU alone takes ~36 ms (R16F upload ~62 ms in
all; uint8 after the colour range would need the same CPU pass, and drops NaN / inf).  Each visible
layer is one draw call, so per-layer state (colour range, flat or camera-facing squares, gap
closing) is plain uniforms and hidden layers cost nothing.

Feature maps (flat grid layers whose nodes sit on a regular grid: every layout of build_layout) are
drawn as one quad per map by shaders/maps.glsl: the fragment shader finds each pixel's node by
arithmetic, so a map costs 6 vertices however many nodes it has, needs no per-node geometry on the
GPU, and cannot crack between neighbouring nodes (no holes, no seams, at any zoom or window size);
far away it reads as one picture, closer the gaps, rounded corners and borders fade in by on-screen
size.  Only the other layers (fully connected rows, camera-facing squares) keep per-node geometry:
centres follow from one origin per map (or per wrapped row block) and cell arithmetic too, so only a
layout off any regular grid needs per-node geometry (an RGBA32F texture holding just those nodes).
GPU memory: `gpu_bytes()`, 4 bytes per node (the activation) plus 12 per map.  Maps far enough
for their gaps to close are opaque: they are drawn first, near to far, so the maps they hide fail the
depth test before being shaded (a fitted deep net stacks dozens of sheets on the same pixels).

How a per-node layer is drawn (shaders/nodes.glsl builds both):
  "quads"   6 vertices per node (no index buffer); any size on screen
  "points"  1 point sprite per node, the square cut out in the fragment shader; half the
            vertex and setup work (llvmpipe: about 2x faster), but at most the driver's largest
            point size across, and dropped whole when its centre leaves the screen
  "auto"    per layer and frame: points while the layer's nodes are small on screen, else quads
A layer drawn as maps reports the mode "maps".  tools/bench_render.py measures them.

Jitter (opt-in, used by the training scene; off unless `set_jitter` gave amplitudes): each node is
offset by amplitude * a trembling function of `jitter_time` and its phase (one RG32F texture by node id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import moderngl
import numpy as np
from convscope.engine.gpu import colormaps
from convscope.engine.gpu.programs import create_program, set_uniform
from convscope.engine.graph.layout import Layout

ACT_TEX_WIDTH = 4096  # width of the per-node textures (texels); height grows with the node count
MODES = ("quads", "points", "auto")
AUTO_POINT_PX = 24.0  # "auto" draws a layer as points while its nodes are at most this many pixels
CLOSED_PX = 1.9  # maps.glsl closes a map's gaps fully while its nodes are at most 2 px: a margin below that
OPEN, CLOSED, MIXED = 0, 1, 2  # NodeBatch.map_cover: no map of a layer / every map / some have closed gaps
PASS_ALL, PASS_CLOSED, PASS_OPEN = 0, 1, 2  # maps.glsl u_pass: which of a layer's maps a draw call draws


def gl_bytes(m: np.ndarray) -> bytes:
    """A numpy matrix for column vectors -> the column-major float32 bytes GL expects."""
    return np.ascontiguousarray(np.asarray(m, dtype=np.float32).T).tobytes()


@dataclass
class NodeStyle:
    corner: float = 0.3  # corner radius, in node half sizes: "slightly rounded"
    border: float = 0.16  # darker rim width, in node half sizes, so equal neighbours stay apart
    border_shade: float = 0.6  # rim colour = fill colour * this
    size_scale: float = 1.0  # multiplies every node's layout size
    flat: str = "grids"  # squares lying in their layer's plane: "grids" (feature maps), "all" or
    # "none"; the rest face the camera.  Flat grids read like Harley's sheets; a flat row of fc
    # units seen from a low angle would shrink to dashes, so vector layers face the camera.
    close_gaps: bool = True  # far-away nodes grow to fill their cell instead of aliasing
    maps: bool = True  # regular feature maps as one quad each (maps.glsl); False: node by node (nodes.glsl)
    occlude: bool = True  # maps far enough for their gaps to close are drawn opaque, near to far, so the
    # maps they hide cost no shading; False blends every map far to near (the same picture, slower)


@dataclass(frozen=True)
class MapGrid:
    """A grid layer drawn as maps: `maps` maps of `cells` (columns, rows) nodes `pitch` apart."""

    layer: int
    maps: int
    cells: tuple[int, int]
    pitch: float
    half: float  # a node's half size (layout size / 2)
    map_base: int  # first map number of this layer in the map-origin texture


def regular_maps(layout: Layout, i: int) -> tuple[np.ndarray, float, tuple[int, int]] | None:
    """(origins (maps, 3), pitch, (columns, rows)) when layer i's nodes sit on regular grids along +X
    (columns) and +Z (rows), one node size throughout, else None.  A grid layer has one grid per
    feature map; a vector layer is one grid, its rows wrapped (the last one may be short)."""
    layer = layout.spec.layers[i]
    n = layer.count
    if n == 0:
        return None
    pos = layout.positions[layer.start : layer.stop].astype(np.float64)
    sizes = layout.sizes[layer.start : layer.stop]
    if sizes.min() != sizes.max():
        return None
    if layer.is_grid:
        c, h, w = layer.shape
    else:
        same_row = np.flatnonzero(np.abs(pos[:, 2] - pos[0, 2]) > 1e-6)
        c, w = 1, int(same_row[0]) if len(same_row) else n
        h = math.ceil(n / w)
    if w > 1:
        pitch = pos[1, 0] - pos[0, 0]
    elif h > 1:
        pitch = pos[w, 2] - pos[0, 2]
    else:
        pitch = float(sizes[0])
    if not pitch > 0:
        return None
    per_map = n // c
    yy, xx = np.divmod(np.arange(per_map), w)
    grid = np.stack([xx * pitch, np.zeros(per_map), yy * pitch], axis=1)
    pos = pos.reshape(c, per_map, 3)
    if not np.allclose(pos - pos[:, :1], grid[None], atol=1e-4 * max(pitch, 1.0)):
        return None
    return pos[:, 0].astype(np.float32), float(pitch), (w, h)


def _texture_shape(n: int, max_tex: int) -> tuple[int, int]:
    """Width x height of a by-index texture for n texels: one short row, or rows ACT_TEX_WIDTH wide."""
    width = min(ACT_TEX_WIDTH, max_tex, max(n, 1))
    height = max(1, math.ceil(n / width))
    if height > max_tex:
        raise ValueError(f"{n} nodes do not fit in {width}x{max_tex} textures")
    return width, height


class NodeBatch:
    def __init__(self, ctx: moderngl.Context, layout: Layout, style: NodeStyle | None = None) -> None:
        self.ctx = ctx
        self.style = style or NodeStyle()
        self.spec = layout.spec
        self.count = int(layout.spec.total_nodes)
        self.n_layers = len(layout.spec.layers)
        self.max_point_size = float(
            ctx.info.get("GL_ALIASED_POINT_SIZE_RANGE", ctx.info["GL_POINT_SIZE_RANGE"])[1]
        )
        self.max_tex = int(ctx.info["GL_MAX_TEXTURE_SIZE"])
        self.programs = {
            "quads": create_program(ctx, "nodes"),
            "points": create_program(ctx, "nodes", {"NODE_POINTS": 1}),
            "maps": create_program(ctx, "maps"),
            "maps_closed": create_program(ctx, "maps", {"MAPS_CLOSED": 1}),
        }
        self.acts = ctx.texture(_texture_shape(self.count, self.max_tex), 1, dtype="f4")
        self.acts.filter = (moderngl.NEAREST, moderngl.NEAREST)
        width, height = self.acts.size
        self.acts.write(np.full(width * height, np.nan, np.float32).tobytes())  # grey until data comes
        self._uploaded: np.ndarray | None = None  # bit patterns on the GPU: skip unchanged layers
        self.nodes: moderngl.Texture | None = None  # per-node geometry of the non-map layers (set_layout)
        self.maps: moderngl.Texture | None = None  # origin of every map (set_layout)
        self.vaos = {name: ctx.vertex_array(prog, []) for name, prog in self.programs.items()}
        self.jitter: moderngl.Texture | None = None  # made by the first set_jitter
        self.jitter_on = False
        self.jitter_time = 0.0  # seconds; the caller advances it while jitter is on
        self.ranges = np.tile(np.array([0.0, 1.0], np.float32), (self.n_layers, 1))
        self.visible = np.ones(self.n_layers, bool)
        self.last_opaque = 0  # map layers the last draw drew (wholly or partly) opaque (tests, benchmarks)
        self.set_layout(layout)

    # --- data --------------------------------------------------------------------------------

    @staticmethod
    def _write_rows(tex: moderngl.Texture, values: np.ndarray, first: int = 0) -> None:
        """Write values (n, C) into texels first .. first + n - 1 of a by-id texture (row-major):
        the partial first row, the full rows, then the partial last row."""
        width = tex.width
        n = len(values)
        pos = 0
        row, col = divmod(first, width)
        if col and n:
            k = min(width - col, n)
            tex.write(values[:k], viewport=(col, row, k, 1))
            pos, row = k, row + 1
        rows = (n - pos) // width
        if rows:
            tex.write(values[pos : pos + rows * width], viewport=(0, row, width, rows))
            pos, row = pos + rows * width, row + rows
        if pos < n:
            tex.write(values[pos:], viewport=(0, row, n - pos, 1))

    def set_layout(self, layout: Layout) -> None:
        """Write node centres and sizes (once per layout; a re-layout of the same network, e.g.
        after hiding a layer, reuses the batch).  A different network needs a new NodeBatch."""
        if layout.spec.total_nodes != self.count or len(layout.spec.layers) != self.n_layers:
            raise ValueError(f"layout of {layout.spec.model} does not match this batch ({self.count} nodes)")
        self.layout = layout
        # Per layer: pitch / size (how far a far-away node may grow) and its biggest node.
        self._fill = np.ones(self.n_layers, np.float32)
        self._biggest = np.zeros(self.n_layers, np.float32)
        for i, layer in enumerate(layout.spec.layers):
            steps = np.abs(np.diff(layout.positions[layer.start : layer.stop, 0]))
            steps = steps[steps > 1e-6]
            size = float(layout.sizes[layer.start : layer.stop].max()) if layer.count else 0.0
            self._biggest[i] = size
            if len(steps) and size > 0:
                self._fill[i] = max(1.0, float(steps.min()) / size)
        # Regular layers (all of build_layout's): node centres follow from one origin per map and
        # cell arithmetic; flat feature maps among them are drawn as quads.  Only irregular layers
        # keep per-node geometry, packed layer after layer.
        self.grids: dict[int, MapGrid] = {}
        self.map_layers: set[int] = set()
        origins = []
        for i, layer in enumerate(layout.spec.layers):
            found = regular_maps(layout, i)
            if found is None:
                continue
            o, pitch, cells = found
            half = 0.5 * float(layout.sizes[layer.start])
            self.grids[i] = MapGrid(i, len(o), cells, pitch, half, sum(len(x) for x in origins))
            origins.append(o)
            if self.style.maps and layer.is_grid and self.is_flat(i):
                self.map_layers.add(i)
        self._node_base = np.zeros(self.n_layers, np.int64)
        packed = []
        for i, layer in enumerate(layout.spec.layers):
            if i in self.grids:
                continue
            self._node_base[i] = layer.start - sum(len(p) for p in packed)
            packed.append(
                np.c_[layout.positions[layer.start : layer.stop], layout.sizes[layer.start : layer.stop]]
            )
        self.nodes = self._refill(self.nodes, np.concatenate(packed) if packed else np.zeros((0, 4)), 4)
        self.maps = self._refill(self.maps, np.concatenate(origins) if origins else np.zeros((0, 3)), 3)

    def _refill(self, tex: moderngl.Texture | None, data: np.ndarray, comps: int) -> moderngl.Texture:
        """A float32 by-index texture holding `data` (n, comps): the old one when it is the right size."""
        shape = _texture_shape(max(len(data), 1), self.max_tex)
        if tex is None or tex.size != shape:
            if tex is not None:
                tex.release()
            tex = self.ctx.texture(shape, comps, dtype="f4")
            tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        if len(data):
            self._write_rows(tex, np.ascontiguousarray(data, np.float32))
        return tex

    def set_activations(self, values: np.ndarray) -> list[int]:
        """Upload the activation of every node (float32 (N,), by node id); only the layers whose
        values changed since the last upload are written.  Returns their indices."""
        values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        if len(values) != self.count:
            raise ValueError(f"{len(values)} activations for {self.count} nodes")
        bits = values.view(np.uint32)  # bit patterns: NaN never equals itself, -0.0 equals 0.0
        old = self._uploaded
        changed = []
        for i, layer in enumerate(self.spec.layers):
            a, b = layer.start, layer.stop
            if old is None:
                changed.append(i)
                continue
            # A sparse sample first: a fresh result differs there at once, without a full pass.
            if not np.array_equal(bits[a:b:61], old[a:b:61]) or not np.array_equal(bits[a:b], old[a:b]):
                changed.append(i)
        if old is None:
            self._uploaded = bits.copy()
            self._write_rows(self.acts, values)
            return changed
        if len(changed) == self.n_layers:
            self._write_rows(self.acts, values)
        for i in changed:
            layer = self.spec.layers[i]
            a, b = layer.start, layer.stop
            if len(changed) < self.n_layers:
                self._write_rows(self.acts, values[a:b], a)
            old[a:b] = bits[a:b]
        return changed

    def set_jitter(self, amplitude: np.ndarray | None, phase: np.ndarray | None = None) -> None:
        """Per-node jitter amplitude in world units (N,) and phase (N,) (nodes with equal phases move
        together; default 0); None turns jitter off.  One upload per call."""
        if amplitude is None:
            self.jitter_on = False
            return
        amplitude = np.asarray(amplitude, np.float32).reshape(-1)
        if len(amplitude) != self.count:
            raise ValueError(f"{len(amplitude)} jitter amplitudes for {self.count} nodes")
        data = np.zeros((self.count, 2), np.float32)
        data[:, 0] = amplitude
        if phase is not None:
            data[:, 1] = np.asarray(phase, np.float32).reshape(-1)
        if self.jitter is None:
            self.jitter = self.ctx.texture(self.acts.size, 2, dtype="f4")
            self.jitter.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self._write_rows(self.jitter, data)
        self.jitter_on = True

    def set_ranges(self, ranges: np.ndarray) -> None:
        """Per-layer [lo, hi] (L, 2) that map to the two ends of the colormap (see normalize.py)."""
        ranges = np.asarray(ranges, np.float32).reshape(-1, 2)
        if len(ranges) != self.n_layers:
            raise ValueError(f"{len(ranges)} ranges for {self.n_layers} layers")
        self.ranges[:] = ranges

    def set_visible(self, visible: list[bool] | np.ndarray) -> None:
        visible = np.asarray(visible, bool).reshape(-1)
        if len(visible) != self.n_layers:
            raise ValueError(f"{len(visible)} visibility flags for {self.n_layers} layers")
        self.visible[:] = visible

    # --- drawing -------------------------------------------------------------------------------

    def is_flat(self, i: int) -> bool:
        flat = self.style.flat
        if flat not in ("grids", "all", "none"):
            raise ValueError(f"NodeStyle.flat must be 'grids', 'all' or 'none', not {flat!r}")
        return flat == "all" or (flat == "grids" and self.spec.layers[i].is_grid)

    def layer_modes(
        self, mode: str, view: np.ndarray, proj: np.ndarray, viewport: tuple[int, int]
    ) -> list[str]:
        """How each layer is drawn this frame.  "auto" picks points for a layer while its biggest
        node, put at the nearest point of the layer's box, is at most AUTO_POINT_PX across, and
        the layer lies wholly on screen or its nodes are tiny (a point whose centre leaves the
        screen vanishes whole, which shows on big nodes only)."""
        if mode not in MODES:
            raise ValueError(f"unknown node mode {mode!r} (expected one of {MODES})")
        if mode != "auto":
            return ["maps" if i in self.map_layers else mode for i in range(self.n_layers)]
        eye = -view[:3, :3].T @ view[:3, 3]
        lo, hi = self.layout.layer_bounds[:, 0], self.layout.layer_bounds[:, 1]
        nearest = np.linalg.norm(eye - np.clip(eye, lo, hi), axis=1)
        px = (
            self._biggest * self.style.size_scale * proj[1, 1] * 0.5 * viewport[1] / np.maximum(nearest, 1e-6)
        )
        # Each layer box's 8 corners in clip space: on screen when all lie inside the frustum.
        corners = np.stack([np.where(np.array(bits, bool), hi, lo) for bits in np.ndindex(2, 2, 2)], axis=1)
        clip = np.c_[corners.reshape(-1, 3), np.ones(8 * self.n_layers)] @ (proj @ view).T
        w = clip[:, 3:4]
        inside = (
            ((w[:, 0] > 0) & (np.abs(clip[:, :3]) <= w).all(axis=1)).reshape(self.n_layers, 8).all(axis=1)
        )
        limit = min(AUTO_POINT_PX, self.max_point_size / 2)
        return [
            "maps" if i in self.map_layers else "points" if p <= limit and (ok or p <= 4.0) else "quads"
            for i, (p, ok) in enumerate(zip(px, inside, strict=True))
        ]

    def draw(
        self,
        view: np.ndarray,
        proj: np.ndarray,
        viewport: tuple[int, int],
        *,
        colormap: str = "harley",
        highlight: int = -1,
        mode: str = "quads",
    ) -> list[str]:
        """Draw the visible layers into the current framebuffer with depth test on; returns the
        mode each layer was drawn with ("" for hidden layers)."""
        modes = self.layer_modes(mode, view, proj, viewport)
        s = self.style
        self.nodes.use(location=0)
        self.acts.use(location=1)
        self.maps.use(location=3)
        if self.jitter_on:
            self.jitter.use(location=2)
        for prog in self.programs.values():
            set_uniform(prog, "u_nodes", 0)
            set_uniform(prog, "u_acts", 1)
            set_uniform(prog, "u_maps", 3)
            set_uniform(prog, "u_view", gl_bytes(view))
            set_uniform(prog, "u_proj", gl_bytes(proj))
            set_uniform(prog, "u_view_proj", gl_bytes(proj @ view))
            set_uniform(prog, "u_viewport", (float(viewport[0]), float(viewport[1])))
            set_uniform(prog, "u_colormap", colormaps.index(colormap))
            set_uniform(prog, "u_highlight", int(highlight))
            set_uniform(prog, "u_size_scale", float(s.size_scale))
            set_uniform(prog, "u_max_point", self.max_point_size)
            set_uniform(prog, "u_corner", float(s.corner))
            set_uniform(prog, "u_border", float(s.border))
            set_uniform(prog, "u_border_shade", float(s.border_shade))
            set_uniform(prog, "u_jitter_on", int(self.jitter_on))
            if self.jitter_on:
                set_uniform(prog, "u_jitter", 2)
                set_uniform(prog, "u_time", float(self.jitter_time))
        self.ctx.enable(moderngl.DEPTH_TEST | moderngl.PROGRAM_POINT_SIZE)
        self.ctx.disable(moderngl.BLEND)
        used = [m if self.visible[i] else "" for i, m in enumerate(modes)]
        # Opaque per-node layers first; then the maps, far to near, blended: a map's partly covered
        # pixels (gaps narrower than a pixel, antialiased edges) mix with what lies behind them.
        for i, layer in enumerate(self.spec.layers):
            m = used[i]
            if m not in ("quads", "points"):
                continue
            prog = self.programs[m]
            set_uniform(prog, "u_range", tuple(float(x) for x in self.ranges[i]))
            set_uniform(prog, "u_flat", int(self.is_flat(i)))
            set_uniform(prog, "u_fill", float(self._fill[i]) if s.close_gaps else 1.0)
            set_uniform(prog, "u_node_base", int(self._node_base[i]))
            g = self.grids.get(i)
            set_uniform(prog, "u_arith", int(g is not None))
            if g is not None:
                set_uniform(prog, "u_map_base", g.map_base)
                set_uniform(prog, "u_layer_start", layer.start)
                set_uniform(prog, "u_cells", g.cells)
                set_uniform(prog, "u_pitch", g.pitch)
                set_uniform(prog, "u_node_size", 2.0 * g.half)
            if m == "points":
                self.vaos[m].render(moderngl.POINTS, vertices=layer.count, first=layer.start)
            else:
                self.vaos[m].render(moderngl.TRIANGLES, vertices=6 * layer.count, first=6 * layer.start)
        grids = [i for i in sorted(self.map_layers) if used[i]]
        if grids:
            eye = -view[:3, :3].T @ view[:3, 3]
            dist = np.linalg.norm(self.layout.layer_bounds[grids].mean(axis=1) - eye, axis=1)
            cover = self.map_cover(view, proj, viewport)
            if not s.occlude:
                cover[:] = OPEN
            # Maps whose gaps are closed cover their pixels wholly: drawn first, near to far, writing
            # depth and without blending, so the maps behind them fail the depth test before their
            # fragments are shaded (llvmpipe skips a block whose pixels all fail).  In a fitted deep net
            # most sheets overlap on screen: that is most of the frame's shading saved.  Where a layer
            # is partly near, maps.glsl sorts its maps into the two passes by the same test per map.
            near_first = np.argsort(dist, kind="stable")
            self.last_opaque = 0
            for k in near_first:
                i = grids[k]
                if cover[i] != OPEN:
                    # The general shader where the white ring of the highlighted node must show.
                    ring = self.spec.layers[i].start <= highlight < self.spec.layers[i].stop
                    program = "maps" if ring else "maps_closed"
                    self._draw_maps(i, PASS_ALL if cover[i] == CLOSED else PASS_CLOSED, program)
                    self.last_opaque += 1
            # The rest far to near, blended: a map's partly covered pixels (gaps narrower than a pixel,
            # antialiased edges) mix with what lies behind them.
            self.ctx.enable(moderngl.BLEND)
            self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA, moderngl.ONE, moderngl.ONE
            for k in near_first[::-1]:
                i = grids[k]
                if cover[i] != CLOSED:
                    self._draw_maps(i, PASS_ALL if cover[i] == OPEN else PASS_OPEN)
            self.ctx.blend_func = moderngl.DEFAULT_BLENDING
            self.ctx.disable(moderngl.BLEND)
        return used

    def _draw_maps(self, i: int, which: int, program: str = "maps") -> None:
        """One draw call: the maps of grid layer i as quads (maps.glsl); `which` maps (PASS_*)."""
        s = self.style
        prog = self.programs[program]
        g = self.grids[i]
        layer = self.spec.layers[i]
        set_uniform(prog, "u_range", tuple(float(x) for x in self.ranges[i]))
        set_uniform(prog, "u_fill", float(self._fill[i]) if s.close_gaps else 1.0)
        set_uniform(prog, "u_map_base", g.map_base)
        set_uniform(prog, "u_node_base", layer.start)
        set_uniform(prog, "u_cells", g.cells)
        set_uniform(prog, "u_pitch", g.pitch)
        set_uniform(prog, "u_half", g.half * float(s.size_scale))
        set_uniform(prog, "u_pass", which)
        set_uniform(prog, "u_closed_px", CLOSED_PX)
        self.vaos[program].render(moderngl.TRIANGLES, vertices=6, instances=g.maps)

    def map_cover(self, view: np.ndarray, proj: np.ndarray, viewport: tuple[int, int]) -> np.ndarray:
        """Per layer this frame: CLOSED where every node is at most CLOSED_PX across on screen, so
        maps.glsl grows each into its whole cell (gaps closed, no corners, no border) and every pixel
        of every map is fully covered; OPEN where no node is that small (or gaps never close); MIXED
        between.  Judged at the layer box's least and greatest view depth (its corners along the view
        axis): a node is biggest where the depth is least."""
        out = np.full(self.n_layers, OPEN, np.int8)
        if not self.style.close_gaps:
            return out
        lo, hi = self.layout.layer_bounds[:, 0], self.layout.layer_bounds[:, 1]
        corners = np.stack([np.where(np.array(bits, bool), hi, lo) for bits in np.ndindex(2, 2, 2)], axis=1)
        depth = -(corners @ view[2, :3] + view[2, 3])  # view-space depth of each corner (L, 8)
        near, far = depth.min(axis=1), depth.max(axis=1)
        size = self._biggest * self.style.size_scale * proj[1, 1] * 0.5 * viewport[1]
        px_near = np.where(near > 1e-6, size / np.maximum(near, 1e-6), np.inf)
        px_far = np.where(far > 1e-6, size / np.maximum(far, 1e-6), np.inf)
        # Far-away nodes grow to fill their cell: fill x half size / pitch = 0.5 (a size scale below 1
        # keeps a gap open however far).
        pitch = np.array([self.grids[i].pitch if i in self.grids else 1.0 for i in range(self.n_layers)])
        fills = self._fill * 0.5 * self._biggest * self.style.size_scale / pitch >= 0.5 - 1e-3
        out[fills & (px_far <= CLOSED_PX)] = MIXED
        out[fills & (px_near <= CLOSED_PX)] = CLOSED
        return out

    def gpu_bytes(self) -> dict[str, int]:
        """Bytes of GPU memory this batch holds, by texture (textures are whole rows of texels)."""
        out = {"activations": self.acts.width * self.acts.height * 4}
        out["node geometry"] = self.nodes.width * self.nodes.height * 16
        out["map origins"] = self.maps.width * self.maps.height * 12
        if self.jitter is not None:
            out["jitter"] = self.jitter.width * self.jitter.height * 8
        return out

    def layer_bytes(self) -> np.ndarray:
        """GPU bytes each layer holds, row padding left out (L,): its activations (4 per node), plus one
        origin per map (12) for a regular layer or the geometry of each node (16) for an irregular one.
        The same at every level of detail: far and near read the same textures."""
        out = np.zeros(self.n_layers, np.int64)
        for i, layer in enumerate(self.spec.layers):
            g = self.grids.get(i)
            out[i] = 4 * layer.count + (12 * g.maps if g is not None else 16 * layer.count)
        return out

    def release(self) -> None:
        for vao in self.vaos.values():
            vao.release()
        for prog in self.programs.values():
            prog.release()
        self.nodes.release()
        self.maps.release()
        self.acts.release()
        if self.jitter is not None:
            self.jitter.release()
