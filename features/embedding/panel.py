"""The 2D embedding panel: an ImPlot scatter of one conv layer's filters placed by t-SNE, or of
many images placed by one layer's activations, linked to the scene's selection.

GUI only (GUI code edits state only): `gui_embed(state, textures)` draws inside the caller's
window and edits `EmbedPanelState`; it makes no GL calls and sends nothing to other processes.  The scene
hosts it like this, once per frame:

    result = embed_handle.poll()                     # features/embedding/handle.py
    if result is not None:
        state.show(result.ids, result.points, kind=result.kind, layer=result.layer,
                   final=result.final, labels=labels_of(result.ids) if images mode else None)
    p = embed_handle.progress
    state.set_progress(p.fraction if p else None, p.phase if p else "")
    if state.take_refresh() or state.refresh_due(trainer_step):
        ...get vectors for state.view from the worker, then embed_handle.request(*state.view, vectors, ids)
    if state.take_selection():
        ...select state.selected_filter of state.layer in 3D (or use state.selected_image)
    # 3D selection -> panel: state.selected_filter = index (in state.layer), or None
    ...
    gui_embed(state, textures)                       # inside the scene's ImGui window

`textures` gives the tooltip picture of a hovered point: a mapping id -> texture (imgui.ImTextureRef or a
GL texture name; UiTexture.ref), or a callable id -> texture or None.  For the filter kinds the scene keeps
one small UiTexture per filter filled from `thumbnails()`; for 20,000 images it keeps one UiTexture, fills
it in upload() with the image of `state.hovered` and answers only for that id (one frame late is fine).

Points move smoothly: `show()` starts a smoothstep from where the points are drawn now to the new layout,
over `animation_s` of GUI time (ImGui's delta time), matched by id; points new to the view start at their
target.  Axes fit to the data when the view (kind, layer) changes, and otherwise stay where the user zoomed.

`refresh_steps` False hides the "refresh every N steps" control (a scene without training steps refreshes on
its own events); `kind_notes` adds a line per vector kind to its radio button's and its points' tooltips.

Hover picks the point nearest the pointer within `pick_radius` pixels; a click (press and release without
a drag; a drag pans the plot) selects it: `selected_filter` (filters) or `selected_image` (images), and
`take_selection()` is True once.  The selected point is drawn with a ring, whoever selected it.

Length: one ImGui window with two modes (filters, images) whose hover, selection and painted
points share the same plot state; splitting the modes would split that state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from convscope.engine.ui.point_raster import rasterize, square_side
from convscope.engine.ui.widgets import TextureLike, as_texture_ref
from convscope.features.embedding.messages import IMAGES, KIND_LABELS, KINDS
from imgui_bundle import imgui, implot

FILTERS = "filters"
MODES = (FILTERS, IMAGES)
# Class colours (Tableau 10): distinct on the dark theme, and the same order as the explorer's bars.
PALETTE = (
    (0.122, 0.467, 0.706),
    (1.000, 0.498, 0.055),
    (0.173, 0.627, 0.173),
    (0.839, 0.153, 0.157),
    (0.580, 0.404, 0.741),
    (0.549, 0.337, 0.294),
    (0.890, 0.467, 0.761),
    (0.498, 0.498, 0.498),
    (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812),
)
FILTER_RGB = (0.35, 0.75, 1.0)
SELECTED_RGB = (1.0, 0.85, 0.1)
HOVER_RGB = (1.0, 1.0, 1.0)
_DIM = imgui.ImVec4(0.6, 0.6, 0.6, 1.0)

Textures = Mapping[int, TextureLike] | Callable[[int], TextureLike | None] | None


@dataclass
class EmbedPanelState:
    """What the panel shows and what the user chose; the scene reads and writes the public fields."""

    mode: str = FILTERS  # FILTERS or IMAGES
    layers: list[str] = field(default_factory=list)  # conv layers offered in filters mode (set_layers)
    layer: str = ""  # the layer whose filters are shown
    kind: str = KINDS[0]  # one of KINDS
    image_layers: list[str] = field(default_factory=list)  # layers offered in images mode
    image_layer: str = ""
    image_counts: tuple[int, ...] = (1000, 5000, 20000)  # choices of how many images to embed
    image_count: int = 20000
    class_names: tuple[str, ...] = ()  # label order, for the legend and tooltips
    refresh_every: int = 50  # training steps between refreshes of the filter view; 0: only on demand
    refresh_steps: bool = True  # offer "refresh every N steps" (a training run; the explorer has no steps)
    kind_notes: dict[str, str] = field(default_factory=dict)  # kind -> a line for its tooltips (what the
    # gradients are taken against, e.g. the explorer's "the network's own top guess"), set by the scene
    animation_s: float = 0.5  # seconds from the old layout to the new one
    pick_radius: float = 8.0  # pixels: how close the pointer must be to hover a point
    plot_size: tuple[float, float] = (-1.0, 320.0)  # ImPlot size; -1: the window's width
    chrome: float = 150.0  # window units of the host window that are not the plot (fill_window, per frame)
    thumb_size: float = 96.0  # tooltip picture side in pixels
    image_aspect: float = 1.0  # width / height of the images mode's pictures (H x W need not be square)
    marker_size: float = 5.0  # filter markers; images get a smaller one (many points)

    selected_filter: int | None = None  # a filter index in `layer`: set by a click here or by the scene
    selected_image: int | None = None  # an image id (images mode)
    hovered: int | None = None  # the id under the pointer this frame (read by the scene for textures)

    progress: float | None = None  # fraction of the running job, None when idle (set_progress)
    phase: str = ""
    status: str = ""  # a line under the plot (engine, time, errors), set by the scene

    # -- shown layout (show) -------------------------------------------------------------------------
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    labels: np.ndarray | None = None  # class per point (images mode)
    shown_view: tuple[str, str] | None = None  # (kind, layer) of the layout shown
    final: bool = True  # False while a big job's partial layouts arrive
    _from: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    _to: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    _t: float = 1.0  # animation parameter 0..1
    _by_class: list[np.ndarray] = field(default_factory=list)
    _fit: bool = False
    _refresh: bool = True  # the first frame asks for a layout
    _selection_changed: bool = False
    _last_refresh_step: int | None = None
    _press: tuple[float, float] | None = None  # where a click on a point began
    # pixels <- data: px = origin + scale * (x, y), from the last frame's plot (tests and picking)
    plot_origin: tuple[float, float] = (0.0, 0.0)
    plot_scale: tuple[float, float] = (1.0, -1.0)
    plot_rect: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1 in pixels
    widget_centers: dict[str, tuple[float, float]] = field(default_factory=dict)  # control -> pixel (tests)
    # -- many points as one picture (images mode; engine/ui/point_raster.py) ---------------------------
    raster_min_points: int = 2000  # from this many points on, they are painted into `raster_tex`
    raster_tex: TextureLike | None = None  # set by the scene: the texture it uploads `raster` into
    raster_tex_size: tuple[int, int] = (0, 0)  # that texture's size in pixels
    raster_size: tuple[int, int] = (0, 0)  # the plot area in framebuffer pixels: the size the scene makes
    raster: np.ndarray | None = (
        None  # (h, w, 4) uint8, the points painted this frame, for the scene to upload
    )
    raster_version: int = 0  # counts new `raster` pictures
    rastered: bool = False  # this frame's points went out as a picture (False: as ImPlot markers)
    _raster_key: tuple | None = None
    _raster_colors: np.ndarray | None = None  # (n, 4) uint8 per point, by class (made in show())

    # -- what the scene calls ------------------------------------------------------------------------
    @property
    def view(self) -> tuple[str, str]:
        """(kind, layer) of what the panel wants shown: give it to EmbedHandle.request."""
        return (IMAGES, self.image_layer) if self.mode == IMAGES else (self.kind, self.layer)

    def set_layers(self, layers: Sequence[str], image_layers: Sequence[str] | None = None) -> None:
        """The layers to offer (after a model change); keeps the choices that still exist."""
        self.layers = list(layers)
        if self.layer not in self.layers:
            self.layer = self.layers[0] if self.layers else ""
            self.selected_filter = None
            self._refresh = True
        if image_layers is not None:
            self.image_layers = list(image_layers)
            if self.image_layer not in self.image_layers:
                self.image_layer = self.image_layers[-1] if self.image_layers else ""

    def show(
        self,
        ids: np.ndarray,
        points: np.ndarray,
        *,
        kind: str,
        layer: str,
        final: bool = True,
        labels: np.ndarray | None = None,
    ) -> None:
        """A new layout (display coordinates, e.g. EmbedResult.points): animate to it from what is drawn."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        to = np.asarray(points, np.float32).reshape(-1, 2)
        if len(ids) != len(to):
            raise ValueError(f"show(): {len(ids)} ids for {len(to)} points")
        start = to.copy()
        view = (kind, layer)
        if len(self.ids) and len(ids) and _same_points(self.shown_view, view):
            # Points already on screen start where they are drawn now (mid-animation included).
            now = self.positions()
            order = np.argsort(self.ids, kind="stable")
            pos = np.clip(np.searchsorted(self.ids[order], ids), 0, len(order) - 1)
            hit = self.ids[order][pos] == ids
            start[hit] = now[order[pos[hit]]]
        if view != self.shown_view:
            self._fit = True
        self.shown_view = view
        self.ids, self._from, self._to, self._t = ids, start, to, 0.0
        self.final = final
        self.labels = None if labels is None else np.asarray(labels, np.int64).reshape(-1)
        if self.labels is not None and len(self.labels) != len(ids):
            raise ValueError(f"show(): {len(self.labels)} labels for {len(ids)} points")
        if self.labels is not None:
            self._by_class = [
                np.flatnonzero(self.labels == c) for c in range(int(self.labels.max(initial=-1)) + 1)
            ]
            rgb = np.array([PALETTE[c % len(PALETTE)] for c in range(len(PALETTE))]) * 255.0 + 0.5
            rgba = np.concatenate([rgb, np.full((len(PALETTE), 1), 255.0)], axis=1).astype(np.uint8)
            self._raster_colors = rgba[np.clip(self.labels, 0, None) % len(PALETTE)]
        else:
            self._by_class, self._raster_colors = [], None
        self._raster_key = None
        if self.hovered is not None and not bool((ids == self.hovered).any()):
            self.hovered = None

    def clear(self) -> None:
        """Forget the shown layout (the model changed)."""
        self.ids = np.zeros(0, np.int64)
        self._from = self._to = np.zeros((0, 2), np.float32)
        self.labels, self._by_class, self.shown_view, self.hovered = None, [], None, None

    def set_progress(self, fraction: float | None, phase: str = "") -> None:
        self.progress, self.phase = fraction, phase

    def positions(self) -> np.ndarray:
        """Where the points are drawn now: (n, 2), between the old and the new layout."""
        t = self._t
        s = t * t * (3.0 - 2.0 * t)  # smoothstep: starts and stops gently
        return self._from + (self._to - self._from) * np.float32(s)

    @property
    def animating(self) -> bool:
        return self._t < 1.0

    def request_refresh(self) -> None:
        self._refresh = True

    def take_refresh(self) -> bool:
        """True once after the user asked for a layout (Refresh now, another kind / layer / mode)."""
        out, self._refresh = self._refresh, False
        return out

    def refresh_due(self, step: int) -> bool:
        """True when `refresh_every` training steps passed since the last refresh (filters mode); the
        caller then refreshes.  Step counters that go back (reset, checkpoint) restart the count."""
        if self.mode != FILTERS or self.refresh_every <= 0:
            return False
        last = self._last_refresh_step
        if last is None or step < last or step - last >= self.refresh_every:
            self._last_refresh_step = step
            return last is not None
        return False

    def take_selection(self) -> bool:
        """True once after the user clicked a point (selected_filter / selected_image changed)."""
        out, self._selection_changed = self._selection_changed, False
        return out

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """Screen pixels of data points, as the last frame's plot drew them."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        return np.asarray(self.plot_origin) + p * np.asarray(self.plot_scale)

    def pixel_of(self, point_id: int) -> tuple[float, float]:
        """Where point `point_id` is drawn (last frame); for tests and tours."""
        i = int(np.flatnonzero(self.ids == point_id)[0])
        x, y = self.to_pixels(self.positions()[i])[0]
        return float(x), float(y)


def _same_points(a: tuple[str, str] | None, b: tuple[str, str] | None) -> bool:
    """Whether the ids of views a and b name the same things: images of any layer, or one layer's filters
    (whatever the kind), so a move between them means something."""
    if a is None or b is None:
        return False
    if a[0] == IMAGES or b[0] == IMAGES:
        return a[0] == b[0]
    return a[1] == b[1]


# -- tooltip pictures -------------------------------------------------------------------------------------


def thumbnails(kind: str, rows: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Pictures of per-filter rows for the tooltips, in [0, 1], one scale for the whole layer.

    Coefficients and filter gradients (`shape` (C_in, k, k)): RGB (n, k, k, 3) for 3-channel filters (the
    paper's figure 7), else the C_in channels tiled in a grid (n, h, w) with one-pixel gaps.  Activation
    maps and their gradients (`shape` (H, W)): (n, H, W).  Signed kinds map 0 to grey 0.5.
    """
    rows = np.asarray(rows, np.float32)
    n = len(rows)
    signed = kind != "activations"
    peak = float(np.abs(rows).max(initial=0.0)) or 1.0
    v = 0.5 + 0.5 * rows / peak if signed else np.clip(rows / peak, 0.0, 1.0)
    if kind in ("coefficients", "filter_gradients"):
        c, kh, kw = (int(s) for s in shape)
        v = v.reshape(n, c, kh, kw)
        if c == 3:
            return np.ascontiguousarray(v.transpose(0, 2, 3, 1))
        if c == 1:
            return np.ascontiguousarray(v[:, 0])
        g = int(np.ceil(np.sqrt(c)))
        out = np.full((n, g * (kh + 1) - 1, g * (kw + 1) - 1), 0.5 if signed else 0.0, np.float32)
        for ch in range(c):
            r, q = divmod(ch, g)
            out[:, r * (kh + 1) : r * (kh + 1) + kh, q * (kw + 1) : q * (kw + 1) + kw] = v[:, ch]
        return out
    h, w = (int(s) for s in shape)
    return np.ascontiguousarray(v.reshape(n, h, w))


