"""The embedding panel (features/embedding/panel.py): its layout state (animation, id matching, refresh and
selection events), tooltip pictures, and the ImGui + ImPlot panel rendered headless with our moderngl
ImGuiRenderer into an OffscreenTarget, with hover / click linking driven by scripted pointer events.

Screenshots: out/screens/embed_panel_filters.png and embed_panel_images.png (look at them after a change).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from convscope.engine.ui.backend import UiBackend
from convscope.engine.ui.input import MOUSE_LEFT, InputCollector
from convscope.features.embedding.panel import (
    IMAGES,
    SELECTED_RGB,
    EmbedPanelState,
    gui_embed,
    thumbnails,
)
from imgui_bundle import imgui
from PIL import Image

SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"
SIZE = (520, 560)


def circle_layout(n: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False) + phase
    return np.stack([radius * np.cos(a), radius * np.sin(a)], 1).astype(np.float32)


# -- state, no ImGui ------------------------------------------------------------------------------------


def test_show_animates_from_drawn_positions_matched_by_id():
    s = EmbedPanelState(animation_s=0.5)
    a = circle_layout(4)
    s.show(np.arange(4), a, kind="coefficients", layer="conv1")
    s._t = 1.0
    np.testing.assert_allclose(s.positions(), a)
    # New layout with ids in another order, one id gone (2) and one new (9).
    ids = np.array([3, 0, 9, 1])
    b = np.array([[0, 5], [5, 0], [7, 7], [-5, 0]], np.float32)
    s.show(ids, b, kind="coefficients", layer="conv1")
    assert s.animating
    start = s.positions()
    np.testing.assert_allclose(start[[0, 1, 3]], a[[3, 0, 1]], atol=1e-6)  # from where they were drawn
    np.testing.assert_allclose(start[2], b[2])  # a new point starts at its target
    s._t = 0.5
    np.testing.assert_allclose(s.positions()[1], (a[0] + b[1]) / 2, atol=1e-6)  # smoothstep(0.5) = 0.5
    s._t = 1.0
    np.testing.assert_allclose(s.positions(), b)
    # Another layer's filters share the ids but not their meaning: no move from the old points.
    c = circle_layout(4, 3.0)
    s.show(np.arange(4), c, kind="coefficients", layer="conv2")
    np.testing.assert_allclose(s.positions(), c)


def test_refresh_and_selection_events_fire_once():
    s = EmbedPanelState(refresh_every=10)
    assert s.take_refresh() and not s.take_refresh(), "the first frame asks for one layout"
    assert not s.refresh_due(100)  # the count starts here
    assert not s.refresh_due(109) and s.refresh_due(110) and not s.refresh_due(111)
    assert s.refresh_due(3), "a step counter that went back (reset) restarts the count"
    s.refresh_every = 0
    assert not s.refresh_due(10_000)
    assert not s.take_selection()
    s.set_layers(["conv1", "conv2"], ["conv1", "pool2"])
    assert s.layer == "conv1" and s.image_layer == "pool2"
    assert s.view == ("coefficients", "conv1")
    s.mode = IMAGES
    assert s.view == (IMAGES, "pool2")


def test_thumbnails_shapes_and_scale():
    rng = np.random.default_rng(0)
    rgb = thumbnails("coefficients", rng.normal(size=(4, 3 * 25)), (3, 5, 5))
    assert rgb.shape == (4, 5, 5, 3) and 0 <= rgb.min() and rgb.max() <= 1
    tiled = thumbnails("filter_gradients", rng.normal(size=(2, 6 * 25)), (6, 5, 5))
    assert tiled.shape == (2, 3 * 6 - 1, 3 * 6 - 1)
    rows = np.zeros((2, 16))
    rows[0, 5] = 2.0
    maps = thumbnails("activations", rows, (4, 4))
    assert maps.shape == (2, 4, 4) and maps[0, 1, 1] == 1.0 and maps[1].max() == 0.0
    grads = thumbnails("activation_gradients", -rows, (4, 4))
    assert grads[0, 1, 1] == 0.0 and grads[1, 0, 0] == 0.5, "signed kinds put 0 at mid grey"


# -- the panel through ImGui -----------------------------------------------------------------------------


class Harness:
    """One fixed ImGui window holding the panel; `frame(*events)` runs one frame (GL optional)."""

    def __init__(self, state: EmbedPanelState, ctx=None) -> None:
        self.state = state
        self.ui = UiBackend()  # makes the ImPlot context too
        self.input = InputCollector(SIZE, SIZE)
        self.textures = None
        self.ctx = ctx
        if ctx is not None:
            from convscope.engine.gpu.frame import OffscreenTarget
            from convscope.engine.gpu.imgui_renderer import ImGuiRenderer

            self.renderer = ImGuiRenderer(ctx)
            self.target = OffscreenTarget(ctx, *SIZE)

    def frame(self, *events, dt: float = 1 / 60) -> np.ndarray | None:
        for kind, *args in events:
            getattr(self.input, f"on_{kind}")(*args)
        self.ui.new_frame(SIZE, (1, 1), dt, self.input.snapshot())
        imgui.set_next_window_pos((0, 0))
        imgui.set_next_window_size(SIZE)
        imgui.begin("Embedding", None, imgui.WindowFlags_.no_saved_settings | imgui.WindowFlags_.no_collapse)
        gui_embed(self.state, self.textures)
        imgui.end()
        draw_data = self.ui.render()
        if self.ctx is None:
            return None
        self.target.use()
        self.target.clear((0.05, 0.05, 0.08, 1.0))
        self.renderer.render(draw_data)
        return self.target.read()

    def click(self, x: float, y: float) -> None:
        self.frame(("cursor_pos", x, y))
        self.frame(("mouse_button", MOUSE_LEFT, True, 0))
        self.frame(("mouse_button", MOUSE_LEFT, False, 0))

    def settle(self) -> None:
        """Frames until the animation is over and the axes have fitted."""
        for _ in range(3):
            self.frame(dt=1.0)

    def close(self) -> None:
        if self.ctx is not None:
            self.renderer.release()
            self.target.release()
        self.ui.destroy()


def filter_state() -> EmbedPanelState:
    s = EmbedPanelState(animation_s=0.5)
    s.set_layers(["conv1", "conv2", "conv3"], ["conv3", "pool3"])
    s.layer = "conv2"
    pts = np.concatenate([circle_layout(10, 0.5) + [-1.2, 0], circle_layout(10, 0.5) + [1.2, 0]])
    s.show(np.arange(20), pts, kind="coefficients", layer="conv2")
    return s


def test_hover_and_click_link_the_selection_both_ways():
    h = Harness(filter_state())
    try:
        s = h.state
        h.settle()
        # Scene -> panel: the scene selects filter 3 in 3D; the panel draws the ring (checked by pixel in
        # the GL test) and reports no user selection.
        s.selected_filter = 3
        h.frame()
        assert not s.take_selection()
        # Panel -> scene: hover filter 14, then click it.
        x, y = s.pixel_of(14)
        h.frame(("cursor_pos", x + 2, y - 1))
        h.frame()
        assert s.hovered == 14, f"hovered {s.hovered} at ({x:.0f}, {y:.0f})"
        h.frame(("mouse_button", MOUSE_LEFT, True, 0))
        h.frame(("mouse_button", MOUSE_LEFT, False, 0))
        assert s.selected_filter == 14 and s.take_selection() and not s.take_selection()
        # Away from every point: nothing hovered, a click selects nothing.
        x0, y0, x1, y1 = s.plot_rect
        h.frame(("cursor_pos", (x0 + x1) / 2, y0 + 6))
        h.frame(("mouse_button", MOUSE_LEFT, True, 0))
        h.frame(("mouse_button", MOUSE_LEFT, False, 0))
        assert s.hovered is None and s.selected_filter == 14 and not s.take_selection()
        # A drag that starts on a point pans the plot and selects nothing.
        x, y = s.pixel_of(2)
        h.frame(("cursor_pos", x, y))
        h.frame(("mouse_button", MOUSE_LEFT, True, 0))
        h.frame(("cursor_pos", x + 40, y + 30))
        h.frame(("mouse_button", MOUSE_LEFT, False, 0))
        assert s.selected_filter == 14 and not s.take_selection()
    finally:
        h.close()


def test_controls_ask_for_a_refresh():
    h = Harness(filter_state())
    try:
        s = h.state
        h.frame()
        assert s.take_refresh(), "the first frame asks for a layout"
        h.frame()
        assert not s.take_refresh()
        h.click(*s.widget_centers["activations"])
        assert s.kind == "activations" and s.view == ("activations", "conv2") and s.take_refresh()
        h.click(*s.widget_centers["refresh"])
        assert s.take_refresh() and not s.take_refresh()
        h.click(*s.widget_centers[IMAGES])
        assert s.mode == IMAGES and s.view == (IMAGES, "pool3") and s.take_refresh()
        # The filter layout is not offered as images: nothing to hover until the images' layout arrives.
        s.plot_rect = (0.0, 0.0, 0.0, 0.0)
        h.frame()
        assert s.plot_rect == (0.0, 0.0, 0.0, 0.0) and s.hovered is None
        assert "compute" in s.widget_centers and "refresh" in s.widget_centers
    finally:
        h.close()


@pytest.mark.gl
def test_panel_renders_headless_with_selection_ring_and_tooltip():
    from convscope.engine.gpu.imgui_renderer import UiTexture
    from convscope.features.embedding.panel import FILTER_RGB
    from gl_helpers import gl_context

    ctx = gl_context()
    h = Harness(filter_state(), ctx)
    thumbs = thumbnails("coefficients", np.random.default_rng(0).normal(size=(20, 3 * 25)), (3, 5, 5))
    textures = {}
    try:
        for i, t in enumerate(thumbs):
            textures[i] = UiTexture(ctx, (5, 5), 3, smooth=False)
            textures[i].upload(t)
        h.textures = {i: t.ref for i, t in textures.items()}
        s = h.state
        s.selected_filter = 3
        s.status = "20 filters - openTSNE - 48 ms"
        h.settle()
        x, y = s.pixel_of(7)
        h.frame(("cursor_pos", x, y))
        h.frame()  # a tooltip window is measured in its first frame and shown from the next
        frame = h.frame()
        SCREENS.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(SCREENS / "embed_panel_filters.png")
        assert s.hovered == 7

        def colour_near(px, py, rgb, radius=9, tol=40) -> int:
            x0, y0 = int(px) - radius, int(py) - radius
            patch = frame[max(y0, 0) : int(py) + radius + 1, max(x0, 0) : int(px) + radius + 1].astype(int)
            target = np.array(rgb) * 255
            return int((np.abs(patch - target).max(-1) <= tol).sum())

        for i in range(20):
            if i in (3, 7):
                continue
            px, py = s.pixel_of(i)
            assert colour_near(px, py, FILTER_RGB, 3) > 0, f"filter {i} not drawn at ({px:.0f}, {py:.0f})"
        px, py = s.pixel_of(3)
        assert colour_near(px, py, SELECTED_RGB) > 4, "the selected filter has no ring"
        px, py = s.pixel_of(12)
        assert colour_near(px, py, SELECTED_RGB) == 0, "an unselected filter has a ring"
        # The tooltip shows filter 7's picture: some pixel right-below the pointer has its colours.
        x, y = s.pixel_of(7)
        below = frame[int(y) + 10 : int(y) + 160, int(x) : int(x) + 150].reshape(-1, 3).astype(int)
        center = (thumbs[7][2, 2] * 255).astype(int)
        assert (np.abs(below - center).max(-1) <= 3).sum() > 50, "no tooltip picture of filter 7"
    finally:
        for t in textures.values():
            t.release()
        h.close()


@pytest.mark.gl
def test_images_mode_renders_classes_legend_and_progress():
    from convscope.engine.gpu.imgui_renderer import UiTexture
    from convscope.features.embedding.panel import PALETTE
    from gl_helpers import gl_context

    ctx = gl_context()
    s = EmbedPanelState(mode=IMAGES, animation_s=0.5, class_names=tuple(str(i) for i in range(10)))
    s.set_layers(["conv1"], ["conv1", "pool3"])
    rng = np.random.default_rng(0)
    n = 2000
    labels = rng.integers(0, 10, n)
    centers = circle_layout(10, 1.3)
    pts = centers[labels] + rng.normal(0, 0.15, (n, 2)).astype(np.float32)
    s.show(np.arange(n) + 100, pts, kind=IMAGES, layer="pool3", labels=labels, final=False)
    s.set_progress(0.42, "optimize")
    h = Harness(s, ctx)
    # The scene's way for many images: one texture, filled with the hovered image, answering only for it.
    hover_texture = UiTexture(ctx, (8, 8), 1, smooth=False)
    hover_texture.upload(np.tile(np.linspace(0.0, 1.0, 8, dtype=np.float32), (8, 1)))
    shown: list[int] = []

    def texture_of(point_id: int):
        shown.append(point_id)
        return hover_texture.ref if point_id == s.hovered else None

    h.textures = texture_of
    try:
        h.settle()
        x, y = s.pixel_of(100 + int(np.flatnonzero(labels == 4)[0]))
        h.frame(("cursor_pos", x, y))
        h.frame()
        frame = h.frame()
        Image.fromarray(frame).save(SCREENS / "embed_panel_images.png")
        assert s.hovered is not None and s.hovered >= 100 and shown[-1] == s.hovered
        # The tooltip's picture: the grey ramp, white at its right end, somewhere right-below the pointer.
        below = frame[int(y) + 10 : int(y) + 170, int(x) : int(x) + 200].reshape(-1, 3).astype(int)
        assert (below.min(-1) >= 250).sum() > 20, "no hover picture in the tooltip"
        for c in (0, 4, 9):
            cx, cy = s.to_pixels(centers[c])[0]
            patch = frame[int(cy) - 6 : int(cy) + 7, int(cx) - 6 : int(cx) + 7].reshape(-1, 3).astype(int)
            target = np.array(PALETTE[c]) * 255
            assert (np.abs(patch - target).max(-1) <= 40).sum() > 5, f"class {c} cluster not in its colour"
        # Click selects an image (not a filter).
        h.frame(("mouse_button", MOUSE_LEFT, True, 0))
        h.frame(("mouse_button", MOUSE_LEFT, False, 0))
        assert s.selected_image == s.hovered and s.selected_filter is None and s.take_selection()
    finally:
        hover_texture.release()
        h.close()


def test_render_side_modules_import_no_torch_and_no_tsne_library():
    code = (
        "import sys, convscope.features.embedding.panel, convscope.features.embedding.handle; "
        "bad = [m for m in ('torch', 'sklearn', 'openTSNE') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
