"""The app-wide keys in a real (headless) explorer: F1 and `?` open the help overlay (pixels: a dark panel
over the scene, listing the scene's controls), Esc and F1 close it, an app without shortcuts (the kiosk)
ignores them; Ctrl+S writes a screenshot PNG of the frame and says so; Ctrl+Z / Ctrl+Y undo and redo the
pad.  Screenshots: out/screens/help_<w>x<h>.png.
"""

from __future__ import annotations

import glfw
import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.ui.input import KEY_PRESS, KEY_RELEASE, MOD_CONTROL, MOD_SHIFT
from convscope.scenes.explore.scene import ExploreScene
from PIL import Image
from ui_driver import SCREENS, frame

pytestmark = pytest.mark.gl


def press(app: App, key: int, mods: int = 0) -> None:
    sink = app.headless_input
    sink.on_key(key, KEY_PRESS, mods)
    sink.on_key(key, KEY_RELEASE, mods)
    frame(app)


def typed(app: App, text: str) -> None:
    for ch in text:
        app.headless_input.on_char(ord(ch))
    frame(app)


def help_pixels(app: App) -> np.ndarray:
    x, y, w, h = (int(v) for v in app.shortcuts.help_rect)
    return app.read_pixels()[y + 30 : y + h - 4, x + 4 : x + w - 4]


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_f1_and_question_mark_open_the_help_and_esc_closes_it(ctx, size):
    scene = ExploreScene(AppConfig(pad_size=280))
    app = App(scene, ctx=ctx, size=size)
    try:
        for _ in range(3):
            frame(app)
        before = app.read_pixels().copy()
        press(app, glfw.KEY_F1)
        frame(app)
        assert app.shortcuts.help_open and app.shortcuts.help_rect is not None
        shot = app.read_pixels().copy()
        SCREENS.mkdir(parents=True, exist_ok=True)
        Image.fromarray(shot).save(SCREENS / f"help_{size[0]}x{size[1]}.png")
        x, y, w, h = app.shortcuts.help_rect
        assert 0 <= x and 0 <= y and x + w <= size[0] and y + h <= size[1], "help off screen"
        inside = help_pixels(app)
        # The overlay's dark background covers most of its rect, with light text on it.
        dark = (inside.max(axis=-1) < 50).mean()
        light = (inside.min(axis=-1) > 150).mean()
        assert dark > 0.5 and light > 0.01, (dark, light)
        assert np.abs(shot.astype(int) - before).max(-1).astype(bool).mean() > 0.1, "nothing drawn"
        press(app, glfw.KEY_ESCAPE)
        frame(app)
        assert not app.shortcuts.help_open
        typed(app, "?")
        assert app.shortcuts.help_open
        press(app, glfw.KEY_F1)
        assert not app.shortcuts.help_open
        rows = [r for s in app.help_sections() for r in s.rows]
        assert any("Ctrl+Z" in key for key, _ in rows) and len(rows) > 20
    finally:
        app.close()


def test_no_shortcuts_no_help(ctx):
    """An app built without shortcuts (the kiosk passes quit_chord=False) keeps F1 and Ctrl+S inert."""
    scene = ExploreScene(AppConfig(pad_size=280))
    app = App(scene, ctx=ctx, size=(640, 480), quit_chord=False)
    try:
        frame(app)
        press(app, glfw.KEY_F1)
        press(app, glfw.KEY_S, MOD_CONTROL)
        assert not app.shortcuts.help_open and app.last_screenshot is None
    finally:
        app.close()


def test_ctrl_s_saves_a_screenshot_and_says_so(ctx, tmp_path):
    scene = ExploreScene(AppConfig(pad_size=280))
    app = App(scene, ctx=ctx, size=(800, 600))
    app.screenshot_root = tmp_path
    try:
        frame(app)
        press(app, glfw.KEY_S, MOD_CONTROL)
        path = app.last_screenshot
        assert path is not None and path.parent == tmp_path / "screenshots" and path.suffix == ".png"
        img = np.asarray(Image.open(path))
        assert img.shape == (600, 800, 3) and img.std() > 5, "an empty screenshot"
        assert app.shortcuts.note.startswith("saved ")
        press(app, glfw.KEY_PRINT_SCREEN)
        assert app.last_screenshot != path and app.last_screenshot.exists(), "a second name for a second shot"
    finally:
        app.close()


def test_ctrl_z_and_ctrl_y_undo_and_redo_the_pad(ctx):
    scene = ExploreScene(AppConfig(pad_size=280))
    app = App(scene, ctx=ctx, size=(800, 600))
    try:
        frame(app)
        pad = scene.pad
        pad.begin_stroke(100, 50)
        pad.stroke_to(120, 230)
        pad.end_stroke()
        drawn = pad.canvas.copy()
        scene.robust.request_shift(8, 0)  # 8 network pixels to the right: the stroke's edge survives
        frame(app)
        shifted = pad.canvas.copy()
        assert not np.array_equal(shifted, drawn)
        press(app, glfw.KEY_Z, MOD_CONTROL)
        np.testing.assert_array_equal(pad.canvas, drawn)
        press(app, glfw.KEY_Y, MOD_CONTROL)
        np.testing.assert_array_equal(pad.canvas, shifted)
        press(app, glfw.KEY_Z, MOD_CONTROL)
        press(app, glfw.KEY_Z, MOD_CONTROL | MOD_SHIFT)
        np.testing.assert_array_equal(pad.canvas, shifted)
        press(app, glfw.KEY_Z, MOD_CONTROL)
        press(app, glfw.KEY_Z, MOD_CONTROL)
        assert pad.is_empty()
    finally:
        app.close()