# -- the panel --------------------------------------------------------------------------------------------


def _lookup(textures: Textures, point_id: int) -> TextureLike | None:
    if textures is None:
        return None
    if callable(textures) and not isinstance(textures, Mapping):
        return textures(point_id)
    return textures.get(point_id)


def _spec(rgb, size: float, alpha: float = 1.0, outline: tuple | None = None, weight: float = 1.0):
    """A circle marker with an outline (filters, rings)."""
    return implot.Spec(
        marker=implot.Marker_.circle,
        marker_size=size,
        marker_fill_color=imgui.ImVec4(*rgb, alpha),
        marker_line_color=imgui.ImVec4(*(outline or rgb), 1.0),
        fill_alpha=alpha,
        line_weight=weight,
    )


def _dot_spec(rgb, size: float):
    """A filled square without outline, for thousands of points: ImPlot spends ~50 vertices on an outlined
    circle and 4 on this one (20,000 points: 980k vertices and 2 ms of ImGui a frame, against 79k and
    0.7 ms, before llvmpipe draws them); at 2-3 pixels the two look alike."""
    return implot.Spec(
        marker=implot.Marker_.square,
        marker_size=size,
        marker_fill_color=imgui.ImVec4(*rgb, 1.0),
        marker_line_color=imgui.ImVec4(*rgb, 1.0),  # the legend's swatch; weight 0 draws no outlines
        line_weight=0.0,
    )


