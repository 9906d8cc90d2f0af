"""The training scene's ImGui panels: run control, monitored sample, hyperparameters, checkpoints (left);
steering, view options, charts and the first layer's filters (right); the Embedding window (under the
Training panel, or in a band under the network on a short display; features/embedding/panel.py's panel plus
this scene's options).

One function per panel section; each reads and edits `TrainState` only (no GL, no worker): commands go
into `state.requests`, which the scene sends.  Sizes are in window coordinates times the UI scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from convscope.engine.graph.edges import EXACT_EDGES
from convscope.engine.ui.layout import BESIDE, LEFT, RIGHT, PanelLayout
from convscope.engine.ui.widgets import TextureLike, help_marker, image
from convscope.features.embedding.panel import IMAGES, Textures, fill_window, gui_embed, measure_chrome
from convscope.scenes.train.state import (
    ADADELTA_LR,
    OPTIMIZER_LABELS,
    OPTIMIZERS,
    RANGE_LABELS,
    RANGES,
    SPEEDS,
    Series,
    TrainState,
    progress_label,
)
from imgui_bundle import imgui, implot

_ERROR = imgui.ImVec4(1.0, 0.45, 0.4, 1.0)
_DIM = imgui.ImVec4(0.75, 0.78, 0.85, 1.0)
_WARN = imgui.ImVec4(1.0, 0.8, 0.35, 1.0)
LEFT_WIDTH = 330  # window units at ui_scale 1; the scene keeps the 3D view clear of both columns
RIGHT_WIDTH = 360
_LABEL_ROOM = -110  # a slider or combo leaves this much of the row (at UI scale 1) to its label
COLORMAPS = ("harley", "viridis", "grayscale")
EMBED_WIDTH = 372  # the panel's two radio buttons a row and its "refresh every" label fit at this width
EMBED_MAX_HEIGHT = 560  # window units: the Embedding window under the Training panel grows no taller
EMBED_PLOT_MIN = 200  # window units: the least plot height (at 70 px a layout showed no structure)
EMBED_CHROME = 250  # window units: the window's title, controls and status lines, all but the plot
EMBED_BAND_MAX = 0.62  # of the display's height: the most the band under the network takes (large UI scales)


def _fmt(v: float, spec: str = ".4f") -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


def _wrapped(text: str, color: imgui.ImVec4 | None = None) -> None:
    imgui.push_text_wrap_pos(0.0)
    if color is None:
        imgui.text_unformatted(text)
    else:
        imgui.text_colored(color, text)
    imgui.pop_text_wrap_pos()


def _column(title: str, anchor: str, width: float, scale: float, layout: PanelLayout) -> None:
    layout.place(title, anchor)
    if not layout.folded(title):  # a folded tab takes the width of its title (engine/ui/layout.py)
        imgui.set_next_window_size_constraints(
            imgui.ImVec2(width * scale, 0), imgui.ImVec2(width * scale, layout.max_size()[1])
        )
    imgui.begin(
        title, None, layout.flags(imgui.WindowFlags_.always_auto_resize | imgui.WindowFlags_.no_collapse)
    )


# -- left column ---------------------------------------------------------------------------------------
def gui_left(state: TrainState, sample: TextureLike | None, scale: float, layout: PanelLayout) -> None:
    _column("Training", LEFT, LEFT_WIDTH, scale, layout)
    gui_run(state)
    gui_sample(state, sample, scale)
    # Open from the start: the Embedding window goes to the band under the network when this panel leaves
    # it too little room, so it never sits where the hyperparameters reach.
    if imgui.collapsing_header("Hyperparameters", imgui.TreeNodeFlags_.default_open):
        gui_hyper(state)
    if imgui.collapsing_header("Checkpoint"):
        gui_checkpoint(state)
    gui_status(state)
    layout.keep_inside("Training")
    imgui.end()


def gui_run(state: TrainState) -> None:
    name = state.dataset or "..."
    imgui.text(f"data: {name}")
    if state.dataset_source:
        imgui.same_line()
        help_marker(state.dataset_source)
    if state.dataset_note:
        _wrapped(state.dataset_note, _WARN)
    if state.progress is not None:  # loading the data: at the top, where no other window reaches
        gui_progress(state.progress)
    label = "Pause (space)" if state.running else "Resume (space)"
    if imgui.button(label):
        state.request("pause" if state.running else "resume")
    imgui.same_line()
    if imgui.button("Step"):
        state.request("step")
    imgui.same_line()
    if imgui.button("Reset"):
        state.request("reset", seed=int(state.seed))
    imgui.same_line()
    imgui.set_next_item_width(50)
    changed, seed = imgui.input_int("seed", int(state.seed), 0, 0)
    if changed:
        state.seed = max(0, int(seed))
    gui_speed(state)
    imgui.text(f"step {state.step:,}   epoch {_fmt(state.epoch, '.2f')}")
    imgui.text(f"loss {_fmt(state.loss)}   smoothed {_fmt(state.loss_smooth)}")
    imgui.text(f"train acc {_fmt(state.acc_smooth, '.3f')}   val acc {_fmt(state.val_acc, '.3f')}")
    rate = f"{_fmt(state.images_per_s, ',.0f')} images/s"
    if state.stale:  # the last snapshot's rate, from a worker that has gone quiet: say so
        rate = f"({rate}, stale)"
    imgui.text(f"{rate}   {state.nodes:,} nodes")
    if state.activity:
        _wrapped(state.activity, _WARN)


def speed_label(speed: float | None) -> str:
    return "full speed" if speed is None else f"{speed:g} steps/s at most"


def gui_speed(state: TrainState) -> None:
    """How fast training runs, from a step every two seconds to full speed, and the rate measured."""
    imgui.set_next_item_width(_LABEL_ROOM * imgui.get_style().font_scale_dpi)
    # A combo, not a slider: a slider's grab would cover the rate it names.
    changed, i = imgui.combo("speed", state.speed, [speed_label(v) for v in SPEEDS])
    if changed and i != state.speed:
        state.speed = int(i)
        state.request("set_speed", steps_per_s=SPEEDS[state.speed] or 0)
    imgui.same_line()
    help_marker(
        "Slow training down to narrate it: at 1 step/s every update shows in the network, the charts and "
        "the monitored image.  Step by step: Pause, then Step."
    )
    rate = state.steps_per_s if state.running else 0.0
    imgui.text_colored(_DIM, f"running at {_fmt(rate, ',.1f')} steps/s" if state.running else "paused")


def gui_sample(state: TrainState, sample: TextureLike | None, scale: float) -> None:
    imgui.separator()
    imgui.begin_group()
    if sample is not None:
        image(sample, (96 * scale, 96 * scale))
    imgui.end_group()
    imgui.same_line()
    imgui.begin_group()
    imgui.text_colored(_DIM, "monitored held-out image")
    imgui.text(f"#{state.monitor_index} of {state.n_val}")
    classes = state.classes
    if 0 <= state.monitor_label < len(classes):
        imgui.text(f"class: {classes[state.monitor_label]}")
    if 0 <= state.monitor_pred < len(classes):
        right = state.monitor_pred == state.monitor_label
        imgui.text_colored(
            imgui.ImVec4(0.5, 0.95, 0.5, 1) if right else _ERROR,
            f"guess: {classes[state.monitor_pred]} ({100 * state.monitor_prob:.0f} %)",
        )
    if imgui.button("< prev"):
        state.request("set_monitor_index", index=state.monitor_index - 1)
    imgui.same_line()
    if imgui.button("next >"):
        state.request("set_monitor_index", index=state.monitor_index + 1)
    imgui.set_next_item_width(imgui.get_font_size() * 5)
    changed, index = imgui.input_int("##monitor", state.monitor_index, 0, 0)
    if imgui.is_item_deactivated_after_edit() or (changed and imgui.is_key_pressed(imgui.Key.enter)):
        state.request("set_monitor_index", index=int(index))
    imgui.same_line()
    _, state.monitor_cycle = imgui.checkbox("cycle", state.monitor_cycle)
    imgui.set_item_tooltip("show the next held-out image every few seconds")
    imgui.end_group()


def _step_note(state: TrainState) -> str:
    """What the steps run with besides the sliders: the warm-up after a layer edit and the gradient clip."""
    parts = []
    if state.warm_left > 0 and math.isfinite(state.lr_now):
        parts.append(f"lr {state.lr_now:.2e} now, warming up after the layer edit ({state.warm_left} steps)")
    parts.append(
        f"gradient norm clipped to {state.clip_norm:g}" if state.clip_norm > 0 else "gradients not clipped"
    )
    return "; ".join(parts)


def gui_hyper(state: TrainState) -> None:
    """Each change goes to the worker at once and takes effect at its next step."""
    changes: dict = {}
    imgui.set_next_item_width(_LABEL_ROOM * imgui.get_style().font_scale_dpi)
    changed, lr = imgui.slider_float(
        "learning rate", state.lr, 1e-5, 10.0, "%.2e", imgui.SliderFlags_.logarithmic
    )
    if changed:
        state.lr = changes["lr"] = float(lr)
    _wrapped(_step_note(state), _DIM)
    imgui.set_next_item_width(_LABEL_ROOM * imgui.get_style().font_scale_dpi)
    imgui.begin_disabled(state.optimizer != "sgd")
    changed, mom = imgui.slider_float("momentum", state.momentum, 0.0, 0.99, "%.2f")
    imgui.end_disabled()
    if changed:
        state.momentum = changes["momentum"] = float(mom)
    imgui.set_next_item_width(_LABEL_ROOM * imgui.get_style().font_scale_dpi)
    changed, bs = imgui.slider_int(
        "batch size", state.batch_size, 1, 512, "%d", imgui.SliderFlags_.logarithmic
    )
    if changed:
        state.batch_size = changes["batch_size"] = int(bs)
    imgui.set_next_item_width(_LABEL_ROOM * imgui.get_style().font_scale_dpi)
    changed, wd = imgui.slider_float(
        "weight decay", state.weight_decay, 0.0, 0.1, "%.1e", imgui.SliderFlags_.logarithmic
    )
    if changed:
        state.weight_decay = changes["weight_decay"] = float(wd)
    imgui.set_next_item_width(_LABEL_ROOM * imgui.get_style().font_scale_dpi)
    names = [OPTIMIZER_LABELS[o] for o in OPTIMIZERS]
    changed, i = imgui.combo("optimizer", OPTIMIZERS.index(state.optimizer), names)
    if changed and OPTIMIZERS[i] != state.optimizer:
        state.optimizer = changes["optimizer"] = OPTIMIZERS[i]
        if state.optimizer == "adadelta" and state.lr != ADADELTA_LR:
            state.lr = changes["lr"] = ADADELTA_LR
            state.hyper_note = f"lr set to {ADADELTA_LR:g}, Adadelta's customary value"
        else:
            state.hyper_note = ""
    if state.hyper_note:
        _wrapped(state.hyper_note, _DIM)
    if changes:
        state.request("set_hyper", **changes)


def gui_checkpoint(state: TrainState) -> None:
    imgui.set_next_item_width(-1)
    _, state.checkpoint_path = imgui.input_text("##ckpt", state.checkpoint_path)
    if imgui.button("Save"):
        state.request("save", path=state.checkpoint_path)
    imgui.same_line()
    if imgui.button("Load"):
        state.request("load", path=state.checkpoint_path)
    # On its own line, wrapped: beside the buttons it ran past the panel's edge ("run stat").
    _wrapped("saves and loads the model, the optimizer and the run state", _DIM)


def gui_status(state: TrainState) -> None:
    imgui.separator()
    if state.error:
        _wrapped(state.error, _ERROR)
    if state.message:
        _wrapped(state.message, _ERROR if state.message_is_error else _DIM)
    _wrapped(state.status, _DIM)
    if state.worker_restarts:
        imgui.text_colored(_DIM, f"training process restarts: {state.worker_restarts}")


def gui_progress(progress: tuple[str, int | None, int | None]) -> None:
    """The worker loading its data: what it does, and a bar (a moving one when there is no measure)."""
    text, fraction = progress_label(progress)
    _wrapped(text)
    if fraction is None:
        imgui.progress_bar(-0.6 * imgui.get_time(), imgui.ImVec2(-1, 0), "")  # negative: indeterminate
    else:
        imgui.progress_bar(fraction, imgui.ImVec2(-1, 0), f"{100 * fraction:.0f} %")


# -- right column --------------------------------------------------------------------------------------
def gui_right(
    state: TrainState,
    filters: TextureLike | None,
    filters_size: tuple[int, int],
    scale: float,
    layout: PanelLayout,
    view_row: Callable[[], None] | None = None,
) -> None:
    """The right column; `view_row` draws the app's View row (UI scale, presentation) under "View"."""
    _column("Network", RIGHT, RIGHT_WIDTH, scale, layout)
    if imgui.collapsing_header("Steering", imgui.TreeNodeFlags_.default_open):
        gui_steering(state)
    if imgui.collapsing_header("View"):
        gui_view(state)
        if view_row is not None:
            view_row()
    if imgui.collapsing_header("Charts", imgui.TreeNodeFlags_.default_open):
        gui_charts(state, scale)
    if imgui.collapsing_header("First-layer filters", imgui.TreeNodeFlags_.default_open) and filters:
        fw, fh = filters_size
        avail = imgui.get_content_region_avail().x
        zoom = min(avail / max(fw, 1), 8.0 * scale)
        image(filters, (fw * zoom, fh * zoom))
    layout.keep_inside("Network")
    imgui.end()


