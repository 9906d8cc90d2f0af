"""Small reusable ImGui widgets: textures as images (with the V flip render targets need), toggle
buttons, help markers, colour bars. GUI code only: no GL calls; textures arrive as `imgui.ImTextureRef` or
a GL texture name (int), made and uploaded on the GPU side (engine.gpu.imgui_renderer.UiTexture).

Orientation: ImGui puts uv (0, 0) at the top-left, GL puts texture row 0 first. A texture filled
from a numpy array whose first row is the top is therefore upright as is; a texture that was a
render target has its first row at the bottom and needs `flip_v=True`.
"""

from __future__ import annotations

import numpy as np
from imgui_bundle import imgui

TextureLike = imgui.ImTextureRef | int


def as_texture_ref(texture: TextureLike) -> imgui.ImTextureRef:
    return texture if isinstance(texture, imgui.ImTextureRef) else imgui.ImTextureRef(int(texture))


def _uvs(flip_v: bool) -> tuple[tuple[float, float], tuple[float, float]]:
    return ((0.0, 1.0), (1.0, 0.0)) if flip_v else ((0.0, 0.0), (1.0, 1.0))


def image(texture: TextureLike, size: tuple[float, float], *, flip_v: bool = False) -> None:
    """`imgui.image` of a GL texture, `size` in window coordinates."""
    uv0, uv1 = _uvs(flip_v)
    imgui.image(as_texture_ref(texture), size, uv0, uv1)


def draw_image(
    draw_list: imgui.ImDrawList,
    texture: TextureLike,
    p_min: tuple[float, float],
    p_max: tuple[float, float],
    *,
    flip_v: bool = False,
    tint: int = 0xFFFFFFFF,
) -> None:
    """A texture in a screen rect of `draw_list`, without taking layout space (to put under other items)."""
    uv0, uv1 = _uvs(flip_v)
    draw_list.add_image(as_texture_ref(texture), p_min, p_max, uv0, uv1, tint)


def toggle_button(label: str, active: bool, size: tuple[float, float] | None = None) -> bool:
    """A button drawn in the 'active' colour while `active`; True when clicked."""
    if active:
        imgui.push_style_color(imgui.Col_.button, imgui.get_style_color_vec4(imgui.Col_.button_active))
    clicked = imgui.button(label, size)
    if active:
        imgui.pop_style_color()
    return clicked


def help_marker(text: str) -> None:
    """A greyed '(?)' that shows `text` as a tooltip on hover."""
    imgui.text_disabled("(?)")
    if imgui.begin_item_tooltip():
        imgui.push_text_wrap_pos(imgui.get_font_size() * 30.0)
        imgui.text_unformatted(text)
        imgui.pop_text_wrap_pos()
        imgui.end_tooltip()


def color_bar(
    colors: np.ndarray,
    labels: tuple[str, ...],
    width: float | None = None,
    height: float | None = None,
    label_rgba: imgui.ImVec4 | None = None,
) -> tuple[float, float, float, float]:
    """A horizontal colour bar: `colors` (N, 3) floats in [0, 1], evenly spaced from left to right and
    blended between, then `labels` under it (two: the ends; three: ends and middle; more: evenly spaced).
    `width` defaults to the available width, `height` to half a line.  Returns the bar's screen rect
    (x0, y0, x1, y1), for tests that read its pixels."""
    colors = np.asarray(colors, np.float32).reshape(-1, 3)
    if len(colors) < 2:
        colors = np.repeat(colors[:1], 2, axis=0)
    fill = not width
    width = float(width) if width else max(imgui.get_content_region_avail().x, 16.0)
    # A bar that fills the row claims no width of its own: otherwise an auto-resizing panel could never
    # shrink again (after a smaller UI scale), its bar holding it at the width it had.
    claim = 0.0 if fill else width
    height = float(height) if height else imgui.get_text_line_height() * 0.6
    dl = imgui.get_window_draw_list()
    p = imgui.get_cursor_screen_pos()
    n = len(colors)
    u32 = [imgui.get_color_u32(imgui.ImVec4(float(r), float(g), float(b), 1.0)) for r, g, b in colors]
    for i in range(n - 1):
        x0 = p.x + width * i / (n - 1)
        x1 = p.x + width * (i + 1) / (n - 1)
        dl.add_rect_filled_multi_color((x0, p.y), (x1, p.y + height), u32[i], u32[i + 1], u32[i + 1], u32[i])
    imgui.dummy(imgui.ImVec2(claim, height))
    rect = (p.x, p.y, p.x + width, p.y + height)
    if labels:
        rgba = label_rgba or imgui.get_style_color_vec4(imgui.Col_.text_disabled)
        y = imgui.get_cursor_screen_pos().y
        k = len(labels)
        for i, text in enumerate(labels):
            tw = imgui.calc_text_size(text).x
            centre = p.x + width * (i / (k - 1) if k > 1 else 0.5)
            x = min(max(centre - tw / 2, p.x), p.x + width - tw)  # the end labels stay inside the bar
            dl.add_text((x, y), imgui.get_color_u32(rgba), text)
        imgui.dummy(imgui.ImVec2(claim, imgui.get_text_line_height()))
    return rect
