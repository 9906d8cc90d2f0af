"""What the app remembers about how it looks between runs, and the View controls that change it.

Owns `UiPrefs` (the user's UI-scale factor, on top of the config's ui_scale and the monitor's DPI hint),
its file (`settings.json` in `$XDG_CONFIG_HOME/convscope/`, else `~/.config/convscope/`), `load_prefs` /
`save_prefs` (written whole through engine/files.atomic_write; a missing file gives the defaults, a
corrupt one the defaults and one warning line on stderr), the keys (`scale_step`: Ctrl+= / Ctrl++ larger,
Ctrl+- smaller, Ctrl+0 back to 1; `presentation_toggled`: F5) and `gui_view_row`, the "UI scale - 1.00 +"
and "presentation (F5)" row a scene puts in one of its panels.  Presentation mode itself is not
remembered: a lecture ends, and the next run should open the normal way.  No GL here; the app applies
the values (engine/app.py).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import glfw
from convscope.engine.files import OutputError, atomic_write
from convscope.engine.ui.input import MOD_CONTROL, MOD_SHIFT, InputState
from imgui_bundle import imgui

SCALE_MIN, SCALE_MAX = 0.5, 3.0  # the remembered factor's range: smaller is unreadable, larger leaves no view
SCALE_STEP = 1.1  # one key press or button click: 10 % larger or smaller
PRESENTATION_SCALE = 1.5  # presentation mode's type, relative to the normal scale
FILE_NAME = "settings.json"


@dataclass
class UiPrefs:
    ui_scale: float = 1.0  # the user's factor on the UI scale; remembered across runs
    presentation: bool = False  # big type, panels folded to their title bars; not remembered


def clamp_scale(value: float) -> float:
    return float(min(max(value, SCALE_MIN), SCALE_MAX))


def config_dir() -> Path:
    """$XDG_CONFIG_HOME/convscope, else ~/.config/convscope."""
    env = os.environ.get("XDG_CONFIG_HOME")
    base = Path(env).expanduser() if env else Path.home() / ".config"
    return base / "convscope"


def settings_path() -> Path:
    return config_dir() / FILE_NAME


def load_prefs(path: Path | None = None) -> UiPrefs:
    """The remembered settings; the defaults when there is no file, and with one warning line when the
    file cannot be read or makes no sense (the next save replaces it)."""
    path = settings_path() if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return UiPrefs()
    except (OSError, UnicodeDecodeError) as exc:
        return _ignored(path, str(exc))
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        return _ignored(path, f"not JSON ({exc})")
    scale = values.get("ui_scale", 1.0) if isinstance(values, dict) else None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale == scale:
        return _ignored(path, f"ui_scale should be a number, got {scale!r}")
    return UiPrefs(ui_scale=clamp_scale(scale))


def _ignored(path: Path, why: str) -> UiPrefs:
    print(f"convscope: warning: {path}: {why}; using the default settings", file=sys.stderr)
    return UiPrefs()


def save_prefs(prefs: UiPrefs, path: Path | None = None) -> Path:
    """Write the remembered part of `prefs` whole (the folder made if missing); raises OutputError."""
    path = settings_path() if path is None else Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {path.parent} ({exc.strerror or exc})") from None
    body = json.dumps({"ui_scale": round(clamp_scale(prefs.ui_scale), 4)}, indent=2) + "\n"
    return atomic_write(path, body.encode("utf-8"))


def scale_step(inp: InputState) -> float | None:
    """The factor a key asks for this frame: Ctrl+= or Ctrl++ (with or without Shift, and the keypad's
    +) one step up, Ctrl+- one down, Ctrl+0 back to 1 (returned as 0); None when no such key came."""
    for mods in (MOD_CONTROL, MOD_CONTROL | MOD_SHIFT):
        if inp.chord_pressed(glfw.KEY_EQUAL, mods) or inp.chord_pressed(glfw.KEY_KP_ADD, mods):
            return SCALE_STEP
        if inp.chord_pressed(glfw.KEY_MINUS, mods) or inp.chord_pressed(glfw.KEY_KP_SUBTRACT, mods):
            return 1.0 / SCALE_STEP
    if inp.chord_pressed(glfw.KEY_0, MOD_CONTROL) or inp.chord_pressed(glfw.KEY_KP_0, MOD_CONTROL):
        return 0.0
    return None


def presentation_toggled(inp: InputState) -> bool:
    return inp.chord_pressed(glfw.KEY_F5)


def gui_view_row(prefs: UiPrefs) -> None:
    """'UI scale  -  110 %  +' and the presentation checkbox, inside the caller's panel; edits `prefs`
    only (the app notices the change, applies it and saves the scale)."""
    imgui.align_text_to_frame_padding()
    imgui.text("UI scale")
    imgui.same_line()
    if imgui.small_button(" - ##ui_scale_down"):
        prefs.ui_scale = clamp_scale(prefs.ui_scale / SCALE_STEP)
    imgui.same_line()
    imgui.text(f"{100 * prefs.ui_scale:3.0f} %")
    imgui.same_line()
    if imgui.small_button(" + ##ui_scale_up"):
        prefs.ui_scale = clamp_scale(prefs.ui_scale * SCALE_STEP)
    imgui.same_line()
    _, prefs.presentation = imgui.checkbox("presentation (F5)", prefs.presentation)
