"""OffscreenTarget: a colour + depth framebuffer to render into without a window.

Used by headless tests, screenshots and benchmarks.  With samples > 0 it renders into
multisampled renderbuffers and resolves into a plain one on read().  Read from here, never from
ctx.screen (which a standalone EGL context does not have).
"""

from __future__ import annotations

import moderngl
import numpy as np


class OffscreenTarget:
    def __init__(self, ctx: moderngl.Context, width: int, height: int, samples: int = 0) -> None:
        self.ctx = ctx
        self.samples = int(samples)
        self._objects: list = []
        self._build(int(width), int(height))

    def _build(self, w: int, h: int) -> None:
        self.size = (w, h)
        ctx = self.ctx
        color = ctx.renderbuffer((w, h), 4, samples=self.samples)
        depth = ctx.depth_renderbuffer((w, h), samples=self.samples)
        self.fbo = ctx.framebuffer(color_attachments=[color], depth_attachment=depth)
        self._objects = [self.fbo, color, depth]
        self._resolve = None
        if self.samples:
            plain = ctx.renderbuffer((w, h), 4)
            self._resolve = ctx.framebuffer(color_attachments=[plain])
            self._objects += [self._resolve, plain]

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def use(self) -> None:
        """Bind for drawing, with the viewport covering the whole target."""
        self.fbo.use()
        self.fbo.viewport = (0, 0, *self.size)

    def clear(
        self, color: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0), depth: float = 1.0
    ) -> None:
        self.fbo.clear(*color, depth=depth)

    def read(self, components: int = 3) -> np.ndarray:
        """The pixels as uint8 (h, w, components), top row first."""
        fbo = self.fbo
        if self._resolve is not None:
            self.ctx.copy_framebuffer(self._resolve, self.fbo)
            fbo = self._resolve
        data = fbo.read(components=components, alignment=1)
        w, h = self.size
        return np.frombuffer(data, np.uint8).reshape(h, w, components)[::-1].copy()

    def resize(self, width: int, height: int) -> None:
        if (int(width), int(height)) == self.size:
            return
        self._release_objects()
        self._build(int(width), int(height))

    def _release_objects(self) -> None:
        if self.ctx.fbo is self.fbo:
            # moderngl re-binds the "current" framebuffer after creating another one; a deleted one
            # there is a GL_INVALID_OPERATION, so hand the binding back to the default framebuffer.
            # (A wrapper of framebuffer 0 owns no GL object: nothing to release.)
            self.ctx.detect_framebuffer(0).use()
        for obj in self._objects:
            obj.release()
        self._objects = []

    def release(self) -> None:
        self._release_objects()
