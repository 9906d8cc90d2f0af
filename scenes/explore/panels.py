"""The explore scene's ImGui panels: drawing, guesses, network settings and status, node details, and the
Embedding window (features/embedding/panel.py's panel plus this scene's options).

One function per panel; each reads and edits `ExploreState` / `PadState` only (no GL, no worker).
Sizes are in window coordinates times the UI scale, so a touch screen with ui_scale 2 gets
controls twice as large.  The details panel formats the scene's `Explanation` of the selected
node (engine/graph/explain.py); every number in it comes from there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from convscope.engine.gpu import colormaps
from convscope.engine.graph.explain import Explanation, fmt, formula_lines, heatmap_grid, position_text
from convscope.engine.ui.layout import BOTTOM_RIGHT, LEFT, RIGHT, PanelLayout
from convscope.engine.ui.widgets import TextureLike, color_bar, help_marker, image
from convscope.features.embedding.panel import (
    FILTERS,
    IMAGES,
    Textures,
    fill_window,
    gui_embed,
    measure_chrome,
)
from convscope.scenes.explore.morph import MorphState, gui_morph
from convscope.scenes.explore.pad import PadState, gui_pad
from convscope.scenes.explore.robustness import RobustnessState, gui_robustness
from convscope.scenes.explore.state import (
    COLORMAPS,
    EDGE_MODE_LABELS,
    EDGE_MODES,
    MODELS,
    NORMALIZE,
    ExploreState,
    model_label,
)
from imgui_bundle import imgui, implot

_FIRST = imgui.Cond_.first_use_ever
_RANGE_LABELS = {"layer": "per layer", "global": "whole network"}  # what one colour range spans
_ERROR_RGBA = imgui.ImVec4(1.0, 0.45, 0.4, 1.0)
_DIM_RGBA = imgui.ImVec4(0.75, 0.78, 0.85, 1.0)


def gui_draw_panel(
    state: ExploreState,
    pad: PadState,
    seen: TextureLike | None,
    pad_side: float,
    scale: float,
    layout: PanelLayout,
) -> None:
    """Top of the left column: the pad with its tools, what the network sees, and the top three guesses."""
    layout.place("Draw a digit", LEFT)
    imgui.begin(
        "Draw a digit",
        None,
        layout.flags(imgui.WindowFlags_.always_auto_resize | imgui.WindowFlags_.no_collapse),
    )
    gui_pad(pad, pad_side)
    imgui.same_line()
    imgui.begin_group()
    imgui.text_colored(_DIM_RGBA, "what the network sees")
    if seen is not None:
        image(seen, (112 * scale, 112 * scale))
    imgui.spacing()
    imgui.text("top guesses")
    blank = state.network_input is not None and not np.any(state.network_input)
    guesses = [] if blank else state.top_guesses(3)
    if blank:  # an empty pad has no reading, whatever the network makes of a black image
        imgui.text_colored(_DIM_RGBA, "draw a digit")
    elif not guesses and state.nonfinite:
        imgui.push_text_wrap_pos(imgui.get_cursor_pos_x() + 112 * scale)
        imgui.text_colored(_ERROR_RGBA, state.nonfinite)
        imgui.pop_text_wrap_pos()
    elif not guesses:
        imgui.text_colored(_DIM_RGBA, "waiting for the network...")
    for rank, (label, p) in enumerate(guesses):
        bar = f"{label[:10]}  {100.0 * p:.1f} %"  # a class name and its share fit the bar
        if rank == 0:
            imgui.push_style_color(imgui.Col_.plot_histogram, imgui.ImVec4(0.95, 0.65, 0.2, 1.0))
        imgui.progress_bar(p, imgui.ImVec2(112 * scale, 0), bar)
        if rank == 0:
            imgui.pop_style_color()
    imgui.end_group()
    layout.keep_inside("Draw a digit")
    imgui.end()


def _combo(label: str, value: str, options: tuple[str, ...], labels: dict[str, str] | None = None) -> str:
    names = [labels.get(o, o) if labels else o for o in options]
    changed, i = imgui.combo(label, options.index(value) if value in options else 0, names)
    return options[i] if changed else value


def gui_network_panel(
    state: ExploreState, scale: float, layout: PanelLayout, view_row: Callable[[], None] | None = None
) -> None:
    """Under the drawing panel, so the scene keeps the right side: model, colours, layers, camera; and
    the app's View row (UI scale, presentation mode) when `view_row` draws one."""
    layout.place("Network", LEFT)
    imgui.begin(
        "Network", None, layout.flags(imgui.WindowFlags_.always_auto_resize | imgui.WindowFlags_.no_collapse)
    )
    models = MODELS + tuple(m for m in state.own_models if m not in MODELS)
    state.model = _combo("model", state.model, models, {m: model_label(m) for m in models})
    state.colormap = _combo("colours", state.colormap, COLORMAPS)
    _colormap_legend(state, scale)
    imgui.text("colour range:")
    for mode in NORMALIZE:
        imgui.same_line()
        if imgui.radio_button(_RANGE_LABELS.get(mode, mode), state.normalize == mode):
            state.normalize = mode
    _, state.show_edges = imgui.checkbox("edges by", state.show_edges)
    for mode in EDGE_MODES:
        imgui.same_line()
        if imgui.radio_button(EDGE_MODE_LABELS[mode], state.edge_mode == mode):
            state.edge_mode = mode
    if state.edges_sampled:
        _, state.show_all_edges = imgui.checkbox("show all edges", state.show_all_edges)
        imgui.same_line()
        help_marker(
            "A node with more than 5,000 incoming edges shows a sample: the half with the largest "
            "|weight x input|, and the rest drawn at random in proportion to it.  Show all draws every edge."
        )
        if state.edge_note:
            imgui.same_line()
            imgui.text_colored(_DIM_RGBA, state.edge_note)
    _legend_numbers(state, scale)
    if state.layer_names:
        imgui.set_next_item_open(state.show_layers, imgui.Cond_.always)
        state.show_layers = imgui.collapsing_header("layers")
    if state.layer_names and state.show_layers:
        imgui.text_colored(_DIM_RGBA, "click a name: fly there")
        if imgui.is_item_hovered():
            imgui.set_tooltip("Tick: show or hide the layer.  PageUp / PageDown: the next layer up / down.")
        _gui_layer_list(state)
    imgui.separator()
    if imgui.button("Fit all (F)"):
        state.reset_camera = True
    imgui.same_line()
    _, state.show_frame_time = imgui.checkbox("frame time", state.show_frame_time)
    _, state.show_embedding = imgui.checkbox(
        "Embedding window (t-SNE of filters / images)", state.show_embedding
    )
    if view_row is not None:
        view_row()
    gui_status(state)
    layout.keep_inside("Network")
    imgui.end()


