"""Background: the soft light behind the network (Harley 2015's "large blurred ellipse").

A full-screen triangle drawn first each frame with depth off, so it needs no clear of the colour
buffer.  Colours and ellipse size live in BackgroundStyle; the shader is shaders/background.glsl.
"""

from __future__ import annotations

from dataclasses import dataclass

import moderngl
from convscope.engine.gpu.programs import create_program, set_uniform


@dataclass
class BackgroundStyle:
    center_color: tuple[float, float, float] = (0.80, 0.83, 0.88)  # light grey-blue at the centre
    edge_color: tuple[float, float, float] = (0.13, 0.14, 0.18)  # dark slate at the edges
    radii: tuple[float, float] = (1.75, 1.05)  # ellipse half-axes in half viewport heights: wider than tall
    falloff: float = 2.0  # light at the ellipse's rim = 2^-falloff of the centre's


class Background:
    def __init__(self, ctx: moderngl.Context, style: BackgroundStyle | None = None) -> None:
        self.ctx = ctx
        self.style = style or BackgroundStyle()
        self.program = create_program(ctx, "background")
        self.vao = ctx.vertex_array(self.program, [])

    def draw(self, viewport: tuple[int, int]) -> None:
        """Fill the current framebuffer's viewport.  Turns the depth test off (each drawer sets the
        GL state it needs; moderngl cannot query it)."""
        w, h = viewport
        s = self.style
        set_uniform(self.program, "u_aspect", w / max(h, 1))
        set_uniform(self.program, "u_radii", s.radii)
        set_uniform(self.program, "u_center_color", s.center_color)
        set_uniform(self.program, "u_edge_color", s.edge_color)
        set_uniform(self.program, "u_falloff", s.falloff)
        self.ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND)
        self.vao.render(moderngl.TRIANGLES, vertices=3)

    def release(self) -> None:
        self.vao.release()
        self.program.release()
