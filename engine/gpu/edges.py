"""EdgeBatch: the incoming edges of the hovered node, as lines drawn over the nodes.

Harley 2015 draws edges for one node at a time, on request; which edges and what values they
carry come from engine.graph.edges (incoming / edge_values / edge_scale), the GPU side is here.
One instanced quad per edge (shaders/edges.glsl): a line of `EdgeStyle.width` pixels from the
source node's centre to the target's, coloured through the colormap the caller names (the explorer:
the diverging one) over the symmetric range [-m, m] (0 mid-colormap), weak edges fainter.

`set_edges` writes one small buffer (16 bytes per edge: source xyz + value, at most a few thousand
edges) and is called only when the hovered node, the activations, the edge mode or the
normalisation changed; `draw` is one call per frame.  Edges are drawn over everything already in
the framebuffer (depth test off), so a bundle stays visible through the layer sheets above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import moderngl
import numpy as np
from convscope.engine.gpu import colormaps
from convscope.engine.gpu.nodes import gl_bytes
from convscope.engine.gpu.programs import create_program, set_uniform


@dataclass
class EdgeStyle:
    width: float = 1.6  # line width in pixels (times the UI scale for touch screens)
    alpha_min: float = 0.35  # opacity of a zero-valued edge; |value| = m is opaque


class EdgeBatch:
    def __init__(self, ctx: moderngl.Context, style: EdgeStyle | None = None) -> None:
        self.ctx = ctx
        self.style = style or EdgeStyle()
        self.program = create_program(ctx, "edges")
        self.buffer: moderngl.Buffer | None = None
        self.vao: moderngl.VertexArray | None = None
        self.count = 0
        self.target = np.zeros(3, np.float32)
        self.scale = 1.0
        self.uploads = 0  # set_edges calls that wrote to the GPU (tests, benchmarks)

    def set_edges(self, sources: np.ndarray, values: np.ndarray, target: np.ndarray, scale: float) -> None:
        """Edges from world points `sources` (E, 3) to `target` (3,), coloured by `values` (E,) over
        [-scale, scale].  Stronger edges are drawn last, so they stay on top."""
        sources = np.asarray(sources, np.float32).reshape(-1, 3)
        values = np.asarray(values, np.float32).reshape(-1)
        if len(sources) != len(values):
            raise ValueError(f"{len(sources)} edge sources for {len(values)} values")
        order = np.argsort(np.nan_to_num(np.abs(values), nan=-1.0), kind="stable")
        data = np.empty((len(values), 4), np.float32)
        data[:, :3] = sources[order]
        data[:, 3] = values[order]
        self.count = len(data)
        self.target = np.asarray(target, np.float32).reshape(3)
        self.scale = float(scale) if np.isfinite(scale) and scale > 0 else 1.0
        if self.buffer is None or self.buffer.size < data.nbytes:
            if self.vao is not None:
                self.vao.release()
                self.buffer.release()
            self.buffer = self.ctx.buffer(reserve=max(data.nbytes, 16 * 1024))
            self.vao = self.ctx.vertex_array(
                self.program, [(self.buffer, "3f 1f/i", "in_source", "in_value")]
            )
        if self.count:
            self.buffer.write(data.tobytes())
        self.uploads += 1

    def clear(self) -> None:
        """Draw nothing until the next set_edges."""
        self.count = 0

    def draw(
        self,
        view: np.ndarray,
        proj: np.ndarray,
        viewport: tuple[int, int],
        colormap: str = "harley",
        width_scale: float = 1.0,
    ) -> None:
        if not self.count:
            return
        p = self.program
        set_uniform(p, "u_view_proj", gl_bytes(proj @ view))
        set_uniform(p, "u_target", tuple(float(v) for v in self.target))
        set_uniform(p, "u_viewport", (float(viewport[0]), float(viewport[1])))
        set_uniform(p, "u_width", float(self.style.width * width_scale))
        set_uniform(p, "u_scale", self.scale)
        set_uniform(p, "u_alpha_min", float(self.style.alpha_min))
        set_uniform(p, "u_colormap", colormaps.index(colormap))
        self.ctx.disable(moderngl.DEPTH_TEST)
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA
        self.vao.render(moderngl.TRIANGLE_STRIP, vertices=4, instances=self.count)
        self.ctx.blend_func = moderngl.DEFAULT_BLENDING
        self.ctx.disable(moderngl.BLEND)

    def release(self) -> None:
        if self.vao is not None:
            self.vao.release()
            self.buffer.release()
            self.vao = self.buffer = None
        self.program.release()
