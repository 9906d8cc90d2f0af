"""ImGuiRenderer in a headless EGL context: known ImGui windows drawn offscreen and checked by pixel.

Screenshots go to out/screens/imgui_*.png (look at them after a change).
"""

from __future__ import annotations

from pathlib import Path

import moderngl
import numpy as np
import pytest
from convscope.engine.gpu.imgui_renderer import ImGuiRenderer, UiTexture
from convscope.engine.ui import widgets
from convscope.engine.ui.backend import UiBackend
from gl_helpers import gl_context, release_framebuffer
from imgui_bundle import imgui
from PIL import Image

pytestmark = pytest.mark.gl

SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"
CLEAR = (0.1, 0.2, 0.3)
CLEAR_U8 = tuple(round(c * 255) for c in CLEAR)
FIXED = imgui.WindowFlags_.no_saved_settings | imgui.WindowFlags_.no_scrollbar


@pytest.fixture
def ui():
    ctx = gl_context()
    backend = UiBackend()
    renderer = ImGuiRenderer(ctx)
    yield ctx, backend, renderer
    renderer.release()
    backend.destroy()


def render(ui, gui, size=(320, 240), scale=(1.0, 1.0), frames=3, name=None) -> np.ndarray:
    """Run `gui` for a few frames and return the last one as (H, W, 3) uint8, top row first."""
    ctx, backend, renderer = ui
    fb_size = (int(size[0] * scale[0]), int(size[1] * scale[1]))
    fbo = ctx.simple_framebuffer(fb_size)
    try:
        for _ in range(frames):
            backend.new_frame(size, scale, 1 / 60)
            gui()
            draw_data = backend.render()
            fbo.use()
            fbo.clear(*CLEAR, 1.0)
            renderer.render(draw_data)
        pixels = (
            np.frombuffer(fbo.read(components=3), np.uint8).reshape(fb_size[1], fb_size[0], 3)[::-1].copy()
        )
    finally:
        release_framebuffer(ctx, fbo)
    if name:
        SCREENS.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(SCREENS / f"imgui_{name}.png")
    return pixels


def fixed_window(title: str, pos, size) -> None:
    imgui.set_next_window_pos(pos)
    imgui.set_next_window_size(size)
    imgui.begin(title, None, FIXED)


def near(pixel, colour, tol=3) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(colour)) <= tol))


def test_window_with_coloured_buttons_shows_in_pixels(ui):
    rects = {}

    def gui():
        for title, pos, colour, key in (
            ("Red", (20, 20), (1.0, 0.0, 0.0, 1.0), "red"),
            ("Green", (170, 120), (0.0, 1.0, 0.0, 1.0), "green"),  # a second draw list
        ):
            fixed_window(title, pos, (130, 100))
            imgui.text(f"{key} button:")
            for state in (imgui.Col_.button, imgui.Col_.button_hovered, imgui.Col_.button_active):
                imgui.push_style_color(state, colour)
            imgui.button(key.upper(), (100, 40))
            imgui.pop_style_color(3)
            rects[key] = (imgui.get_item_rect_min(), imgui.get_item_rect_max())
            imgui.end()

    px = render(ui, gui, name="buttons")
    for key, colour in (("red", (255, 0, 0)), ("green", (0, 255, 0))):
        lo, hi = rects[key]
        x0, y0, x1, y1 = int(lo.x) + 3, int(lo.y) + 3, int(hi.x) - 3, int(hi.y) - 3
        patch = px[y0:y1, x0:x1].reshape(-1, 3)
        share = np.mean([near(p, colour) for p in patch])
        # The label's glyphs cover part of the button; the rest is the pure colour.
        assert share > 0.7, f"{key} button at {lo}-{hi}: only {share:.0%} of its pixels are {colour}"
    assert near(px[5, 5], CLEAR_U8) and near(px[235, 5], CLEAR_U8), "background outside the windows changed"
    # The window body is drawn (not the clear colour) and is not the button colour.
    assert not near(px[110, 30], CLEAR_U8) and not near(px[110, 30], (255, 0, 0))
    # Title text was rasterised from the font atlas: light pixels in the title bar.
    assert px[22:38, 25:70].max() > 200


def test_scissor_clips_a_large_button_to_its_window(ui):
    def gui():
        fixed_window("Clip", (40, 50), (120, 80))
        imgui.push_style_color(imgui.Col_.button, (0.0, 1.0, 0.0, 1.0))
        imgui.push_style_color(imgui.Col_.button_hovered, (0.0, 1.0, 0.0, 1.0))
        imgui.button("huge", (400, 400))
        imgui.pop_style_color(2)
        imgui.end()

    px = render(ui, gui, name="scissor")
    green = np.all(np.abs(px.astype(int) - (0, 255, 0)) <= 3, axis=-1)
    ys, xs = np.nonzero(green)
    assert green.sum() > 2000, "the button is missing"
    assert xs.min() >= 40 and xs.max() < 160 and ys.min() >= 50 and ys.max() < 130, (
        f"green outside the 120x80 window at (40, 50): x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()}"
    )