def _combo(label: str, current: str, options: Sequence[str]) -> tuple[bool, str]:
    changed = False
    if imgui.begin_combo(label, current or "-"):
        for option in options:
            if imgui.selectable(option, option == current)[0] and option != current:
                current, changed = option, True
        imgui.end_combo()
    return changed, current


def _record(state: EmbedPanelState, key: str) -> None:
    lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
    state.widget_centers[key] = ((lo.x + hi.x) / 2, (lo.y + hi.y) / 2)


def _controls(state: EmbedPanelState) -> None:
    for mode, label in ((FILTERS, "filters"), (IMAGES, "images")):
        clicked = imgui.radio_button(f"{label}##embed_mode", state.mode == mode)
        _record(state, mode)
        if clicked and state.mode != mode:
            state.mode = mode
            state._refresh = True
        imgui.same_line()
    imgui.new_line()
    width = imgui.get_font_size() * 7
    if state.mode == FILTERS and not state.layers:
        imgui.push_text_wrap_pos(0.0)
        imgui.text_colored(
            _DIM,
            "This network has no conv layers, so no filters to embed; the images mode "
            "embeds images by any of its layers.",
        )
        imgui.pop_text_wrap_pos()
    elif state.mode == FILTERS:
        imgui.set_next_item_width(width)
        changed, state.layer = _combo("layer##embed_layer", state.layer, state.layers)
        if changed:
            state.selected_filter = None
            state._refresh = True
        # The paper's radio buttons: one per vector kind.
        for i, kind in enumerate(KINDS):
            clicked = imgui.radio_button(KIND_LABELS[kind], state.kind == kind)
            _record(state, kind)
            if state.kind_notes.get(kind):
                imgui.set_item_tooltip(state.kind_notes[kind])
            if clicked and state.kind != kind:
                state.kind = kind
                state._refresh = True
            if i % 2 == 0:
                imgui.same_line()
        if state.refresh_steps:
            imgui.set_next_item_width(width)
            changed, every = imgui.input_int("refresh every N steps (0: never)", state.refresh_every, 10, 100)
            if changed:
                state.refresh_every = max(0, int(every))
        clicked = imgui.button("Refresh now")
        _record(state, "refresh")
        if clicked:
            state._refresh = True
    else:
        imgui.set_next_item_width(width)
        changed, state.image_layer = _combo("layer##embed_image_layer", state.image_layer, state.image_layers)
        imgui.same_line()
        imgui.set_next_item_width(width)
        counts = [str(c) for c in state.image_counts]
        changed_n, chosen = _combo("images##embed_count", str(state.image_count), counts)
        if changed_n:
            state.image_count = int(chosen)
        if changed or changed_n:
            state._refresh = True
        clicked = imgui.button("Compute")
        _record(state, "compute")
        if clicked:
            state._refresh = True