def gui_steering(state: TrainState) -> None:
    """Filters and conv layers: a picked map (click it in 3D) can be removed; '+' adds to a layer."""
    sel = state.selected
    if sel is None:
        imgui.text_colored(_DIM, "click a feature map to select its filter")
    else:
        imgui.text(f"selected: conv{sel[0] + 1} filter {sel[1]}")
    n = len(state.widths)
    for k, width in enumerate(state.widths):
        imgui.push_id(k)
        imgui.text(f"conv{k + 1} {width:3d}")
        imgui.same_line()
        if imgui.small_button("+ filter"):
            state.request("add_filter", layer=k)
        imgui.same_line()
        imgui.begin_disabled(sel is None or sel[0] != k)
        if imgui.small_button("- selected"):
            state.request("remove_filter", layer=k, filter=sel[1])
            state.selected = None
        imgui.end_disabled()
        imgui.same_line()
        if imgui.small_button("- layer"):
            state.request("remove_layer", layer=k)
            state.selected = None
        imgui.pop_id()
    # Drag fields, not sliders: a slider's grab sat over the "16 filters" it names.
    imgui.set_next_item_width(70 * imgui.get_style().font_scale_dpi)
    changed, pos = imgui.drag_int("##pos", state.new_layer_position, 0.05, 0, n, "at %d")
    if changed:
        state.new_layer_position = int(min(max(pos, 0), n))
    imgui.same_line()
    imgui.set_next_item_width(90 * imgui.get_style().font_scale_dpi)
    changed, width = imgui.drag_int("##width", state.new_layer_width, 0.2, 1, 64, "%d filters")
    if changed:
        state.new_layer_width = int(min(max(width, 1), 64))
    imgui.same_line()
    if imgui.button("+ layer"):
        state.request("add_layer", position=min(state.new_layer_position, n), width=state.new_layer_width)
    imgui.same_line()
    help_marker(
        "Inserts a conv layer (5x5, ReLU, 2x2 pool) before conv<at+1> ('at' = number of layers: on top). "
        "It starts as the identity on its first channels; the linear head is re-fitted, and the learning "
        "rate warms up from a tenth over the next 1000 steps so the loss does not jump."
    )


