"""The View settings (engine/ui/settings.py and their use in engine/app.py): the UI scale is saved whole
to settings.json under $XDG_CONFIG_HOME/convscope and read back; a corrupt file gives the defaults and
one warning line; Ctrl+= / Ctrl+- / Ctrl+0 and F5 in a headless explorer change the scale ImGui and the
scene use, presentation mode folds the panels and frees the view.  Screenshots:
out/screens/settings_presentation.png.
"""

from __future__ import annotations

import json

import glfw
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.ui.input import KEY_PRESS, KEY_RELEASE, MOD_CONTROL
from convscope.engine.ui.settings import (
    PRESENTATION_SCALE,
    SCALE_MAX,
    UiPrefs,
    load_prefs,
    save_prefs,
    settings_path,
)


def test_the_settings_file_lives_in_the_config_folder_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = settings_path()
    assert path == tmp_path / "convscope" / "settings.json"
    assert load_prefs() == UiPrefs(), "no file: the defaults"
    save_prefs(UiPrefs(ui_scale=1.25, presentation=True))
    assert json.loads(path.read_text()) == {"ui_scale": 1.25}, "presentation mode is not remembered"
    assert load_prefs() == UiPrefs(ui_scale=1.25)
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"], "no temporary file left"
    save_prefs(UiPrefs(ui_scale=99.0))
    assert load_prefs().ui_scale == SCALE_MAX


@pytest.mark.parametrize("text", ["{not json", '{"ui_scale": "big"}', "[1, 2]", '{"ui_scale": NaN}'])
def test_a_corrupt_settings_file_is_ignored_with_one_warning(tmp_path, capsys, text):
    path = tmp_path / "settings.json"
    path.write_text(text)
    assert load_prefs(path) == UiPrefs()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("convscope: warning: ") and str(path) in err[0], err


def test_an_unwritable_config_folder_raises_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot"):
        save_prefs(UiPrefs(ui_scale=1.5), blocker / "convscope" / "settings.json")


def _press(app: App, key: int, mods: int = 0, frames: int = 2) -> None:
    app.headless_input.on_key(key, KEY_PRESS, mods)
    app.headless_input.on_key(key, KEY_RELEASE, mods)
    for _ in range(frames):
        app.frame()
        app.ctx.finish()


@pytest.mark.gl
def test_keys_change_the_ui_scale_and_presentation_mode_folds_the_panels(ctx, tmp_path, monkeypatch):
    from convscope.scenes.explore.scene import FREE_MIN_FRACTION, ExploreScene
    from ui_driver import save

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    scene = ExploreScene(AppConfig(pad_size=280))
    app = App(scene, ctx=ctx, size=(1280, 720), remember_ui=True)
    try:
        for _ in range(4):
            app.frame()
        assert app.ui_scale == pytest.approx(1.0) and scene.ui_scale == pytest.approx(1.0)
        free = scene.panels.free(FREE_MIN_FRACTION)
        _press(app, glfw.KEY_EQUAL, MOD_CONTROL)
        assert app.ui_scale == pytest.approx(1.1) and scene.ui_scale == pytest.approx(1.1)
        assert json.loads(settings_path().read_text())["ui_scale"] == pytest.approx(1.1)
        _press(app, glfw.KEY_MINUS, MOD_CONTROL)
        _press(app, glfw.KEY_MINUS, MOD_CONTROL)
        assert app.ui_scale == pytest.approx(1 / 1.1)
        _press(app, glfw.KEY_0, MOD_CONTROL)
        assert app.ui_scale == pytest.approx(1.0)
        assert load_prefs().ui_scale == pytest.approx(1.0)

        _press(app, glfw.KEY_F5, frames=6)
        assert app.presentation and app.ui_scale == pytest.approx(PRESENTATION_SCALE)
        assert {"Draw a digit", "Network"} <= scene.panels.collapsed
        for name in ("Draw a digit", "Network"):
            r = scene.panels.rect(name)
            assert r.h < 60 * PRESENTATION_SCALE, f"{name} should be a title bar only, is {r.h:.0f} high"
        wide = scene.panels.free(FREE_MIN_FRACTION)
        assert wide.w * wide.h > 1.3 * free.w * free.h, (free, wide)
        save(app.read_pixels(), tmp_path, "settings", "presentation")
        assert load_prefs().ui_scale == pytest.approx(1.0), (
            "presentation mode does not change the remembered scale"
        )
        _press(app, glfw.KEY_F5, frames=12)
        assert not app.presentation and not scene.panels.collapsed & {"Draw a digit", "Network"}
        assert scene.panels.free(FREE_MIN_FRACTION).w == pytest.approx(free.w, abs=2), scene.panels.rects
    finally:
        app.close()


@pytest.mark.gl
def test_headless_runs_neither_read_nor_write_the_settings(ctx, tmp_path, monkeypatch):
    from convscope.scenes.explore.scene import ExploreScene

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    save_prefs(UiPrefs(ui_scale=2.0))
    app = App(ExploreScene(AppConfig(pad_size=280)), ctx=ctx, size=(640, 480))
    try:
        app.frame()
        assert app.ui_scale == pytest.approx(1.0), "a screenshot run must not depend on the user's settings"
    finally:
        app.close()


def test_the_scene_switch_hands_the_ui_scale_to_every_scene():
    from convscope.scenes.train.switch import SceneSwitch

    class Dummy:
        def __init__(self) -> None:
            self.ui_scale = 1.0

    switch = SceneSwitch({"A": Dummy, "B": Dummy}, "A", 1.0)
    switch.ui_scale = 1.5
    assert switch.scenes["A"].ui_scale == 1.5
    switch.wanted = "B"
    switch._fc = None
    switch.scenes["B"] = Dummy()  # built later, like a first switch to it
    switch.ui_scale = 1.21
    assert [s.ui_scale for s in switch.scenes.values()] == [1.21, 1.21]
