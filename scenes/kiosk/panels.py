"""The kiosk's ImGui panels: a big pad with Clear, the network's reading as ten bars, a column of
zoom / fit / reset / language buttons, the caption of the layer in view, the visitor text card of a
tapped layer, the attract-mode prompt, the operator's PIN keypad and the start-up / restarting card.

GUI code only: each function reads and edits `KioskUi` (and the pad, as the explorer's pad widget
does); the scene turns the requests (`clear`, `fit`, `zoom` ...) into work.  Sizes are window
coordinates: `ui.button` is the touch-target edge the kiosk computed from the screen's millimetres
(KioskConfig.control_mm), `ui.scale` the ImGui style scale; every target a panel draws is recorded
in `ui.targets` so a test can measure it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from convscope.engine.ui.layout import CENTER_RIGHT, LEFT, PanelLayout
from convscope.engine.ui.widgets import draw_image
from convscope.scenes.explore.pad import PadState
from imgui_bundle import imgui

_PANEL_FLAGS = (
    imgui.WindowFlags_.no_decoration
    | imgui.WindowFlags_.no_move
    | imgui.WindowFlags_.always_auto_resize
    | imgui.WindowFlags_.no_saved_settings
    | imgui.WindowFlags_.no_focus_on_appearing
    | imgui.WindowFlags_.no_nav
)
_DIM = (0.72, 0.76, 0.84, 1.0)
_ACCENT = (0.98, 0.66, 0.22, 1.0)  # the network's pick, as in the explorer's guesses
_PANEL_BG = (0.06, 0.07, 0.10, 0.82)


@dataclass
class KioskUi:
    """What the kiosk panels show and the requests they make; one per kiosk scene."""

    scale: float = 1.0  # ImGui style scale
    button: float = 40.0  # touch-target edge, window coordinates
    strings: dict[str, str] = field(default_factory=dict)
    panels: tuple[str, ...] = ()  # KioskConfig.panels
    # shown
    layer_card: int | None = None  # index of the layer whose visitor text is open
    card_on_top: bool = False  # the card goes to the top of the screen (the tapped layer is low)
    card_title: str = ""
    card_text: str = ""
    attract: bool = False  # attract mode runs: show the prompt
    pen: tuple[float, float] | None = None  # attract pen tip, pad coordinates
    cover: str | None = None  # full-screen card text ("Starting...") while not ready; None = none
    pin_open: bool = False
    pin_entry: str = ""
    pin_wrong: bool = False
    time: float = 0.0  # seconds, for the prompt's pulse
    language: str = "en"  # the words and captions shown
    next_language: str = ""  # what the language button switches to ("" = no button)
    caption_title: str = ""  # the layer in view ("" for the whole network)
    caption_text: str = ""  # its caption in plain words ("" = none)
    caption_anchor: tuple[float, float] | None = None  # the layer in view on screen, window coordinates
    # requested by the panels this frame, consumed by the scene
    clear: bool = False
    fit: bool = False
    reset: bool = False
    zoom: float = 0.0  # zoom steps (positive: in)
    pin_submit: str | None = None
    switch_language: bool = False
    # geometry of this frame, window coordinates
    left_edge: float = 0.0  # right edge of the pad panel
    right_edge: float = 0.0  # left edge of the control column
    caption_bottom: float = 0.0  # lower edge of the space kept for captions (0 = none)
    pad_rect: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1
    pad_side: float = 0.0  # the pad's edge, grown or shrunk each frame until the panel fits the height
    targets: list[tuple[str, float, float, float, float]] = field(default_factory=list)  # label, x, y, w, h
    layout: PanelLayout = field(default_factory=lambda: PanelLayout(margin=12.0))  # the docked panels

    def s(self, key: str) -> str:
        return self.strings.get(key, key)

    def target(self, label: str) -> tuple[float, float] | None:
        """Centre of the touch target labelled `label` in the last frame (for scripted visitors)."""
        for name, x, y, w, h in self.targets:
            if name == label:
                return (x + w / 2.0, y + h / 2.0)
        return None


def _begin_docked(ui: KioskUi, name: str, anchor: str) -> None:
    """A panel the layout docks at `anchor` every frame (it follows the display)."""
    ui.layout.place(name, anchor, always=True)
    imgui.set_next_window_bg_alpha(_PANEL_BG[3])
    imgui.begin(name, None, _PANEL_FLAGS)


def _begin_panel(name: str, pos: tuple[float, float], pivot=(0.0, 0.0), alpha: float = _PANEL_BG[3]) -> None:
    imgui.set_next_window_pos(imgui.ImVec2(*pos), imgui.Cond_.always, imgui.ImVec2(*pivot))
    imgui.set_next_window_bg_alpha(alpha)
    imgui.begin(name, None, _PANEL_FLAGS)


def _button(ui: KioskUi, label: str, size: tuple[float, float], font_px: float | None = None) -> bool:
    if font_px:
        imgui.push_font(None, font_px)
    clicked = imgui.button(label, imgui.ImVec2(*size))
    if font_px:
        imgui.pop_font()
    p = imgui.get_item_rect_min()
    ui.targets.append((label.split("##")[0], p.x, p.y, size[0], size[1]))
    return clicked


def _text_big(text: str, px: float, color=(1.0, 1.0, 1.0, 1.0)) -> None:
    imgui.push_font(None, px)
    imgui.text_colored(imgui.ImVec4(*color), text)
    imgui.pop_font()


# -- the pad -----------------------------------------------------------------------------------------


def _pad_canvas(pad: PadState, side: float, pen: tuple[float, float] | None) -> None:
    """The canvas only (the explorer's pad widget without its tools): one finger draws."""
    p0 = imgui.get_cursor_screen_pos()
    p1 = (p0.x + side, p0.y + side)
    dl = imgui.get_window_draw_list()
    if pad.texture_ref is not None:
        draw_image(dl, pad.texture_ref, (p0.x, p0.y), p1)
    else:
        dl.add_rect_filled((p0.x, p0.y), p1, imgui.get_color_u32((0.0, 0.0, 0.0, 1.0)))
    dl.add_rect((p0.x, p0.y), p1, imgui.get_color_u32((0.45, 0.50, 0.60, 1.0)), 0.0, 2.0)
    imgui.invisible_button("##kiosk_pad", imgui.ImVec2(side, side), imgui.ButtonFlags_.mouse_button_left)
    io = imgui.get_io()
    k = pad.size / side
    x, y = (io.mouse_pos.x - p0.x) * k, (io.mouse_pos.y - p0.y) * k
    if imgui.is_item_activated():
        pad.begin_stroke(x, y, erase=False)
    elif imgui.is_item_active():
        pad.stroke_to(x, y)
    if imgui.is_item_deactivated():
        pad.end_stroke()
    if pen is not None:
        # The attract pen: a nib where the ink is going, so the drawing reads as being written.
        c = (p0.x + pen[0] / k, p0.y + pen[1] / k)
        dl.add_circle_filled(c, pad.radius / k * 1.6, imgui.get_color_u32((0.98, 0.66, 0.22, 0.35)))
        dl.add_circle_filled(c, pad.radius / k * 0.7, imgui.get_color_u32((1.0, 0.85, 0.55, 0.95)))


def _reading(ui: KioskUi, probabilities: np.ndarray | None, width: float) -> None:
    """The network's answer: its top digit large, then all ten classes as bars; `probabilities`
    None (an empty pad) shows "draw a digit" and empty bars."""
    font = imgui.get_style().font_size_base
    ok = probabilities is not None and np.all(np.isfinite(probabilities)) and len(probabilities) == 10
    # Both forms take the same height, so the pad above does not resize when the first ink is read.
    imgui.push_font(None, font * 2.4)
    row_h = imgui.get_text_line_height()
    imgui.pop_font()
    spacing = imgui.get_style().item_spacing.y
    row_h = max(row_h, 2.0 * imgui.get_text_line_height() + spacing)
    y0 = imgui.get_cursor_pos_y()
    if ok:
        top = int(np.argmax(probabilities))
        _text_big(f"{top}", font * 2.4, _ACCENT)
        imgui.same_line()
        imgui.begin_group()
        imgui.text_colored(imgui.ImVec4(*_DIM), ui.s("guess"))
        imgui.text_colored(imgui.ImVec4(*_DIM), f"{100.0 * float(probabilities[top]):.0f} %")
        imgui.end_group()
    else:  # an empty pad (or no answer yet): an invitation, never a guess
        _text_big(ui.s("unsure"), font * 1.6, _DIM)
    short = y0 + row_h + spacing - imgui.get_cursor_pos_y()
    if short > 0.5:
        imgui.dummy(imgui.ImVec2(1.0, short - spacing))
    dl = imgui.get_window_draw_list()
    p = imgui.get_cursor_screen_pos()
    bar_h = font * 3.2 * ui.scale
    label_h = imgui.get_text_line_height()
    gap = 4.0 * ui.scale
    w = (width - 9 * gap) / 10.0
    for i in range(10):
        x0 = p.x + i * (w + gap)
        dl.add_rect_filled((x0, p.y), (x0 + w, p.y + bar_h), imgui.get_color_u32((1.0, 1.0, 1.0, 0.07)), 3.0)
        if ok:
            v = float(np.clip(probabilities[i], 0.0, 1.0))
            top = i == int(np.argmax(probabilities))
            color = _ACCENT if top else (0.55, 0.65, 0.85, 1.0)
            if v > 0.005:
                dl.add_rect_filled(
                    (x0, p.y + bar_h * (1.0 - v)), (x0 + w, p.y + bar_h), imgui.get_color_u32(color), 3.0
                )
        label = str(i)
        tw = imgui.calc_text_size(label).x
        dl.add_text(
            (x0 + (w - tw) / 2, p.y + bar_h + 2.0), imgui.get_color_u32((0.9, 0.92, 0.96, 1.0)), label
        )
    imgui.dummy(imgui.ImVec2(width, bar_h + label_h + 4.0))


def gui_pad_panel(
    ui: KioskUi, pad: PadState, probabilities: np.ndarray | None, display: tuple[float, float]
) -> None:
    """Left: the title, the pad as large as the screen allows, Clear, and the network's reading."""
    w, h = display
    m = 12.0 * ui.scale
    font = imgui.get_style().font_size_base
    show_reading = "guesses" in ui.panels
    if ui.pad_side <= 0.0:
        ui.pad_side = 0.45 * h
    side = ui.pad_side = float(np.clip(ui.pad_side, 112.0, 0.4 * w))
    _begin_docked(ui, "##kiosk_pad_panel", LEFT)
    _text_big(ui.s("title"), font * 1.6)
    p = imgui.get_cursor_screen_pos()
    ui.pad_rect = (p.x, p.y, p.x + side, p.y + side)
    _pad_canvas(pad, side, ui.pen)
    if _button(ui, ui.s("clear"), (side, ui.button), font * 1.15):
        ui.clear = True
    if show_reading:
        imgui.spacing()
        _reading(ui, probabilities, side)
    ui.left_edge = ui.layout.keep_inside("##kiosk_pad_panel").right
    # The panel's height is known only now: grow or shrink the pad so it fills the screen's height
    # next frame (it settles in a frame or two; no text metrics to duplicate here).
    # Whole pixels, and still once within a pixel: the pad (and the brush sized from it) stays put.
    short = h - 2 * m - imgui.get_window_size().y
    if abs(short) >= 1.0:
        ui.pad_side = float(round(ui.pad_side + short * 0.8))
    imgui.end()


# -- camera controls ---------------------------------------------------------------------------------


def gui_controls(ui: KioskUi, display: tuple[float, float]) -> None:
    """Right edge, vertically centred: zoom in, zoom out, fit, reset.  Holding a zoom button keeps zooming."""
    font = imgui.get_style().font_size_base
    imgui.push_font(None, font * 1.1)
    widest = max(imgui.calc_text_size(ui.s(k)).x for k in ("fit", "reset"))
    imgui.pop_font()
    b = max(ui.button * 1.25, widest + 2 * imgui.get_style().frame_padding.x)
    _begin_docked(ui, "##kiosk_controls", CENTER_RIGHT)
    for key, steps in (("zoom_in", 1.0), ("zoom_out", -1.0)):
        if _button(ui, ui.s(key) + f"##{key}", (b, b), font * 2.0):
            ui.zoom += steps
        elif imgui.is_item_active() and imgui.get_io().mouse_down_duration[0] > 0.4:
            ui.zoom += steps * 2.0 * imgui.get_io().delta_time  # two steps a second while held
    imgui.spacing()
    if _button(ui, ui.s("fit"), (b, b), font * 1.1):
        ui.fit = True
    if _button(ui, ui.s("reset"), (b, b), font * 1.1):
        ui.reset = True
    if ui.next_language:
        imgui.spacing()
        label = ui.next_language.upper()
        if _button(ui, f"{label}##language", (b, b * 0.8), font * 1.1):
            ui.switch_language = True
    ui.right_edge = ui.layout.keep_inside("##kiosk_controls").x
    imgui.end()


# -- visitor text and prompts ---------------------------------------------------------------------------

CAPTION_LINES = 3  # lines of caption room kept above the network, so it never jumps when the text changes


def caption_px(ui: KioskUi) -> float:
    """Caption type size: large, a quarter above the controls' text."""
    return imgui.get_style().font_size_base * ui.scale * 1.25


def gui_caption(ui: KioskUi, display: tuple[float, float]) -> None:
    """The caption of the layer in view, large, across the top of the free area; a thin line leads
    from it to the layer on screen.  Its room is kept free of the network (`caption_bottom`)."""
    w, h = display
    m = 12.0 * ui.scale
    left, right = ui.left_edge, (ui.right_edge or w)
    px = caption_px(ui)
    ui.caption_bottom = m + CAPTION_LINES * px * 1.2 + 1.5 * m
    if not ui.caption_text or ui.layer_card is not None or ui.pin_open or right - left < 200.0:
        return
    dl = imgui.get_foreground_draw_list()
    font = imgui.get_font()
    k = px / imgui.get_font_size()  # calc_text_size measures at the current size
    wrap = right - left - 4 * m
    size = imgui.calc_text_size(ui.caption_text, False, wrap / k)
    tw, th = size.x * k, size.y * k
    if th > 1.5 * px * 1.2:  # wrapped: the box spans the wrap width (the glyphs scale not quite linearly)
        tw = wrap
    x0, y0 = (left + right) / 2.0 - tw / 2.0, m
    bg, white = imgui.get_color_u32(_PANEL_BG), imgui.get_color_u32((1.0, 1.0, 1.0, 1.0))
    dl.add_rect_filled((x0 - m, y0 - m * 0.5), (x0 + tw + m, y0 + th + m * 0.5), bg, m)
    dl.add_text(font, px, (x0, y0), white, ui.caption_text, wrap_width=wrap)
    if ui.caption_anchor is not None:
        ax, ay = ui.caption_anchor
        if left < ax < right and y0 + th + m < ay < h:
            start = (min(max(ax, x0), x0 + tw), y0 + th + m * 0.5)
            dl.add_line(start, (ax, ay), imgui.get_color_u32((0.98, 0.66, 0.22, 0.6)), 2.0 * ui.scale)
            dl.add_circle_filled((ax, ay), 4.0 * ui.scale, imgui.get_color_u32((0.98, 0.66, 0.22, 0.9)))


def gui_layer_card(ui: KioskUi, display: tuple[float, float]) -> None:
    """The tapped layer's visitor text, centred over the scene at the top or bottom edge, away from
    the layer itself; Close hides it."""
    if ui.layer_card is None:
        return
    w, h = display
    m = 12.0 * ui.scale
    font = imgui.get_style().font_size_base
    centre = (ui.left_edge + (ui.right_edge or w)) / 2.0
    wrap = min(max((ui.right_edge or w) - ui.left_edge - 4 * m, 200.0), 34.0 * font * ui.scale)
    if ui.card_on_top:
        _begin_panel("##kiosk_layer_card", (centre, m), (0.5, 0.0), 0.9)
    else:
        _begin_panel("##kiosk_layer_card", (centre, h - m), (0.5, 1.0), 0.9)
    _text_big(ui.card_title, font * 1.35, _ACCENT)
    imgui.push_text_wrap_pos(imgui.get_cursor_pos_x() + wrap)
    imgui.text_unformatted(ui.card_text)
    imgui.pop_text_wrap_pos()
    imgui.spacing()
    if _button(
        ui, ui.s("close") + "##card", (max(ui.button * 2.5, imgui.calc_text_size("Close").x), ui.button)
    ):
        ui.layer_card = None
    imgui.end()


def gui_prompt(ui: KioskUi, display: tuple[float, float]) -> None:
    """Attract mode: a gently pulsing invitation over the scene; otherwise a one-line hint."""
    w, h = display
    dl = imgui.get_foreground_draw_list()
    font = imgui.get_font()
    base = imgui.get_style().font_size_base * ui.scale
    centre = (ui.left_edge + (ui.right_edge or w)) / 2.0
    if (ui.right_edge or w) - ui.left_edge < 100.0 * ui.scale:
        return  # the panels have not been laid out yet (first frame), or leave no room
    if ui.attract:
        text = ui.s("attract")
        size = imgui.calc_text_size(text)
        room = (ui.right_edge or w) - ui.left_edge - 60.0 * ui.scale
        px = min(base * 1.6, base * room / max(size.x * base / imgui.get_font_size(), 1.0))
        pulse = 0.6 + 0.4 * (0.5 + 0.5 * math.sin(ui.time * 2.4))
        tw, th = size.x * px / imgui.get_font_size(), size.y * px / imgui.get_font_size()
        x, y = centre - tw / 2, h - th - 34.0 * ui.scale
        pad = 14.0 * ui.scale
        dl.add_rect_filled(
            (x - pad, y - pad * 0.6),
            (x + tw + pad, y + th + pad * 0.6),
            imgui.get_color_u32((0.05, 0.06, 0.09, 0.72)),
            th,
        )
        dl.add_text(font, px, (x, y), imgui.get_color_u32((1.0, 0.86, 0.6, pulse)), text)
    elif ui.layer_card is None:
        text = ui.s("hint")
        size = imgui.calc_text_size(text)
        room = (ui.right_edge or w) - ui.left_edge - 24.0 * ui.scale
        k = min(1.0, room / max(size.x, 1.0))  # never wider than the scene between the panels
        px = imgui.get_font_size() * k
        pos = (centre - size.x * k / 2, h - size.y * k - 16.0 * ui.scale)
        dl.add_text(imgui.get_font(), px, pos, imgui.get_color_u32(_DIM), text)


def gui_cover(ui: KioskUi, display: tuple[float, float]) -> None:
    """The start-up / restarting card: the whole screen dark, one word in the middle; never a desktop
    or a stack trace."""
    if ui.cover is None:
        return
    w, h = display
    dl = imgui.get_foreground_draw_list()
    dl.add_rect_filled((0, 0), (w, h), imgui.get_color_u32((0.02, 0.025, 0.04, 1.0)))
    px = imgui.get_style().font_size_base * ui.scale * 1.8
    size = imgui.calc_text_size(ui.cover)
    tw = size.x * px / imgui.get_font_size()
    alpha = 0.55 + 0.45 * (0.5 + 0.5 * math.sin(ui.time * 3.0))
    dl.add_text(
        imgui.get_font(),
        px,
        (w / 2 - tw / 2, h / 2 - px / 2),
        imgui.get_color_u32((1, 1, 1, alpha)),
        ui.cover,
    )


# -- the way out ---------------------------------------------------------------------------------------


def gui_pin_pad(ui: KioskUi, display: tuple[float, float]) -> None:
    """The operator's PIN keypad (opened by holding the top-right corner); OK submits `pin_entry`."""
    if not ui.pin_open:
        return
    w, h = display
    font = imgui.get_style().font_size_base
    imgui.push_font(None, font * 1.3)
    b = max(ui.button * 1.2, imgui.calc_text_size("Del").x + 2 * imgui.get_style().frame_padding.x)
    imgui.pop_font()
    _begin_panel("##kiosk_pin", (w / 2, h / 2), (0.5, 0.5), 0.96)
    _text_big(ui.s("pin"), font * 1.3)
    shown = "*" * len(ui.pin_entry) if ui.pin_entry else " "
    _text_big(shown, font * 1.6, (1.0, 0.45, 0.4, 1.0) if ui.pin_wrong else (1.0, 1.0, 1.0, 1.0))
    rows = (("1", "2", "3"), ("4", "5", "6"), ("7", "8", "9"), ("Del", "0", "OK"))
    for row in rows:
        for i, key in enumerate(row):
            if i:
                imgui.same_line()
            if _button(ui, f"{key}##pin", (b, b), font * 1.3):
                ui.pin_wrong = False
                if key == "Del":
                    ui.pin_entry = ui.pin_entry[:-1]
                elif key == "OK":
                    ui.pin_submit = ui.pin_entry
                    ui.pin_entry = ""
                elif len(ui.pin_entry) < 12:
                    ui.pin_entry += key
    if _button(ui, f"{ui.s('close')}##pin", (3 * b + 2 * imgui.get_style().item_spacing.x, ui.button)):
        ui.pin_open, ui.pin_entry, ui.pin_wrong = False, "", False
    imgui.end()


def gui_kiosk(
    ui: KioskUi, pad: PadState, probabilities: np.ndarray | None, display: tuple[float, float]
) -> None:
    """All kiosk panels the config allows, in drawing order."""
    ui.targets.clear()
    ui.layout.begin_frame(display, ui.scale)
    if "pad" in ui.panels:
        gui_pad_panel(ui, pad, probabilities, display)
    else:
        ui.left_edge = 0.0
    if "controls" in ui.panels:
        gui_controls(ui, display)
    else:
        ui.right_edge = display[0]
    if "captions" in ui.panels:
        gui_caption(ui, display)
    else:
        ui.caption_bottom = 0.0
    if "layer_text" in ui.panels:
        gui_layer_card(ui, display)
    if "prompt" in ui.panels:
        gui_prompt(ui, display)
    gui_pin_pad(ui, display)
    gui_cover(ui, display)