def _colormap_legend(state: ExploreState, scale: float) -> None:
    """The node colormap as a bar: the focus layer's range at its ends (low / high without one)."""
    lg = state.legend
    ends = ("low", "high") if lg.layer is None else (fmt(lg.node_lo, 3), fmt(lg.node_hi, 3))
    colors = colormaps.sample(state.colormap, np.linspace(0.0, 1.0, 48))
    state.bar_rects["nodes"] = color_bar(colors, ends, height=10 * scale, label_rgba=_DIM_RGBA)


# Rows of the Network panel under the layer list (Fit all, Embedding, UI scale, two status lines, spacing):
# the list scrolls rather than push them, and the panel, past the bottom of the window.
_ROWS_BELOW_LIST = 7.5
_MIN_LIST_ROWS = 4


def _gui_layer_list(state: ExploreState) -> None:
    """One row per layer: a tick to show or hide it, its name to fly there; a scrolling list no taller
    than the room left above the window's bottom (ResNet-18 has 32 layers), kept on the layer flown to."""
    row = imgui.get_frame_height_with_spacing()
    room = imgui.get_io().display_size.y - imgui.get_cursor_screen_pos().y - _ROWS_BELOW_LIST * row
    rows = len(state.layer_names)
    height = min(rows * row + imgui.get_style().window_padding.y, max(room, _MIN_LIST_ROWS * row))
    widest = max(imgui.calc_text_size(n).x for n in state.layer_names)
    style = imgui.get_style()
    width = widest + row + 2 * style.item_spacing.x + style.scrollbar_size + 2 * style.window_padding.x
    imgui.begin_child("##layer list", imgui.ImVec2(width, height))
    for i, name in enumerate(state.layer_names):
        changed, on = imgui.checkbox(f"##show {i}", state.layer_visible[i])
        if changed:
            state.layer_visible[i] = on
            state.layers_changed = True
        imgui.same_line()
        if imgui.selectable(f"{name}##fly {i}", state.current_layer == i)[0]:
            state.fly_to = i
        if state.current_layer == i and state.listed_layer != i:
            imgui.set_scroll_here_y(0.5)  # PageUp / PageDown: the row of the layer flown to stays in sight
            state.listed_layer = i
    imgui.end_child()


