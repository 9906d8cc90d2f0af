"""Text labels in 3D: the output classes "0".."9", layer names, anything short.

GlyphAtlas rasterises printable ASCII once with Pillow's built-in font (no font files needed;
Pillow >= 10.1): glyph fill in one channel, fill + outline in the other.  LabelBatch turns strings
pinned to world positions into one instanced quad per glyph (shaders/labels.glsl) that keeps a
constant pixel size, drawn on top of the scene with premultiplied-alpha blending.
"""

from __future__ import annotations

from dataclasses import dataclass

import moderngl
import numpy as np
from convscope.engine.gpu.programs import create_program, set_uniform
from PIL import Image, ImageDraw, ImageFont

_GLYPH = np.dtype(
    [("anchor", "f4", 3), ("offset", "f4", 2), ("size", "f4", 2), ("uv", "f4", 4), ("color", "f4", 4)]
)
_FORMAT = "3f 2f 2f 4f 4f/i"
_ATTRS = ("in_anchor", "in_offset", "in_glyph_size", "in_uv", "in_color")


@dataclass(frozen=True)
class Glyph:
    rect: tuple[int, int, int, int]  # x, y, w, h in the atlas (pixels)
    bearing: tuple[int, int]  # quad's top-left from the pen position at the ascender line
    advance: float  # pen movement after this glyph


