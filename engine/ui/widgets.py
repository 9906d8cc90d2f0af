"""Small reusable ImGui widgets: textures as images (with the V flip render targets need), toggle
buttons, help markers. GUI code only: no GL calls; textures arrive as `imgui.ImTextureRef` or a GL
texture name (int), made and uploaded on the GPU side (engine.gpu.imgui_renderer.UiTexture).

Orientation: ImGui puts uv (0, 0) at the top-left, GL puts texture row 0 first. A texture filled
from a numpy array whose first row is the top is therefore upright as is; a texture that was a
render target has its first row at the bottom and needs `flip_v=True`.
"""

from __future__ import annotations

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