def _legend_numbers(state: ExploreState, scale: float) -> None:
    """What the bars stand for: the hovered (else selected) node's layer and its incoming edges, whose
    colours run over the diverging map from -m (blue) through 0 (grey) to +m (red)."""
    lg = state.legend
    if lg.layer is None:  # two lines, like the numbers, so the panel does not jump
        imgui.text_colored(_DIM_RGBA, "hover a node: see its incoming edges")
        imgui.text_colored(_DIM_RGBA, "click a node: see its calculation")
    else:
        where = "all layers" if state.normalize == "global" else lg.layer
        imgui.text_colored(_DIM_RGBA, f"nodes: colour range of {where}")
        if lg.edge_scale is not None:
            imgui.text_colored(_DIM_RGBA, f"edges into {lg.layer}: {EDGE_MODE_LABELS[state.edge_mode]}")
        else:
            imgui.text_colored(_DIM_RGBA, "edges: not shown")
    m = lg.edge_scale
    ends = ("-m", "0", "+m") if m is None else (f"-{fmt(m, 3)}", "0", f"+{fmt(m, 3)}")
    colors = colormaps.sample(colormaps.DIVERGING, np.linspace(0.0, 1.0, 33))
    state.bar_rects["edges"] = color_bar(colors, ends, height=10 * scale, label_rgba=_DIM_RGBA)


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


# -- node details ------------------------------------------------------------------------------------

DETAILS_WIDTH = 340  # window units at ui_scale 1
_BAR_POS = imgui.ImVec4(0.98, 0.62, 0.25, 1.0)
_BAR_NEG = imgui.ImVec4(0.35, 0.55, 0.98, 1.0)
_WIN_RGBA = imgui.ImVec4(1.0, 0.85, 0.3, 1.0)


