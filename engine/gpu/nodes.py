"""NodeBatch: every node of a layout, coloured from one activation texture, one draw per layer.

Static data (centre and size of each node) is written once per layout into an RGBA32F texture
indexed by node id; activations change with every new result and go into one R32F texture the
same way (`set_activations`, one upload per result).  Both are ACT_TEX_WIDTH texels wide and
read with texelFetch.  Each visible layer is one draw call, so per-layer state (colour range,
flat or camera-facing squares, gap closing) is plain uniforms and hidden layers cost nothing.

How a layer is drawn (shaders/nodes.glsl builds both):
  "quads"   4 indexed vertices per node; any size on screen
  "points"  1 point sprite per node, the square cut out in the fragment shader; half the
            vertex and setup work (llvmpipe: about 2x faster), but at most the driver's largest
            point size across, and dropped whole when its centre leaves the screen
  "auto"    per layer and frame: points while the layer's nodes are small on screen, else quads
tools/bench_render.py measures them.

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
_QUAD = np.array([0, 1, 2, 2, 1, 3], np.uint32)  # two triangles over corners (-1,-1) (1,-1) (-1,1) (1,1)


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

        max_tex = int(ctx.info["GL_MAX_TEXTURE_SIZE"])
        width = min(ACT_TEX_WIDTH, max_tex)
        height = max(1, math.ceil(self.count / width))
        if height > max_tex:
            raise ValueError(f"{self.count} nodes do not fit in {width}x{max_tex} textures")

        self.programs = {
            "quads": create_program(ctx, "nodes"),
            "points": create_program(ctx, "nodes", {"NODE_POINTS": 1}),
        }
        self.nodes = ctx.texture((width, height), 4, dtype="f4")
        self.acts = ctx.texture((width, height), 1, dtype="f4")
        for tex in (self.nodes, self.acts):
            tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.acts.write(np.full(width * height, np.nan, np.float32).tobytes())  # grey until data comes
        index = (np.arange(self.count, dtype=np.uint32)[:, None] * 4 + _QUAD).ravel()
        self.index = ctx.buffer(index.tobytes() if self.count else b"\0" * 4)
        self.vaos = {
            "quads": ctx.vertex_array(
                self.programs["quads"], [], index_buffer=self.index, index_element_size=4
            ),
            "points": ctx.vertex_array(self.programs["points"], []),
        }
        self.jitter: moderngl.Texture | None = None  # made by the first set_jitter
        self.jitter_on = False
        self.jitter_time = 0.0  # seconds; the caller advances it while jitter is on
        self.ranges = np.tile(np.array([0.0, 1.0], np.float32), (self.n_layers, 1))
        self.visible = np.ones(self.n_layers, bool)
        self.set_layout(layout)

    # --- data --------------------------------------------------------------------------------

    def _write_rows(self, tex: moderngl.Texture, values: np.ndarray) -> None:
        """Write per-node values (N, C) into a node texture: full rows, then the partial last row."""
        width = tex.width
        rows, rest = divmod(self.count, width)
        if rows:
            tex.write(values[: rows * width], viewport=(0, 0, width, rows))
        if rest:
            tex.write(values[rows * width :], viewport=(0, rows, rest, 1))

    def set_layout(self, layout: Layout) -> None:
        """Write node centres and sizes (once per layout; a re-layout of the same network, e.g.
        after hiding a layer, reuses the batch).  A different network needs a new NodeBatch."""
        if layout.spec.total_nodes != self.count or len(layout.spec.layers) != self.n_layers:
            raise ValueError(f"layout of {layout.spec.model} does not match this batch ({self.count} nodes)")
        data = np.empty((self.count, 4), np.float32)
        data[:, :3] = layout.positions
        data[:, 3] = layout.sizes
        self._write_rows(self.nodes, data)
        self.layout = layout
        # Per layer: pitch / size (how far a far-away node may grow) and its biggest node.
        self._fill = np.ones(self.n_layers, np.float32)
        self._biggest = np.zeros(self.n_layers, np.float32)
        for i, layer in enumerate(layout.spec.layers):
            steps = np.abs(np.diff(layout.positions[layer.start : layer.stop, 0]))
            steps = steps[steps > 1e-6]
            size = float(layout.sizes[layer.start : layer.stop].max())
            self._biggest[i] = size
            if len(steps) and size > 0:
                self._fill[i] = max(1.0, float(steps.min()) / size)

    def set_activations(self, values: np.ndarray) -> None:
        """Upload the activation of every node (float32 (N,), by node id); no copy."""
        values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        if len(values) != self.count:
            raise ValueError(f"{len(values)} activations for {self.count} nodes")
        self._write_rows(self.acts, values)

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
            self.jitter = self.ctx.texture(self.nodes.size, 2, dtype="f4")
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
            return [mode] * self.n_layers
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
            "points" if p <= limit and (ok or p <= 4.0) else "quads" for p, ok in zip(px, inside, strict=True)
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
        if self.jitter_on:
            self.jitter.use(location=2)
        for prog in self.programs.values():
            set_uniform(prog, "u_nodes", 0)
            set_uniform(prog, "u_acts", 1)
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
        used = []
        for i, layer in enumerate(self.spec.layers):
            if not self.visible[i]:
                used.append("")
                continue
            m = modes[i]
            prog = self.programs[m]
            set_uniform(prog, "u_range", tuple(float(x) for x in self.ranges[i]))
            set_uniform(prog, "u_flat", int(self.is_flat(i)))
            set_uniform(prog, "u_fill", float(self._fill[i]) if s.close_gaps else 1.0)
            if m == "points":
                self.vaos[m].render(moderngl.POINTS, vertices=layer.count, first=layer.start)
            else:
                self.vaos[m].render(moderngl.TRIANGLES, vertices=6 * layer.count, first=6 * layer.start)
            used.append(m)
        return used

    def release(self) -> None:
        for vao in self.vaos.values():
            vao.release()
        for prog in self.programs.values():
            prog.release()
        self.index.release()
        self.nodes.release()
        self.acts.release()
        if self.jitter is not None:
            self.jitter.release()