def fill_window(state: EmbedPanelState, min_height: float) -> float:
    """Inside the host's window, before gui_embed: the plot takes the height the window's controls leave
    (as measured the frame before), so resizing the window resizes the plot.  Returns the cursor's y for
    `measure_chrome`, which the host calls after its last control."""
    top = imgui.get_cursor_screen_pos().y
    state.plot_size = (-1.0, max(min_height, imgui.get_content_region_avail().y - state.chrome))
    state.plot_rect = (0.0, 0.0, 0.0, 0.0)  # set again by the panel only if it draws the plot
    return top


def measure_chrome(state: EmbedPanelState, top: float) -> None:
    """After the host window's last control: how much of it is not the plot (see fill_window)."""
    used = imgui.get_cursor_screen_pos().y - top
    state.chrome = used - (state.plot_size[1] if state.plot_rect != (0.0, 0.0, 0.0, 0.0) else 0.0)


def gui_embed(state: EmbedPanelState, textures: Textures = None) -> None:
    """Draw the panel inside the current ImGui window; only edits `state`."""
    imgui.push_id("embed")
    _controls(state)
    io = imgui.get_io()
    if state.animation_s > 0:
        state._t = min(1.0, state._t + io.delta_time / state.animation_s)
    else:
        state._t = 1.0
    if state.progress is not None:
        # The point count is of the layout shown, so only when that belongs to this view; a job that has
        # not started has no percentage yet (it read "queued 0 % (6 points)", the 6 of another view).
        n = len(state.ids) if _same_points(state.shown_view, state.view) else 0
        waiting = state.phase in ("queued", "waiting")
        overlay = state.phase if waiting else f"{state.phase} {100 * state.progress:.0f}%"
        overlay += f"  ({n} points)" if n and not waiting else ""
        imgui.progress_bar(float(np.clip(state.progress, 0.0, 1.0)), imgui.ImVec2(-1, 0), overlay)
    if _same_points(state.shown_view, state.view) and len(state.ids):
        _plot(state, textures)
    elif state.mode == FILTERS and not state.layers:
        state.hovered = None  # said above: nothing to lay out
    else:
        state.hovered = None  # what is shown belongs to another view: wait for this one's layout
        imgui.text_colored(_DIM, "computing the layout..." if state.progress is not None else "no layout yet")
    if state.status:
        imgui.push_text_wrap_pos(0.0)  # a narrow window wraps a long status instead of cutting it
        imgui.text_colored(_DIM, state.status)
        imgui.pop_text_wrap_pos()
    imgui.pop_id()


