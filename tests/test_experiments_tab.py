"""The explorer's Experiments panel, folded at the bottom right: a tab as wide as its title, the same
before and after presentation mode (after F5 on and off it was 16 px wide, showing only "E"), and a
click on it opens the panel on screen.  Headless scene at 1600 x 900.
"""

from __future__ import annotations

import glfw
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.ui.input import KEY_PRESS, KEY_RELEASE
from convscope.scenes.explore.scene import ExploreScene
from ui_driver import click, frame

pytestmark = pytest.mark.gl
SIZE = (1600, 900)


def press(app: App, key: int) -> None:
    app.headless_input.on_key(key, KEY_PRESS, 0)
    app.headless_input.on_key(key, KEY_RELEASE, 0)
    frame(app)


def test_the_folded_experiments_tab_keeps_its_title_through_presentation_mode(ctx):
    scene = ExploreScene(AppConfig(pad_size=280))
    app = App(scene, ctx=ctx, size=SIZE)
    try:
        for _ in range(6):
            frame(app)
        layout = scene.panels
        tab = layout.rect("Experiments")
        assert "Experiments" in layout.collapsed
        assert tab.w >= layout.tab_width("Experiments") - 1 and tab.w < 250, tab
        assert tab.right <= SIZE[0] and tab.bottom <= SIZE[1]
        press(app, glfw.KEY_F5)
        for _ in range(6):
            frame(app)
        press(app, glfw.KEY_F5)
        for i in range(6):
            frame(app)
            after = layout.rect("Experiments")
            assert abs(after.w - tab.w) <= 1 and after.right <= SIZE[0], (i, after, tab)
        assert abs(after.x - tab.x) <= 1, (after, tab)
        assert "Experiments" in layout.collapsed, "a panel folded before presentation mode stays folded"
        click(app, after.x + 12, after.y + after.h / 2)  # its arrow (a title bar opens on a double click)
        for _ in range(4):
            frame(app)
        opened = layout.rect("Experiments")
        assert "Experiments" not in layout.collapsed and opened.h > 100, opened
        assert opened.x >= 0 and opened.y >= 0 and opened.right <= SIZE[0] and opened.bottom <= SIZE[1]
    finally:
        app.close()