def gui_details_panel(
    state: ExploreState, images: dict[str, TextureLike], scale: float, layout: PanelLayout
) -> None:
    """Top-right: what the selected node computes, with the numbers of the current input.  Its close
    button clears the selection.  With the Embedding window open (drawn before this panel) it goes under
    that window, as wide, in one right-hand column: side by side the two left the network a third of a
    1280 px wide screen, stacked the column is as wide as the Embedding window alone."""
    if state.selected < 0:
        return
    display = imgui.get_io().display_size
    embed = layout.rect("Embedding") if state.show_embedding else None
    if embed is not None and embed.w > 0:
        layout.place("Node details", RIGHT, appearing=True)  # docked: the network is framed left of both
        width = embed.w
        # Down to the Experiments tab at the bottom right (folded to its title bar until opened).
        bottom = display.y - (layout.margin + layout.gap) * scale - imgui.get_frame_height()
        tallest = max(bottom - layout.rect("Node details").y, 100 * scale)
    else:
        layout.place("Node details", RIGHT, appearing=True, dock=False)  # it comes and goes: the view stays
        width = DETAILS_WIDTH * scale
        tallest = max(display.y - 20 * scale, 100)
    # Fixed width, height fitted to the contents but never taller than the room (it scrolls then).
    imgui.set_next_window_size_constraints(imgui.ImVec2(width, 0), imgui.ImVec2(width, tallest))
    flags = layout.flags(imgui.WindowFlags_.no_collapse | imgui.WindowFlags_.always_auto_resize)
    _, keep = imgui.begin("Node details", True, flags)
    if not keep:
        state.selected = -1
    e = state.details
    if e is None:
        imgui.text_colored(_DIM_RGBA, state.details_note or "no node selected")
    else:
        _details(e, state, images, scale)
    layout.keep_inside("Node details")
    imgui.end()


_OUTPUT_NAMES = {"logits": "logit", "log_probabilities": "log p", "probabilities": "p"}


def _details(e: Explanation, state: ExploreState, images: dict[str, TextureLike], scale: float) -> None:
    op = f"{e.kind} ({e.layer.label})" if e.layer.label and e.layer.label != e.kind else e.kind
    imgui.text(e.layer.name)
    imgui.text_colored(_DIM_RGBA, f"{op}, node {e.node}")
    imgui.text_colored(_DIM_RGBA, position_text(e))
    if e.probabilities is not None and e.output_kind != "probabilities":
        imgui.text(f"output: p = {fmt(e.probability)}   ({_OUTPUT_NAMES[e.output_kind]} {fmt(e.value)})")
    else:
        imgui.text(f"output: {fmt(e.value)}")
    if e.activation != "identity":
        imgui.text_colored(_DIM_RGBA, f"then: {e.activation.replace('affine', 'batch norm')}")
    imgui.separator()
    for line in formula_lines(e):
        imgui.text_wrapped(line)
    if e.patch is not None:
        _conv_images(e, state, images, scale)
    if e.window is not None:
        _pool_window(e)
    if e.probabilities is not None:
        _softmax_table(e)
    if e.terms is not None:
        _contribution_chart(e, scale)
        _terms_table(e, scale)


def _conv_images(e: Explanation, state: ExploreState, images: dict[str, TextureLike], scale: float) -> None:
    """The patch (in the node colours), the filter and the product (diverging, centred on zero), each with
    a colour bar saying what its colours stand for."""
    imgui.separator()
    c, kh, kw = e.patch.shape
    total = e.layer.inputs[0].in_shape[0] // e.layer.inputs[0].groups
    shown = f"first {c} of {total} channels, " if c < total else ""
    per_row, rows, px = heatmap_grid(c, kh, kw)
    px *= scale  # screen units per filter tap
    for name, caption in (("patch", "input patch x"), ("filter", "filter w"), ("product", "product w * x")):
        tex = images.get(name)
        imgui.text_colored(_DIM_RGBA, f"{caption}  ({shown}{c} x {kh} x {kw})")
        if tex is None:
            continue
        w = px * (per_row * (kw + 1) - 1)
        image(tex, (w, px * (rows * (kh + 1) - 1)))
        rng = state.detail_ranges.get(name)
        if rng is not None:
            lo, hi, cmap = rng
            signed = cmap == colormaps.DIVERGING
            labels = (fmt(lo, 3), "0", fmt(hi, 3)) if signed else (fmt(lo, 3), fmt(hi, 3))
            colors = colormaps.sample(cmap, np.linspace(0.0, 1.0, 33))
            state.bar_rects[name] = color_bar(
                colors, labels, width=max(w, 150 * scale), height=8 * scale, label_rgba=_DIM_RGBA
            )