def _plot(state: EmbedPanelState, textures: Textures) -> None:
    images = state.mode == IMAGES
    flags = implot.Flags_.no_mouse_text | implot.Flags_.no_box_select | implot.Flags_.equal
    if not images:
        flags |= implot.Flags_.no_legend
    fitting = state._fit and len(state.ids)
    if fitting:
        implot.set_next_axes_to_fit()
        state._fit = False
    # Fitting leaves a margin, so the outermost points are not cut in half by the frame.
    implot.push_style_var(implot.StyleVar_.fit_padding, imgui.ImVec2(0.08, 0.08))
    opened = implot.begin_plot("##embed_plot", imgui.ImVec2(*state.plot_size), flags)
    if not opened:
        implot.pop_style_var()
        return
    ticks = implot.AxisFlags_.no_tick_labels
    implot.setup_axes("", "", ticks, ticks)
    implot.setup_axes_limits(-2.5, 2.5, -2.5, 2.5)  # display points have an RMS radius of 1
    if images:
        implot.setup_legend(implot.Location_.north_east)
    pts = state.positions().astype(np.float64)
    xs, ys = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    state.rastered = False
    if images and state._by_class:
        size = max(2.0, state.marker_size - 2.5)
        # Many points: one picture (a fit needs ImPlot to see every point, so that frame draws markers).
        if len(xs) >= state.raster_min_points and not fitting:
            state.rastered = _plot_raster(state, xs, ys, size)
        for c, idx in enumerate(state._by_class if not state.rastered else ()):
            if len(idx) == 0:
                continue
            name = state.class_names[c] if c < len(state.class_names) else str(c)
            rgb = PALETTE[c % len(PALETTE)]
            implot.plot_scatter(
                name, np.ascontiguousarray(xs[idx]), np.ascontiguousarray(ys[idx]), _dot_spec(rgb, size)
            )
    elif len(pts):
        implot.plot_scatter("filters", xs, ys, _spec(FILTER_RGB, state.marker_size, 0.85))

    # The data -> pixel map of this frame (linear axes), for picking and for the caller.
    p0, p1 = implot.plot_to_pixels(0.0, 0.0), implot.plot_to_pixels(1.0, 1.0)
    state.plot_origin = (p0.x, p0.y)
    state.plot_scale = (p1.x - p0.x, p1.y - p0.y)
    pos, size = implot.get_plot_pos(), implot.get_plot_size()
    state.plot_rect = (pos.x, pos.y, pos.x + size.x, pos.y + size.y)

    selected = state.selected_image if images else state.selected_filter
    _ring(state, xs, ys, selected, SELECTED_RGB, state.marker_size + 5.0)
    hovered = _pick(state, xs, ys) if implot.is_plot_hovered() else None
    state.hovered = hovered
    _ring(state, xs, ys, hovered, HOVER_RGB, state.marker_size + 3.0)
    _click(state, hovered, images)
    implot.end_plot()
    implot.pop_style_var()  # after end_plot: the fit happens there
    if hovered is not None:
        _tooltip(state, hovered, textures, images)


