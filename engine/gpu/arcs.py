"""ArcBatch: a layout's skip-connection arcs, column links and opaque-layer frames, as smooth bands.

The layout (engine/graph/layout.py) says where each one runs (a polyline per skip connection, one per
hop between the columns of a folded network, a closed one around each opaque layer); this batch
decides how they look: one colour per edge kind, a width in world units scaled to the network (so
arcs belong to the scene when near) and at least `ArcStyle.min_px` pixels (so they stay visible when
fitted).  Static per layout: `set_layout` writes one vertex and one index buffer, `draw` is one call
(shaders/arcs.glsl).  Depth is tested against the nodes, never written, so arcs pass behind sheets
that are in front of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import moderngl
import numpy as np
from convscope.engine.gpu.nodes import gl_bytes
from convscope.engine.gpu.programs import create_program, set_uniform
from convscope.engine.graph.layout import Layout

_FLOATS = 3 + 3 + 3 + 1 + 1 + 1 + 4  # pos, prev, next, side, t, width, rgba


@dataclass
class ArcStyle:
    colors: dict[str, tuple[float, float, float, float]] = field(
        default_factory=lambda: {
            "add": (1.0, 0.72, 0.28, 0.9),  # residual sums: amber
            "concat": (0.35, 0.85, 0.8, 0.9),  # concatenated branches: teal
            "mul": (0.78, 0.55, 1.0, 0.9),  # gates: violet
        }
    )
    other: tuple[float, float, float, float] = (0.6, 0.7, 0.95, 0.85)  # any other edge kind
    link: tuple[float, float, float, float] = (0.3, 0.55, 1.0, 0.9)  # from one column to the next: blue
    frame: tuple[float, float, float, float] = (1.0, 0.4, 0.45, 0.9)  # opaque layers' frames: an op not shown
    width: float = 0.004  # band width, as a fraction of the network's largest extent
    frame_width: float = 0.0015
    min_px: float = 2.0  # never thinner on screen


def polyline_vertices(points: np.ndarray, width: float, rgba) -> tuple[np.ndarray, np.ndarray]:
    """Vertex rows (2K, _FLOATS) for one polyline of K points, and its triangles' indices (local)."""
    p = np.asarray(points, np.float32).reshape(-1, 3)
    k = len(p)
    prev = np.concatenate([p[:1], p[:-1]])
    nxt = np.concatenate([p[1:], p[-1:]])
    t = np.linspace(0.0, 1.0, k, dtype=np.float32)
    rows = np.empty((k, 2, _FLOATS), np.float32)
    for j, side in enumerate((-1.0, 1.0)):
        rows[:, j, 0:3], rows[:, j, 3:6], rows[:, j, 6:9] = p, prev, nxt
        rows[:, j, 9], rows[:, j, 10], rows[:, j, 11] = side, t, width
        rows[:, j, 12:16] = rgba
    a = np.arange(k - 1, dtype=np.int32) * 2  # first vertex of each segment
    tris = np.stack([a, a + 1, a + 2, a + 1, a + 3, a + 2], axis=1)
    return rows.reshape(-1, _FLOATS), tris.reshape(-1)


class ArcBatch:
    def __init__(self, ctx: moderngl.Context, style: ArcStyle | None = None) -> None:
        self.ctx = ctx
        self.style = style or ArcStyle()
        self.program = create_program(ctx, "arcs")
        self.vbo: moderngl.Buffer | None = None
        self.ibo: moderngl.Buffer | None = None
        self.vao: moderngl.VertexArray | None = None
        self.indices = 0  # indices to draw; 0: nothing
        self.polylines = 0  # arcs + links + frames written (tests)

    def set_layout(self, layout: Layout) -> None:
        """Write the bands of `layout`'s arcs, links and frames (once per layout)."""
        s = self.style
        lo, hi = layout.bounds
        scale = float(np.max(hi - lo)) if len(layout.layer_bounds) else 1.0
        parts = [(a.points, s.width * scale, s.colors.get(a.kind, s.other)) for a in layout.arcs]
        parts += [(a.points, s.width * scale, s.link) for a in layout.links]
        parts += [(pts, s.frame_width * scale, s.frame) for _, pts in layout.frames]
        rows, tris, base = [], [], 0
        for pts, width, rgba in parts:
            r, t = polyline_vertices(pts, width, rgba)
            rows.append(r)
            tris.append(t + base)
            base += len(r)
        self.polylines = len(parts)
        self.indices = 0
        if not parts:
            return
        data = np.concatenate(rows).astype(np.float32)
        index = np.concatenate(tris).astype(np.int32)
        self._release_buffers()
        self.vbo = self.ctx.buffer(data.tobytes())
        self.ibo = self.ctx.buffer(index.tobytes())
        self.vao = self.ctx.vertex_array(
            self.program,
            [
                (
                    self.vbo,
                    "3f 3f 3f 1f 1f 1f 4f",
                    "in_pos",
                    "in_prev",
                    "in_next",
                    "in_side",
                    "in_t",
                    "in_width",
                    "in_color",
                )
            ],
            index_buffer=self.ibo,
            index_element_size=4,
        )
        self.indices = len(index)

    def draw(self, view: np.ndarray, proj: np.ndarray, viewport: tuple[int, int]) -> None:
        if not self.indices:
            return
        p = self.program
        set_uniform(p, "u_view_proj", gl_bytes(proj @ view))
        set_uniform(p, "u_viewport", (float(viewport[0]), float(viewport[1])))
        set_uniform(p, "u_px_per_unit", float(proj[1, 1]) * 0.5 * float(viewport[1]))
        set_uniform(p, "u_min_px", float(self.style.min_px))
        self.ctx.enable(moderngl.DEPTH_TEST)
        fbo = self.ctx.fbo
        fbo.depth_mask = False  # translucent: never hide what is drawn after
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA
        self.vao.render(moderngl.TRIANGLES, vertices=self.indices)
        self.ctx.blend_func = moderngl.DEFAULT_BLENDING
        self.ctx.disable(moderngl.BLEND)
        fbo.depth_mask = True

    def _release_buffers(self) -> None:
        if self.vao is not None:
            self.vao.release()
            self.vbo.release()
            self.ibo.release()
            self.vao = self.vbo = self.ibo = None

    def release(self) -> None:
        self._release_buffers()
        self.program.release()