def _pool_window(e: Explanation) -> None:
    imgui.separator()
    kh, kw = e.window.shape
    what = "(* the winner)" if e.pool == "max" else f"(their sum / {fmt(e.divisor)})"
    imgui.text_colored(_DIM_RGBA, f"the {kh} x {kw} window {what}")
    if kw > 6:  # wider than the panel (a global pool over a map): its range instead
        imgui.text(f"values from {fmt(float(e.window.min()), 4)} to {fmt(float(e.window.max()), 4)}")
        return
    if imgui.begin_table("window", kw, imgui.TableFlags_.borders | imgui.TableFlags_.sizing_fixed_fit):
        for y in range(kh):
            imgui.table_next_row()
            for x in range(kw):
                imgui.table_next_column()
                text = fmt(float(e.window[y, x]), 4)
                if y * kw + x == e.winner:
                    imgui.text_colored(_WIN_RGBA, text + " *")
                else:
                    imgui.text(text)
        imgui.end_table()


def _softmax_table(e: Explanation) -> None:
    """Every class: the output layer's value and its probability, this node's class highlighted."""
    imgui.separator()
    flags = imgui.TableFlags_.borders_inner_h | imgui.TableFlags_.sizing_stretch_same
    flags |= imgui.TableFlags_.scroll_y
    n = len(e.probabilities)
    height = (min(n, 12) + 1.5) * imgui.get_text_line_height_with_spacing()
    if imgui.begin_table("softmax", 3, flags, imgui.ImVec2(0, height)):
        imgui.table_setup_scroll_freeze(0, 1)
        imgui.table_setup_column("class")
        imgui.table_setup_column(_OUTPUT_NAMES.get(e.output_kind, "value"))
        imgui.table_setup_column("p")
        imgui.table_headers_row()
        for i in range(n):
            imgui.table_next_row()
            color = _WIN_RGBA if i == e.unit else None
            for text in (e.classes[i], fmt(float(e.outputs[i]), 4), fmt(float(e.probabilities[i]), 4)):
                imgui.table_next_column()
                if color is not None:
                    imgui.text_colored(color, text)
                else:
                    imgui.text(text)
        imgui.end_table()


def _contribution_chart(e: Explanation, scale: float) -> None:
    """The largest terms as horizontal bars, biggest on top (ImPlot)."""
    top = e.top_terms(10)
    if e.kind == "conv" or len(e.terms) <= 4:
        return  # a conv node's terms are in the product image; a few are all in the formula
    imgui.separator()
    what = "w * x" if e.weights is not None else "inputs"
    imgui.text_colored(_DIM_RGBA, f"largest contributions {what} (of {len(e.terms)})")
    vals = e.terms[top][::-1].astype(np.float64)
    ys = np.arange(len(vals), dtype=np.float64)
    labels = [e.source_names[i] for i in top[::-1]]
    flags = (
        implot.Flags_.no_legend
        | implot.Flags_.no_menus
        | implot.Flags_.no_box_select
        | implot.Flags_.no_mouse_text
    )
    if implot.begin_plot("##contrib", imgui.ImVec2(-1, (30 + 18 * len(vals)) * scale), flags):
        implot.setup_axes("", "", implot.AxisFlags_.auto_fit, implot.AxisFlags_.auto_fit)
        implot.setup_axis_ticks(implot.ImAxis_.y1, ys.tolist(), labels)
        for sign, color in ((vals >= 0, _BAR_POS), (vals < 0, _BAR_NEG)):
            if sign.any():
                spec = implot.Spec(fill_color=color, line_color=color, flags=implot.BarsFlags_.horizontal)
                implot.plot_bars("##" + str(color.x), vals[sign], ys[sign], 0.7, spec)
        implot.end_plot()