def _plot_raster(state: EmbedPanelState, xs: np.ndarray, ys: np.ndarray, size: float) -> bool:
    """The images as one picture over the current axis limits (point_raster.py says why); False when the
    scene has no texture of the plot's size yet (it makes one from `raster_size`), and markers are drawn.

    Each class still gets a one-point ImPlot item, for its legend entry; a class hidden from the legend
    is left out of the picture."""
    implot.setup_finish()  # limits and plot size are final from here on
    lim, psize = implot.get_plot_limits(), implot.get_plot_size()
    fb = imgui.get_io().display_framebuffer_scale
    w, h = int(round(psize.x * fb.x)), int(round(psize.y * fb.y))
    state.raster_size = (w, h)
    if state.raster_tex is None or state.raster_tex_size != (w, h) or w < 1 or h < 1:
        return False
    shown = []
    for c, idx in enumerate(state._by_class):
        if len(idx) == 0:
            continue
        name = state.class_names[c] if c < len(state.class_names) else str(c)
        rgb = PALETTE[c % len(PALETTE)]
        first = idx[:1]
        implot.plot_scatter(
            name, np.ascontiguousarray(xs[first]), np.ascontiguousarray(ys[first]), _dot_spec(rgb, size)
        )
        item = implot.internal.get_item(name)
        if item is None or item.show:
            shown.append(c)
    limits = (lim.x.min, lim.x.max, lim.y.min, lim.y.max)
    side = square_side(size, fb.x)
    key = (state._t, id(state._to), limits, (w, h), side, tuple(shown))
    if key != state._raster_key:
        state._raster_key = key
        # Class by class, as the markers are drawn: a later class covers an earlier one.
        keep = np.concatenate([state._by_class[c] for c in shown]) if shown else np.zeros(0, np.int64)
        state.raster = rasterize(xs[keep], ys[keep], state._raster_colors[keep], limits, (w, h), side)
        state.raster_version += 1
    implot.plot_image(
        "##points",
        as_texture_ref(state.raster_tex),
        implot.Point(lim.x.min, lim.y.min),
        implot.Point(lim.x.max, lim.y.max),
    )
    if implot.is_plot_hovered() and imgui.is_mouse_double_clicked(imgui.MouseButton_.left):
        state._fit = (
            True  # ImPlot's double-click fit would fit the picture, not the points: fit them next frame
        )
    return True