def test_framebuffer_scale_draws_at_pixel_density(ui):
    rect = {}

    def gui():
        fixed_window("HiDPI", (10, 10), (140, 100))
        imgui.push_style_color(imgui.Col_.button, (1.0, 0.0, 0.0, 1.0))
        imgui.button("x2", (60, 30))
        imgui.pop_style_color()
        rect["r"] = (imgui.get_item_rect_min(), imgui.get_item_rect_max())
        imgui.end()

    px = render(ui, gui, size=(160, 120), scale=(2.0, 2.0), name="hidpi")
    assert px.shape == (240, 320, 3)
    lo, hi = rect["r"]
    red = np.all(np.abs(px.astype(int) - (255, 0, 0)) <= 3, axis=-1)
    ys, xs = np.nonzero(red)
    # The button covers its logical rect times two, to within a pixel of anti-aliasing.
    assert abs(xs.min() - 2 * lo.x) <= 2 and abs(xs.max() + 1 - 2 * hi.x) <= 2
    assert abs(ys.min() - 2 * lo.y) <= 2 and abs(ys.max() + 1 - 2 * hi.y) <= 2


def test_numpy_texture_shows_upright_and_render_target_needs_flip(ui):
    ctx = ui[0]
    quad = np.zeros((4, 4, 3), np.uint8)
    quad[:2, :2] = (255, 0, 0)  # top-left red
    quad[:2, 2:] = (0, 255, 0)  # top-right green
    quad[2:, :2] = (0, 0, 255)  # bottom-left blue
    quad[2:, 2:] = (255, 255, 255)
    image = UiTexture(ctx, (4, 4), 3, smooth=False)
    image.upload(quad)
    # A render target: blue everywhere, red in its top half (GL rows 8..15 are the top).
    target = ctx.texture((16, 16), 4)
    target.filter = (moderngl.NEAREST, moderngl.NEAREST)
    target_fbo = ctx.framebuffer([target])
    target_fbo.clear(0.0, 0.0, 1.0, 1.0)
    target_fbo.clear(1.0, 0.0, 0.0, 1.0, viewport=(0, 8, 16, 8))
    pos = {}

    def gui():
        fixed_window("Textures", (10, 10), (300, 200))
        widgets.image(image.ref, (80, 80))
        pos["numpy"] = imgui.get_item_rect_min()
        imgui.same_line()
        widgets.image(target.glo, (80, 80), flip_v=True)
        pos["flipped"] = imgui.get_item_rect_min()
        imgui.same_line()
        widgets.image(target.glo, (80, 80))
        pos["raw"] = imgui.get_item_rect_min()
        imgui.end()

    try:
        px = render(ui, gui, name="textures")
    finally:
        ui[2].forget_texture(target.glo)
        release_framebuffer(ctx, target_fbo)
        target.release()
        image.release()
    x, y = int(pos["numpy"].x), int(pos["numpy"].y)
    for (dx, dy), colour in (
        ((20, 20), (255, 0, 0)),
        ((60, 20), (0, 255, 0)),
        ((20, 60), (0, 0, 255)),
        ((60, 60), (255,) * 3),
    ):
        assert near(px[y + dy, x + dx], colour), (
            f"numpy texture at +({dx},{dy}): {px[y + dy, x + dx]} != {colour}"
        )
    x, y = int(pos["flipped"].x), int(pos["flipped"].y)
    assert near(px[y + 20, x + 40], (255, 0, 0)) and near(px[y + 60, x + 40], (0, 0, 255)), (
        "flip_v image is not upright"
    )
    x, y = int(pos["raw"].x), int(pos["raw"].y)
    assert near(px[y + 20, x + 40], (0, 0, 255)), "a render target shown without flip should be upside down"