def _terms_table(e: Explanation, scale: float) -> None:
    """Every term of the sum (input, weight, product), scrollable."""
    n = len(e.terms)
    weighted = e.weights is not None
    cols = (e.inputs, e.weights, e.terms) if weighted else (e.inputs, e.terms)
    heads = ("x", "w", "w * x") if weighted else ("x", "term")
    if not imgui.collapsing_header(f"all {n} terms  ({', '.join(heads)})"):
        return
    # Columns as wide as their widest entry (never clipped); a table wider than the panel scrolls sideways.
    labels = e.source_names
    pad = imgui.get_style().cell_padding.x * 2
    numbers = [fmt(float(v), 4) for col in cols for v in col]
    # The longest string stands for its column (the numbers are digits, the labels share one pattern).
    from_w = imgui.calc_text_size(max([*labels, "from"], key=len)).x + pad
    num_w = imgui.calc_text_size(max([*numbers, "w * x"], key=len)).x + pad
    flags = (
        imgui.TableFlags_.borders_inner_h
        | imgui.TableFlags_.scroll_y
        | imgui.TableFlags_.scroll_x
        | imgui.TableFlags_.sizing_fixed_fit
        | imgui.TableFlags_.row_bg
    )
    height = (min(n + 1, 12) + 1) * imgui.get_text_line_height_with_spacing() + 4 * scale
    if imgui.begin_table("terms", 1 + len(cols), flags, imgui.ImVec2(0, height)):
        imgui.table_setup_scroll_freeze(1, 1)
        imgui.table_setup_column("from", imgui.TableColumnFlags_.width_fixed, from_w)
        for col in heads:
            imgui.table_setup_column(col, imgui.TableColumnFlags_.width_fixed, num_w)
        imgui.table_headers_row()
        clipper = imgui.ListClipper()
        clipper.begin(n)
        while clipper.step():
            for i in range(clipper.display_start, clipper.display_end):
                imgui.table_next_row()
                imgui.table_next_column()
                imgui.text(labels[i])
                for col in cols:
                    imgui.table_next_column()
                    imgui.text(fmt(float(col[i]), 4))
        imgui.end_table()
    if weighted:
        imgui.text(f"sum {fmt(e.weighted_sum)}  + bias {fmt(e.bias)}  = {fmt(e.pre_activation)}")
    else:
        imgui.text(f"sum {fmt(e.weighted_sum)}")


def gui_experiments_panel(
    state: ExploreState, rs: RobustnessState, ms: MorphState, scale: float, layout: PanelLayout
) -> None:
    """Bottom-right, folded at start: robustness experiments, morph between two drawings, compare mode.
    It grows up and left as it unfolds (the layout keeps it on screen)."""
    layout.place("Experiments", BOTTOM_RIGHT)
    imgui.set_next_window_collapsed(True, _FIRST)
    expanded = imgui.begin("Experiments", None, imgui.WindowFlags_.always_auto_resize)[0]
    if expanded and not state.one_channel:
        # Shifts, turns, MNIST centring, morphs and the LeNet / MLP comparison act on the drawing pad.
        _wrapped("These experiments act on the drawing pad: they apply to models that read one channel.")
    elif expanded:
        other = "MLP" if state.model == "lenet" else "LeNet"
        _, state.compare = imgui.checkbox(f"compare with the {other}, side by side", state.compare)
        if imgui.collapsing_header("robustness", imgui.TreeNodeFlags_.default_open):
            gui_robustness(rs, state.network_input)
        if imgui.collapsing_header("morph A -> B"):
            gui_morph(ms, state.drawing_input, (320 * scale, 180 * scale))
    layout.keep_inside("Experiments")
    imgui.end()


# -- the Embedding window --------------------------------------------------------------------------------

EMBED_WIDTH = 430  # window units at ui_scale 1, on a display at least WIDE_DISPLAY wide
EMBED_NARROW_WIDTH = 372  # below that: its widest rows (two radio buttons each) still fit
WIDE_DISPLAY = 1600  # window units at ui_scale 1
EMBED_MIN_HEIGHT, EMBED_MAX_HEIGHT = 300, 520
EMBED_SHARE = 0.6  # of the right-hand column's height; Node details takes the rest when a node is selected
_GRADIENT_KINDS = ("filter_gradients", "activation_gradients")