def gui_view(state: TrainState) -> None:
    _, state.show_jitter = imgui.checkbox("jitter (gradient size per filter)", state.show_jitter)
    imgui.set_next_item_width(150)
    _, state.jitter_gain = imgui.slider_float("jitter strength", state.jitter_gain, 0.0, 10.0, "%.1f")
    _, state.show_paths = imgui.checkbox("paths (top half of map sums)", state.show_paths)
    if state.show_paths and state.paths_total > EXACT_EDGES:  # too many to draw all: a sample
        _, state.show_all_paths = imgui.checkbox("all paths", state.show_all_paths)
        imgui.same_line()
        imgui.text_disabled(f"{state.paths_drawn:,} of {state.paths_total:,} drawn")
        imgui.same_line()
        help_marker(
            f"More than {EXACT_EDGES:,} paths: drawn are the strongest by |weight x input| (the filter's"
            " kernel summed for that input, times the input map's sum) and a sample of the rest, picked in"
            " proportion to it, as the explorer does with many edges.  'all paths' draws every one."
        )
    imgui.set_next_item_width(150)
    changed, i = imgui.combo("colours", COLORMAPS.index(state.colormap), list(COLORMAPS))
    if changed:
        state.colormap = COLORMAPS[i]
    imgui.set_next_item_width(150)
    names = [RANGE_LABELS[r] for r in RANGES]
    changed, i = imgui.combo("range", RANGES.index(state.color_range), names)
    if changed:
        state.color_range = RANGES[i]
    imgui.same_line()
    help_marker(
        "What the ends of the colormap stand for.  Typical peak: from the layer's lowest value to the peak "
        "of a typical map (the median of its maps' maxima), so one strong map does not leave the others "
        "dark; stronger values show the top colour.  Min-max: each layer's whole range.  Per map: every "
        "feature map over its own range (compare patterns, not strengths)."
    )
    if imgui.button("Fit all (F)"):
        state.reset_camera = True
    imgui.same_line()
    _, state.show_frame_time = imgui.checkbox("frame time", state.show_frame_time)


