"""The explore scene's ImGui panels: drawing, guesses, network settings and status.

One function per panel; each reads and edits `ExploreState` / `PadState` only (no GL, no worker).
Sizes are in window coordinates times the UI scale, so a touch screen with ui_scale 2 gets
controls twice as large.
"""

from __future__ import annotations

from imgui_bundle import imgui

from engine.gpu import colormaps
from engine.ui.widgets import TextureLike, image
from scenes.explore.pad import PadState, gui_pad
from scenes.explore.state import COLORMAPS, MODEL_LABELS, MODELS, NORMALIZE, ExploreState

_FIRST = imgui.Cond_.first_use_ever
_ERROR_RGBA = imgui.ImVec4(1.0, 0.45, 0.4, 1.0)
_DIM_RGBA = imgui.ImVec4(0.75, 0.78, 0.85, 1.0)


def gui_draw_panel(
    state: ExploreState, pad: PadState, seen: TextureLike | None, pad_side: float, scale: float
) -> float:
    """Top-left: the pad with its tools, what the network sees, and the top three guesses.
    Returns the panel's bottom edge, where the next panel goes."""
    imgui.set_next_window_pos(imgui.ImVec2(10 * scale, 10 * scale), _FIRST)
    imgui.begin("Draw a digit", None, imgui.WindowFlags_.always_auto_resize | imgui.WindowFlags_.no_collapse)
    bottom = imgui.get_window_pos().y + imgui.get_window_size().y
    gui_pad(pad, pad_side)
    imgui.same_line()
    imgui.begin_group()
    imgui.text_colored(_DIM_RGBA, "what the network sees")
    if seen is not None:
        image(seen, (112 * scale, 112 * scale))
    imgui.spacing()
    imgui.text("top guesses")
    guesses = state.top_guesses(3)
    if not guesses:
        imgui.text_colored(_DIM_RGBA, "waiting for the network...")
    for rank, (label, p) in enumerate(guesses):
        bar = f"{label}   {100.0 * p:5.1f} %"
        if rank == 0:
            imgui.push_style_color(imgui.Col_.plot_histogram, imgui.ImVec4(0.95, 0.65, 0.2, 1.0))
        imgui.progress_bar(p, imgui.ImVec2(112 * scale, 0), bar)
        if rank == 0:
            imgui.pop_style_color()
    imgui.end_group()
    imgui.end()
    return bottom


def _combo(label: str, value: str, options: tuple[str, ...], labels: dict[str, str] | None = None) -> str:
    names = [labels.get(o, o) if labels else o for o in options]
    changed, i = imgui.combo(label, options.index(value) if value in options else 0, names)
    return options[i] if changed else value


def gui_network_panel(state: ExploreState, scale: float, top: float, settle: bool = False) -> None:
    """Under the drawing panel, so the scene keeps the right side: model, colours, layers, camera."""
    # The drawing panel's height is known only after it has been laid out once: follow it until then.
    imgui.set_next_window_pos(imgui.ImVec2(10 * scale, top), imgui.Cond_.always if settle else _FIRST)
    imgui.begin("Network", None, imgui.WindowFlags_.always_auto_resize | imgui.WindowFlags_.no_collapse)
    state.model = _combo("model", state.model, MODELS, MODEL_LABELS)
    state.colormap = _combo("colours", state.colormap, COLORMAPS)
    _colormap_legend(state.colormap, scale)
    imgui.text("range")
    for mode in NORMALIZE:
        imgui.same_line()
        if imgui.radio_button(f"per {mode}", state.normalize == mode):
            state.normalize = mode
    if state.layer_names and imgui.collapsing_header("layers"):
        for i, name in enumerate(state.layer_names):
            changed, on = imgui.checkbox(name, state.layer_visible[i])
            if changed:
                state.layer_visible[i] = on
                state.layers_changed = True
    imgui.separator()
    if imgui.button("Fit all (F)"):
        state.reset_camera = True
    imgui.same_line()
    _, state.show_frame_time = imgui.checkbox("frame time", state.show_frame_time)
    gui_status(state)
    imgui.end()


def _colormap_legend(name: str, scale: float) -> None:
    """A strip of the colormap, low on the left, high on the right."""
    dl = imgui.get_window_draw_list()
    p = imgui.get_cursor_screen_pos()
    width, height, steps = imgui.get_content_region_avail().x, 10 * scale, 48
    colors = colormaps.sample(name, [i / (steps - 1) for i in range(steps)])
    for i in range(steps - 1):
        x0 = p.x + width * i / (steps - 1)
        x1 = p.x + width * (i + 1) / (steps - 1)
        c0 = imgui.get_color_u32(imgui.ImVec4(*[float(v) for v in colors[i][:3]], 1.0))
        c1 = imgui.get_color_u32(imgui.ImVec4(*[float(v) for v in colors[i + 1][:3]], 1.0))
        dl.add_rect_filled_multi_color((x0, p.y), (x1, p.y + height), c0, c1, c1, c0)
    imgui.dummy(imgui.ImVec2(width, height))
    imgui.text_colored(_DIM_RGBA, "low")
    imgui.same_line(width - imgui.calc_text_size("high").x)
    imgui.text_colored(_DIM_RGBA, "high")


def gui_status(state: ExploreState) -> None:
    imgui.separator()
    if state.error:
        imgui.push_text_wrap_pos(0.0)
        imgui.text_colored(_ERROR_RGBA, state.error)
        imgui.pop_text_wrap_pos()
    imgui.text_colored(_DIM_RGBA, state.status)
    if state.latency_ms is not None:
        imgui.text_colored(_DIM_RGBA, f"input -> activations {state.latency_ms:.2f} ms")
    if state.worker_restarts:
        imgui.text_colored(_DIM_RGBA, f"worker restarts: {state.worker_restarts}")