def test_font_atlas_textures_follow_imgui_lifecycle(ui, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an imgui.ini would land here
    ctx, backend, renderer = ui
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789"

    def gui():
        fixed_window("Fonts", (0, 0), (320, 240))
        # New sizes bake new glyphs (WantUpdates); this many big ones outgrow the first atlas, so
        # ImGui asks for a bigger texture (WantCreate) and drops the old ones (WantDestroy).
        for size in (13, 40, 90, 150):
            imgui.push_font(None, size)
            imgui.text(alphabet)
            imgui.pop_font()
        imgui.end()

    render(ui, gui, frames=6, name="fonts")
    textures = list(imgui.get_platform_io().textures)
    statuses = [t.status for t in textures]
    assert max(t.unique_id for t in textures) > 1, (
        "the atlas never grew; the test no longer covers WantCreate"
    )
    assert all(s == imgui.ImTextureStatus.ok for s in statuses), statuses
    assert all(t.tex_id for t in textures)
    assert renderer.texture_count == len(textures), "GL textures leaked or missing"

    renderer.release()
    assert renderer.texture_count == 0
    for t in imgui.get_platform_io().textures:
        # Destroyed by the renderer; ImGui turns that into WantCreate while it still has the pixels.
        assert t.tex_id == 0 and t.status in (
            imgui.ImTextureStatus.destroyed,
            imgui.ImTextureStatus.want_create,
        )
    fresh = ImGuiRenderer(ctx)  # a new renderer recreates what the old one destroyed
    try:
        render((ctx, backend, fresh), gui, frames=2)
        assert fresh.texture_count == len(imgui.get_platform_io().textures) >= 1
    finally:
        fresh.release()
    renderer.release = lambda: None  # already released; the fixture calls it again
    assert not (tmp_path / "imgui.ini").exists()


def test_render_restores_viewport_and_scissor(ui):
    ctx, backend, renderer = ui
    fbo = ctx.simple_framebuffer((64, 48))
    try:
        fbo.use()
        fbo.viewport = (0, 0, 32, 24)
        backend.new_frame((64, 48))
        fixed_window("w", (0, 0), (40, 40))
        imgui.end()
        renderer.render(backend.render())
        assert fbo.viewport == (0, 0, 32, 24)
        fbo.viewport = (0, 0, 64, 48)
        fbo.clear(1.0, 1.0, 1.0, 1.0)  # would be clipped if ImGui's last scissor rect were still on
        pixels = np.frombuffer(fbo.read(components=3), np.uint8)
        assert pixels.min() == 255
    finally:
        release_framebuffer(ctx, fbo)


def test_empty_frame_and_zero_size_display_draw_nothing(ui):
    ctx, backend, renderer = ui
    backend.new_frame((0, 0))
    renderer.render(backend.render())  # must not raise
    px = render(ui, lambda: None, size=(32, 32))
    assert np.all(px == CLEAR_U8)


class _Vec:
    def __init__(self, *v):
        self.x, self.y = v[0], v[1]
        if len(v) == 4:
            self.z, self.w = v[2], v[3]


class _Buffer:
    def __init__(self, array: np.ndarray):
        self.array = np.ascontiguousarray(array)

    def size(self) -> int:
        return len(self.array)

    def data_address(self) -> int:
        return self.array.ctypes.data


class _Cmd:
    def __init__(self, tex_id, elem_count, idx_offset, vtx_offset, clip):
        self.elem_count, self.idx_offset, self.vtx_offset, self.clip_rect = (
            elem_count,
            idx_offset,
            vtx_offset,
            clip,
        )
        self._tex_id = tex_id

    def get_tex_id(self) -> int:
        return self._tex_id


def test_vtx_offset_and_list_offsets_address_the_right_vertices(ui):
    """Draw data as ImGui would send it with large meshes split by VtxOffset (a real frame never
    splits with 32-bit indices, so it is built by hand): two lists, the second with two commands
    whose indices restart at 0 and reach their quads only through vtx_offset."""
    ctx, _, renderer = ui
    white = UiTexture(ctx, (1, 1), 1)
    white.upload(np.ones((1, 1), np.float32))
    vert = np.dtype([("pos", "<f4", 2), ("uv", "<f4", 2), ("col", "u1", 4)])

    def quad(x0, y0, x1, y1, rgba):
        v = np.zeros(4, vert)
        v["pos"] = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        v["uv"] = 0.5
        v["col"] = rgba
        return v

    full = _Vec(0, 0, 64, 64)
    quad_idx = np.array([0, 1, 2, 0, 2, 3], np.uint32)
    list_a = type("L", (), {})()
    list_a.vtx_buffer = _Buffer(quad(0, 0, 32, 32, (255, 0, 0, 255)))
    list_a.idx_buffer = _Buffer(quad_idx)
    list_a.cmd_buffer = [_Cmd(white.glo, 6, 0, 0, full)]
    list_b = type("L", (), {})()
    list_b.vtx_buffer = _Buffer(
        np.concatenate([quad(32, 0, 64, 32, (0, 255, 0, 255)), quad(0, 32, 32, 64, (0, 0, 255, 255))])
    )
    list_b.idx_buffer = _Buffer(np.concatenate([quad_idx, quad_idx]))  # both reference vertices 0..3
    list_b.cmd_buffer = [_Cmd(white.glo, 6, 0, 0, full), _Cmd(white.glo, 6, 6, 4, full)]
    draw_data = type("D", (), {})()
    draw_data.textures = []
    draw_data.display_pos, draw_data.display_size, draw_data.framebuffer_scale = (
        _Vec(0, 0),
        _Vec(64, 64),
        _Vec(1, 1),
    )
    draw_data.cmd_lists = [list_a, list_b]
    draw_data.total_vtx_count, draw_data.total_idx_count = 12, 18
    fbo = ctx.simple_framebuffer((64, 64))
    try:
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 1.0)
        renderer.render(draw_data)
        px = np.frombuffer(fbo.read(components=3), np.uint8).reshape(64, 64, 3)[::-1]
    finally:
        renderer.forget_texture(white.glo)
        release_framebuffer(ctx, fbo)
        white.release()
    assert near(px[16, 16], (255, 0, 0)) and near(px[16, 48], (0, 255, 0))
    assert near(px[48, 16], (0, 0, 255)), "the command with vtx_offset=4 drew the wrong vertices"
    assert near(px[48, 48], (0, 0, 0))
