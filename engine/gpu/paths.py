"""PathBatch: thick screen-space line segments between world points, each with its own width and colour.

The training scene draws ReVACNN's paths with it (one segment per filter pair between consecutive layers,
width by the filter's activation sum; scenes/train/scene.py decides which and how wide) and the outline of
the selected feature map.  One instanced quad per segment (shaders/paths.glsl); `set_segments` writes one
small buffer (44 bytes per segment, about a thousand segments for the paper's net) when the data changed,
`draw` is one call.  With `depth_test` the nodes in front hide the paths (depth is read, never written),
without it the segments are drawn over everything (outlines).
"""

from __future__ import annotations

import moderngl
import numpy as np
from convscope.engine.gpu.nodes import gl_bytes
from convscope.engine.gpu.programs import create_program, set_uniform

_FLOATS = 11  # p0 xyz, p1 xyz, width, rgba


class PathBatch:
    def __init__(self, ctx: moderngl.Context) -> None:
        self.ctx = ctx
        self.program = create_program(ctx, "paths")
        self.buffer: moderngl.Buffer | None = None
        self.vao: moderngl.VertexArray | None = None
        self.count = 0
        self.uploads = 0  # set_segments calls that wrote to the GPU (tests)

    def set_segments(
        self, p0: np.ndarray, p1: np.ndarray, width_px: np.ndarray, rgba: np.ndarray | tuple
    ) -> None:
        """Segments from world points `p0` (M, 3) to `p1` (M, 3), `width_px` (M,) pixels wide (0 hides
        one), coloured `rgba` (M, 4) or one (4,) colour for all, straight alpha."""
        p0 = np.asarray(p0, np.float32).reshape(-1, 3)
        p1 = np.asarray(p1, np.float32).reshape(-1, 3)
        m = len(p0)
        if len(p1) != m:
            raise ValueError(f"{m} segment starts for {len(p1)} ends")
        data = np.empty((m, _FLOATS), np.float32)
        data[:, 0:3] = p0
        data[:, 3:6] = p1
        data[:, 6] = np.broadcast_to(np.asarray(width_px, np.float32), (m,))
        data[:, 7:11] = np.broadcast_to(np.asarray(rgba, np.float32), (m, 4))
        self.count = m
        if self.buffer is None or self.buffer.size < data.nbytes:
            if self.vao is not None:
                self.vao.release()
                self.buffer.release()
            self.buffer = self.ctx.buffer(reserve=max(data.nbytes, 64 * 1024))
            self.vao = self.ctx.vertex_array(
                self.program,
                [(self.buffer, "3f 3f 1f 4f/i", "in_p0", "in_p1", "in_width", "in_color")],
            )
        if m:
            self.buffer.write(data.tobytes())
        self.uploads += 1

    def clear(self) -> None:
        """Draw nothing until the next set_segments."""
        self.count = 0

    def draw(
        self, view: np.ndarray, proj: np.ndarray, viewport: tuple[int, int], depth_test: bool = True
    ) -> None:
        if not self.count:
            return
        p = self.program
        set_uniform(p, "u_view_proj", gl_bytes(proj @ view))
        set_uniform(p, "u_viewport", (float(viewport[0]), float(viewport[1])))
        if depth_test:
            self.ctx.enable(moderngl.DEPTH_TEST)
        else:
            self.ctx.disable(moderngl.DEPTH_TEST)
        fbo = self.ctx.fbo  # the bound framebuffer
        fbo.depth_mask = False  # translucent: never hide what is drawn after
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA
        self.vao.render(moderngl.TRIANGLE_STRIP, vertices=4, instances=self.count)
        self.ctx.blend_func = moderngl.DEFAULT_BLENDING
        self.ctx.disable(moderngl.BLEND)
        fbo.depth_mask = True

    def release(self) -> None:
        if self.vao is not None:
            self.vao.release()
            self.buffer.release()
            self.vao = self.buffer = None
        self.program.release()