def _plot(
    title: str, series: list[tuple[str, Series]], height: float, y_limits=None, log_y: bool = False
) -> None:
    """A chart against the step; the legend sits above the plot area (outside), never over the curves."""
    flags = implot.Flags_.no_mouse_text | implot.Flags_.no_box_select | implot.Flags_.no_menus
    if not implot.begin_plot(title, imgui.ImVec2(-1, height), flags):
        return
    fit = implot.AxisFlags_.auto_fit
    implot.setup_axes("", "", fit, 0 if y_limits else fit)
    if log_y:  # one spike no longer flattens the rest of the curve
        implot.setup_axis_scale(implot.ImAxis_.y1, implot.Scale_.log10)
        # Before any data an auto-fitted log axis spans 1e-300 .. 1e-153: show where a loss will be.
        y_limits = y_limits or _log_limits(series) or EMPTY_LOG_LIMITS
    if y_limits:
        implot.setup_axis_limits(implot.ImAxis_.y1, y_limits[0], y_limits[1], imgui.Cond_.always)
    implot.setup_legend(implot.Location_.north, implot.LegendFlags_.horizontal | implot.LegendFlags_.outside)
    for label, s in series:
        if s.n == 0:
            continue
        x, y = s.display()
        if s.n == 1:
            implot.plot_scatter(label, x, y)
        else:
            implot.plot_line(label, x, y)
    implot.end_plot()


