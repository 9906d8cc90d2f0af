"""The help overlay and the app-wide shortcuts: F1 or `?` lists every control of the current scene, Ctrl+S
or Print saves a screenshot, and a short "saved ..." note says where it went.

Owns `HelpSection` (what a scene hands over: a title and (control, what it does) rows), `Shortcuts` (the
overlay's open flag and the note; the app keeps one), the key tests (`help_toggled`, `help_closed`,
`screenshot_wanted`), `gui_help` (the overlay: one centred window over everything, a table per section)
and `screenshot_path` (where a new screenshot goes: a timestamped PNG in `screenshots/` under the user's
pictures folder, else under the working directory).

A scene offers help by having `help_sections() -> list[HelpSection]`; the app adds its own section (help,
screenshot, quit).  No GL and no files written here: the app reads the pixels and writes the PNG.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import glfw
from convscope.engine.ui.input import MOD_CONTROL, InputState
from imgui_bundle import imgui

NOTE_SECONDS = 4.0  # how long "saved ..." stays on screen
_KEY_RGBA = imgui.ImVec4(1.0, 0.85, 0.45, 1.0)
_DIM_RGBA = imgui.ImVec4(0.75, 0.78, 0.85, 1.0)
WINDOW_TITLE = "Help"


@dataclass(frozen=True)
class HelpSection:
    title: str
    rows: tuple[tuple[str, str], ...]  # (control or shortcut, what it does)


APP_SECTION = HelpSection(
    "Anywhere",
    (
        ("F1 or ?", "open / close this help (Esc closes it too)"),
        ("Ctrl+S or Print", "save a screenshot (screenshots/ in your Pictures folder)"),
        ("F5", "presentation mode: big type, panels folded to their title bars (click one to open it)"),
        ("Ctrl+= / Ctrl+-", "UI scale larger / smaller (remembered for the next run); Ctrl+0 back to 100 %"),
        ("Ctrl+Q", "quit"),
    ),
)


@dataclass
class Shortcuts:
    """What the app-wide keys left behind: the overlay's state and the note after a screenshot."""

    help_open: bool = False
    note: str = ""  # "saved ..." or why saving failed
    note_until: float = 0.0  # time.monotonic() when the note goes away
    note_is_error: bool = False
    help_rect: tuple[float, float, float, float] | None = field(default=None, repr=False)  # x, y, w, h drawn

    def show_note(self, text: str, error: bool = False) -> None:
        self.note, self.note_is_error = text, error
        self.note_until = time.monotonic() + NOTE_SECONDS


def help_toggled(inp: InputState, typing: bool) -> bool:
    """F1, or `?` typed while no text field has the keyboard."""
    return inp.chord_pressed(glfw.KEY_F1) or (not typing and "?" in inp.chars)


def help_closed(inp: InputState) -> bool:
    return inp.chord_pressed(glfw.KEY_ESCAPE)


def screenshot_wanted(inp: InputState) -> bool:
    return inp.chord_pressed(glfw.KEY_S, MOD_CONTROL) or inp.chord_pressed(glfw.KEY_PRINT_SCREEN)


def pictures_dir() -> Path | None:
    """The user's pictures folder (XDG_PICTURES_DIR, else ~/Pictures) when it exists."""
    env = os.environ.get("XDG_PICTURES_DIR")
    for candidate in (Path(env).expanduser() if env else None, Path.home() / "Pictures"):
        if candidate is not None and candidate.is_dir():
            return candidate
    return None


def screenshot_path(root: Path | None = None, now: float | None = None) -> Path:
    """A new file name `screenshots/convscope-YYYYMMDD-HHMMSS.png` under `root` (default: the pictures
    folder, else the working directory); `-2`, `-3`, ... when that second is taken already."""
    base = (root if root is not None else pictures_dir() or Path.cwd()) / "screenshots"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    path, n = base / f"convscope-{stamp}.png", 2
    while path.exists():
        path, n = base / f"convscope-{stamp}-{n}.png", n + 1
    return path


def gui_help(sc: Shortcuts, sections: list[HelpSection], scale: float) -> None:
    """The overlay, centred and over every panel; its close button (or F1 / Esc, handled by the app)
    closes it."""
    if not sc.help_open:
        sc.help_rect = None
        return
    io = imgui.get_io()
    w = min(640 * scale, io.display_size.x - 20 * scale)
    imgui.set_next_window_pos(
        imgui.ImVec2(io.display_size.x / 2, io.display_size.y / 2), imgui.Cond_.always, imgui.ImVec2(0.5, 0.5)
    )
    imgui.set_next_window_size_constraints(
        imgui.ImVec2(w, 0), imgui.ImVec2(w, max(io.display_size.y - 20 * scale, 100))
    )
    imgui.set_next_window_focus()
    flags = (
        imgui.WindowFlags_.always_auto_resize
        | imgui.WindowFlags_.no_collapse
        | imgui.WindowFlags_.no_saved_settings
        | imgui.WindowFlags_.no_move
    )
    imgui.push_style_color(imgui.Col_.window_bg, imgui.ImVec4(0.06, 0.07, 0.10, 0.97))
    _, keep = imgui.begin(f"{WINDOW_TITLE}  (F1 or Esc closes)###convscope_help", True, flags)
    imgui.pop_style_color()
    if not keep:
        sc.help_open = False
    key_width = 170 * scale
    for section in [*sections, APP_SECTION]:
        imgui.separator_text(section.title)
        table_flags = imgui.TableFlags_.sizing_fixed_fit | imgui.TableFlags_.row_bg
        if imgui.begin_table(f"##help_{section.title}", 2, table_flags):
            imgui.table_setup_column("key", imgui.TableColumnFlags_.width_fixed, key_width)
            imgui.table_setup_column("what", imgui.TableColumnFlags_.width_stretch)
            for key, what in section.rows:
                imgui.table_next_row()
                imgui.table_next_column()
                imgui.push_text_wrap_pos(imgui.get_cursor_pos_x() + key_width)
                imgui.text_colored(_KEY_RGBA, key)
                imgui.pop_text_wrap_pos()
                imgui.table_next_column()
                imgui.text_wrapped(what)
            imgui.end_table()
    pos, size = imgui.get_window_pos(), imgui.get_window_size()
    sc.help_rect = (pos.x, pos.y, size.x, size.y)
    imgui.end()


def draw_note(sc: Shortcuts, scale: float) -> None:
    """The note ("saved ...") at the top centre, over everything, until it times out."""
    if not sc.note or time.monotonic() > sc.note_until:
        sc.note = ""
        return
    io = imgui.get_io()
    size = imgui.calc_text_size(sc.note)
    x, y = (io.display_size.x - size.x) / 2, 12 * scale
    dl = imgui.get_foreground_draw_list()
    pad = 8 * scale
    dl.add_rect_filled(
        (x - pad, y - pad / 2),
        (x + size.x + pad, y + size.y + pad / 2),
        imgui.get_color_u32((0, 0, 0, 0.75)),
        4,
    )
    rgba = (1.0, 0.5, 0.45, 1.0) if sc.note_is_error else (0.6, 1.0, 0.65, 1.0)
    dl.add_text((x, y), imgui.get_color_u32(rgba), sc.note)