class GlyphAtlas:
    """CPU side: the atlas image (H, W, 2) uint8 and per-character metrics."""

    CHARS = "".join(chr(c) for c in range(32, 127))

    def __init__(self, font_px: int = 22, outline_px: int = 2, width: int = 512) -> None:
        font = ImageFont.load_default(size=font_px)
        ascent, descent = font.getmetrics()
        self.font_px = font_px
        self.line_height = ascent + descent
        self.outline_px = outline_px
        boxes = {c: font.getbbox(c, stroke_width=outline_px) for c in self.CHARS}
        # Shelf-pack the glyph boxes (each padded by 1 px, so linear filtering never bleeds).
        x = y = shelf = 0
        places = {}
        for c, (x0, y0, x1, y1) in boxes.items():
            w, h = x1 - x0 + 2, y1 - y0 + 2
            if x + w > width:
                x, y, shelf = 0, y + shelf, 0
            places[c] = (x, y)
            x, shelf = x + w, max(shelf, h)
        height = 1 << (y + shelf - 1).bit_length()
        fill = Image.new("L", (width, height))
        halo = Image.new("L", (width, height))
        df, dh = ImageDraw.Draw(fill), ImageDraw.Draw(halo)
        self.glyphs: dict[str, Glyph] = {}
        for c, (x0, y0, x1, y1) in boxes.items():
            px, py = places[c]
            pen = (px + 1 - x0, py + 1 - y0)
            df.text(pen, c, font=font, fill=255)
            dh.text(pen, c, font=font, fill=255, stroke_width=outline_px, stroke_fill=255)
            self.glyphs[c] = Glyph((px, py, x1 - x0 + 2, y1 - y0 + 2), (x0 - 1, y0 - 1), font.getlength(c))
        self.image = np.stack([np.asarray(fill), np.asarray(halo)], axis=-1)
        self._ink: dict[tuple[str, str], tuple[float, float, float, float]] = {}

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def text_width(self, text: str) -> float:
        return sum(self.glyphs.get(c, self.glyphs["?"]).advance for c in text)

    def layout(self, text: str, align: str = "center") -> list[tuple[Glyph, float, float]]:
        """(glyph, x, y) of each visible glyph's top-left corner relative to the anchor: the text
        box is centred vertically on the anchor, and centred / left / right aligned horizontally."""
        width = self.text_width(text)
        pen = {"center": -width / 2, "left": 0.0, "right": -width}[align]
        top = -self.line_height / 2
        out = []
        for c in text:
            g = self.glyphs.get(c, self.glyphs["?"])
            if c != " ":
                out.append((g, round(pen) + g.bearing[0], round(top) + g.bearing[1]))
            pen += g.advance
        return out

    def ink_box(self, text: str, align: str = "center") -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) around the anchor, pixels at text size 1, y down: where the glyph quads of
        `text` (outline included) lie as `layout` places them; all zero for blank text."""
        key = (text, align)
        if key not in self._ink:  # asked for every name on every camera move: measured once
            quads = [(x, y, x + g.rect[2], y + g.rect[3]) for g, x, y in self.layout(text, align)]
            box = np.array(quads, np.float64).reshape(-1, 4)
            lo, hi = (box[:, :2].min(0), box[:, 2:].max(0)) if len(box) else (np.zeros(2), np.zeros(2))
            self._ink[key] = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
        return self._ink[key]


class LabelBatch:
    def __init__(self, ctx: moderngl.Context, atlas: GlyphAtlas | None = None) -> None:
        self.ctx = ctx
        self.atlas = atlas or GlyphAtlas()
        self.program = create_program(ctx, "labels")
        w, h = self.atlas.size
        self.texture = ctx.texture((w, h), 2, self.atlas.image.tobytes())
        self.texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.buffer = None
        self.vao = None
        self.count = 0
        self.outline_color = (0.05, 0.06, 0.09, 0.85)

    def set_labels(
        self,
        texts: list[str],
        positions: np.ndarray,
        offset_px: tuple[float, float] | np.ndarray = (0.0, 0.0),
        colors: np.ndarray | tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        align: str | list[str] = "center",
        scale: float | list[float] = 1.0,
    ) -> None:
        """Pin texts[i] to world point positions[i], shifted on screen by offset_px (pixels, y down).
        offset_px, colors (RGBA), align ("center" / "left" / "right" of the anchor) and scale (text
        size) take one value for all labels or one per label.  Replaces the previous labels."""
        n = len(texts)
        positions = np.asarray(positions, np.float32).reshape(-1, 3)
        if len(positions) != n:
            raise ValueError(f"{n} texts for {len(positions)} positions")
        offsets = np.broadcast_to(np.asarray(offset_px, np.float32).reshape(-1, 2), (n, 2))
        colors = np.broadcast_to(np.asarray(colors, np.float32).reshape(-1, 4), (n, 4))
        aligns = [align] * n if isinstance(align, str) else list(align)
        scales = np.broadcast_to(np.asarray(scale, np.float32).reshape(-1), (n,))
        aw, ah = self.atlas.size
        rows = []
        for i, text in enumerate(texts):
            k = float(scales[i])
            for g, x, y in self.atlas.layout(text, aligns[i]):
                gx, gy, gw, gh = g.rect
                uv = (gx / aw, gy / ah, (gx + gw) / aw, (gy + gh) / ah)
                rows.append(
                    (
                        positions[i],
                        (x * k + offsets[i, 0], y * k + offsets[i, 1]),
                        (gw * k, gh * k),
                        uv,
                        colors[i],
                    )
                )
        data = np.array(rows, dtype=_GLYPH) if rows else np.zeros(0, _GLYPH)
        self.count = len(data)
        if self.buffer is None or self.buffer.size < max(data.nbytes, 1):
            if self.vao is not None:
                self.vao.release()
                self.buffer.release()
            self.buffer = self.ctx.buffer(reserve=max(data.nbytes, _GLYPH.itemsize * 64))
            self.vao = self.ctx.vertex_array(self.program, [(self.buffer, _FORMAT, *_ATTRS)])
        if self.count:
            self.buffer.write(data.tobytes())

    def draw(self, view_proj: np.ndarray, viewport: tuple[int, int], scale: float = 1.0) -> None:
        """Draw over everything already in the framebuffer (depth test off, blending on)."""
        if not self.count:
            return
        set_uniform(
            self.program, "u_view_proj", np.ascontiguousarray(np.asarray(view_proj, np.float32).T).tobytes()
        )
        set_uniform(self.program, "u_viewport", (float(viewport[0]), float(viewport[1])))
        set_uniform(self.program, "u_scale", float(scale))
        set_uniform(self.program, "u_outline_color", self.outline_color)
        set_uniform(self.program, "u_atlas", 0)
        self.texture.use(location=0)
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
        self.texture.release()
        self.program.release()