EMPTY_LOG_LIMITS = (
    0.01,
    10.0,
)  # a log chart's y range before its first point (a 10-class loss starts at 2.3)


def _log_limits(series: list[tuple[str, Series]]) -> tuple[float, float] | None:
    """Log-axis limits: from a little under the 2nd percentile to a little over the largest value, so a
    batch that happened to score a loss of 1e-7 does not stretch the axis over decades of nothing."""
    ys = [s.display()[1] for _, s in series if s.n]
    if not ys:
        return None
    y = np.concatenate(ys)
    y = y[np.isfinite(y) & (y > 0)]
    if not len(y):
        return None
    lo, hi = float(np.percentile(y, 2)), float(y.max())
    return (lo / 1.5, max(hi * 1.5, lo * 10))


def gui_charts(state: TrainState, scale: float) -> None:
    """Against the step: every batch's loss and the smoothed loss; smoothed training accuracy and the
    periodic validation accuracy; images/s."""
    c = state.charts
    h = 150 * scale  # the legend sits above the plot area: room for it and the curves
    _plot("loss (log scale)##chart", [("batch", c.loss), ("smoothed", c.loss_smooth)], h, log_y=True)
    _plot("accuracy##chart", [("train (smoothed)", c.acc), ("validation", c.val_acc)], h, (0.0, 1.05))
    _plot("images/s##chart", [("images/s", c.rate)], 125 * scale)