def _ring(state: EmbedPanelState, xs: np.ndarray, ys: np.ndarray, point_id: int | None, rgb, size) -> None:
    if point_id is None:
        return
    hit = np.flatnonzero(state.ids == point_id)
    if len(hit) == 0:
        return
    i = hit[:1]
    implot.plot_scatter(f"##ring{size:g}", xs[i].copy(), ys[i].copy(), _spec(rgb, size, 0.0, rgb, 2.0))


def _pick(state: EmbedPanelState, xs: np.ndarray, ys: np.ndarray) -> int | None:
    if len(xs) == 0:
        return None
    mouse = imgui.get_mouse_pos()
    ox, oy = state.plot_origin
    sx, sy = state.plot_scale
    d2 = (ox + sx * xs - mouse.x) ** 2 + (oy + sy * ys - mouse.y) ** 2
    i = int(np.argmin(d2))
    return int(state.ids[i]) if d2[i] <= state.pick_radius**2 else None


def _click(state: EmbedPanelState, hovered: int | None, images: bool) -> None:
    """Select on release without a drag, so dragging still pans the plot."""
    if imgui.is_mouse_clicked(imgui.MouseButton_.left):
        state._press = (imgui.get_mouse_pos().x, imgui.get_mouse_pos().y) if hovered is not None else None
    if imgui.is_mouse_released(imgui.MouseButton_.left) and state._press is not None:
        mouse = imgui.get_mouse_pos()
        moved = np.hypot(mouse.x - state._press[0], mouse.y - state._press[1])
        state._press = None
        if hovered is not None and moved <= imgui.get_io().mouse_drag_threshold:
            if images:
                state.selected_image = hovered
            else:
                state.selected_filter = hovered
            state._selection_changed = True


def _tooltip(state: EmbedPanelState, point_id: int, textures: Textures, images: bool) -> None:
    if not imgui.begin_tooltip():
        return
    if images:
        text = f"image {point_id}"
        if state.labels is not None:
            c = int(state.labels[np.flatnonzero(state.ids == point_id)[0]])
            text += f" - {state.class_names[c] if c < len(state.class_names) else c}"
    else:
        text = f"{state.layer} filter {point_id} - {KIND_LABELS.get(state.kind, state.kind)}"
    imgui.text(text)
    tex = _lookup(textures, point_id)
    if tex is not None:
        w = h = state.thumb_size
        if images:  # the longer side gets thumb_size, the picture keeps its shape
            a = max(state.image_aspect, 1e-3)
            w, h = (w, h / a) if a >= 1.0 else (w * a, h)
        imgui.image(as_texture_ref(tex), imgui.ImVec2(w, h))
    note = None if images else state.kind_notes.get(state.kind)
    if note:
        imgui.text_colored(_DIM, note)
    imgui.end_tooltip()


__all__ = ["FILTERS", "IMAGES", "MODES", "EmbedPanelState", "gui_embed", "thumbnails"]