def embed_size(display: tuple[float, float], scale: float, layout: PanelLayout) -> tuple[float, float]:
    """The Embedding window's size for a display: the top share of the right-hand column, the same whether a
    node is selected or not (the plot does not jump when Node details opens under it)."""
    w, h = display
    width = (EMBED_WIDTH if w >= WIDE_DISPLAY * scale else EMBED_NARROW_WIDTH) * scale
    # The column runs from the top margin down to the Experiments tab (folded to its title bar).
    column = h - (2 * layout.margin + layout.gap) * scale - imgui.get_frame_height()
    height = min(max(column * EMBED_SHARE, EMBED_MIN_HEIGHT * scale), EMBED_MAX_HEIGHT * scale)
    return width, height


def gui_embedding_panel(state: ExploreState, textures: Textures, scale: float, layout: PanelLayout) -> None:
    """The 2D embedding of a conv layer's filters for the drawing (or of many images), at the top right of
    the scene; its close button hides it.  The plot takes the height the controls leave (measured the frame
    before), so resizing the window resizes it; a new display size or UI scale sizes it anew."""
    if not state.show_embedding:
        return
    io = imgui.get_io()
    display = (io.display_size.x, io.display_size.y)
    # Docked at the right: the network is framed in the room left of it (while the camera is at home), so
    # the window never covers the map its points outline (at the bottom it hid conv1).
    layout.place("Embedding", RIGHT)
    if not layout.folded("Embedding") and layout.size_due("Embedding", (display, scale)):
        imgui.set_next_window_size(imgui.ImVec2(*embed_size(display, scale, layout)), imgui.Cond_.always)
    expanded, keep = imgui.begin("Embedding", True, imgui.WindowFlags_.no_scrollbar)
    if not keep:
        state.show_embedding = False
    if not expanded:
        layout.keep_inside("Embedding")
        imgui.end()
        return
    panel = state.embed
    top = fill_window(panel, 80.0 * scale)
    gui_embed(panel, textures)
    if panel.mode == FILTERS and panel.layers:
        _, state.embed_follow = imgui.checkbox("follow the drawing", state.embed_follow)
        imgui.same_line()
        help_marker(
            "Filter gradients, activation maps and activation gradients are for the drawing on the pad: with "
            "this on they refresh when a stroke ends (the layout moves from where it was).  Filter "
            "coefficients are the same for every drawing.  A drawing has no label, so the gradients are of "
            "the cross-entropy against the network's own top guess."
        )
        if panel.kind in _GRADIENT_KINDS:
            guess = state.top_guesses(1)
            what = f" ({guess[0][0]})" if guess else ""
            _wrapped(f"loss: cross-entropy against the network's top guess{what}; a drawing has no label")
    elif panel.mode == IMAGES:
        _, state.embed_include_train = imgui.checkbox("add training images", state.embed_include_train)
        imgui.same_line()
        help_marker(
            "Test images come first, then training images up to the count chosen: MNIST has 10,000 test "
            "images, so 20,000 points need training images too.  Hover a point to see the image; click it "
            "to put the image on the drawing pad."
        )
        if state.embed_note:
            _wrapped(state.embed_note)
        if state.embed_data_note:
            _wrapped(state.embed_data_note)
            imgui.same_line()
            help_marker(
                f"{state.embed_data_reason}.  With MNIST's IDX files in DATA_DIR/MNIST/raw/, "
                "--data-dir DATA_DIR embeds its 10,000 test and 60,000 training digits."
            )
    measure_chrome(panel, top)
    layout.keep_inside("Embedding")
    imgui.end()


def _wrapped(text: str) -> None:
    imgui.push_text_wrap_pos(0.0)
    imgui.text_colored(_DIM_RGBA, text)
    imgui.pop_text_wrap_pos()