def filter_montage(weights: np.ndarray, per_row: int = 8) -> np.ndarray:
    """(F, C, k, k) first-layer weights -> one RGB uint8 picture, each filter min-max scaled on its own
    (ReVACNN fig. 7: colour filters show whether a filter mixes the channels); 1-channel filters grey."""
    f, c, k, _ = weights.shape
    rows = max(1, math.ceil(f / per_row))
    cols = min(f, per_row)
    out = np.full((rows * (k + 1) + 1, cols * (k + 1) + 1, 3), 40, np.uint8)
    for i in range(f):
        w = weights[i]
        lo, hi = float(w.min()), float(w.max())
        img = (w - lo) / (hi - lo) if hi > lo else np.full_like(w, 0.5)
        rgb = np.repeat(img[:1], 3, 0) if c != 3 else img
        r, q = divmod(i, per_row)
        y, x = 1 + r * (k + 1), 1 + q * (k + 1)
        out[y : y + k, x : x + k] = (rgb.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    return out


# -- the Embedding window ------------------------------------------------------------------------------
def gui_embedding(state: TrainState, textures: Textures, scale: float, layout: PanelLayout) -> None:
    """The 2D embedding of one layer's filters (or of many images): under the Training panel where the room
    it leaves gives the plot EMBED_PLOT_MIN, else in a band at the bottom beside the left column, with the
    network framed above it.  The plot takes the height the controls leave (measured the frame before)."""
    io = imgui.get_io()
    h = io.display_size.y
    # Under the Training panel, following its bottom as its sections open and close, when there is room;
    # never over the Training panel's rows (it covered the Hyperparameters at 900 px high).  The chrome is a
    # fixed allowance, not measured: a progress bar or a second status line would move the window each time.
    training = layout.rect("Training")
    room = h - (training.bottom if training else 0.0) - (layout.gap + layout.margin) * scale
    if training is not None and room >= (EMBED_CHROME + EMBED_PLOT_MIN) * scale:
        layout.place("Embedding", LEFT, always=True)
        height = min(room, EMBED_MAX_HEIGHT * scale)
        if not layout.folded("Embedding"):
            imgui.set_next_window_size(imgui.ImVec2(EMBED_WIDTH * scale, height), imgui.Cond_.always)
    else:
        # The band under the network (at 1280x720 the room under the panel left a 70 px plot): the layout
        # frames the network above it; as wide as the columns let it be, up to EMBED_WIDTH.
        layout.place("Embedding", BESIDE, always=True)
        height = min((EMBED_CHROME + EMBED_PLOT_MIN) * scale, EMBED_BAND_MAX * h)
        room_w = layout.right_edge() - layout.left_edge(previous=True) - 2 * layout.gap * scale
        width = max(min(EMBED_WIDTH * scale, room_w), 200 * scale)
        if not layout.folded("Embedding"):
            imgui.set_next_window_size(imgui.ImVec2(width, height), imgui.Cond_.always)
    expanded, _ = imgui.begin("Embedding", None, imgui.WindowFlags_.no_scrollbar)
    if not expanded:
        layout.keep_inside("Embedding")
        imgui.end()
        return
    panel = state.embed
    top = fill_window(panel, 80.0 * scale)
    gui_embed(panel, textures)
    if panel.mode == IMAGES:
        _, state.embed_include_train = imgui.checkbox("add training images", state.embed_include_train)
        imgui.same_line()
        help_marker(
            "Held-out images come first, then training images up to the count chosen: CIFAR-10 holds out "
            "10,000, so 20,000 points need training images too.  A click on a held-out image monitors it."
        )
        if state.embed_note:
            _wrapped(state.embed_note, _DIM)
    measure_chrome(panel, top)
    layout.keep_inside("Embedding")
    imgui.end()
