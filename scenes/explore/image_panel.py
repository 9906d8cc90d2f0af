"""The image panel: what a colour model is fed, shown instead of the drawing pad for 3-channel inputs.

`ImagePanelState` (no GL, no worker) holds where the pictures come from and which one is picked: a path
typed in (an image file, a folder of images or an ImageFolder, features/data/image_sources.py) or one of
the test sets found under `--data-dir` (CIFAR-10 without pickles, ImageFolders).  Prev / Next and a list
walk the pictures; the picked one shows with its true label.  A file, folder or picture that cannot be read
leaves one line in the panel and the previous picture in place (its index moves on, so Next gets past it).

`ImagePanel` is what the scene holds, once per frame:

    panel.gui(state, ui_scale, layout)         # the ImGui window (edits the panel's state only)
    x = panel.take_input(input_spec)           # the model's tensor when the picture or the spec changed
    if x is not None: worker.submit(x)
    panel.upload(ctx)                          # the picture and what the network sees, to textures

`model_input_spec(worker)` says whether the panel applies: the worker's InputSpec, or None while the
worker offers none (then the scene keeps its drawing pad).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from convscope.engine.ui.layout import LEFT, PanelLayout
from convscope.engine.ui.widgets import image
from convscope.features.data.image_sources import (
    DatasetEntry,
    ImageSource,
    SourceError,
    find_datasets,
    open_path,
)
from convscope.scenes.explore.preprocess import InputDescription, denormalize, to_model_input
from imgui_bundle import imgui
from PIL import Image

WINDOW = "Image"
THUMB_PX = (
    160  # the picked picture's texture edge (letterboxed); shown at most this many window units x scale
)
SEEN_SIDE = 112.0  # "model input" (what the network sees), in window units at UI scale 1, as beside the pad
MIN_SIDE = 96.0  # window units at UI scale 1: the smallest the picture is shown
GUESS_WIDTH = 136.0  # window units at UI scale 1: the top-guess bars at the least
GUESS_MAX_WIDTH = 3 * GUESS_WIDTH  # and at the most (a longer class name is cut at both ends)
CHROME = 140.0  # window units at UI scale 1: the panel without its picture (title, three rows, padding)
PATH_CHOICE = "file or folder..."  # the first source: a path typed in
_ERROR_RGBA = imgui.ImVec4(1.0, 0.45, 0.4, 1.0)
_DIM_RGBA = imgui.ImVec4(0.75, 0.78, 0.85, 1.0)
_RIGHT_RGBA = imgui.ImVec4(0.45, 0.85, 0.45, 1.0)


def model_input_spec(worker) -> InputDescription | None:
    """The worker's InputSpec (shape, mean, std, classes), or None while it offers none."""
    return getattr(worker, "input_spec", None)


def takes_images(spec: InputDescription | None) -> bool:
    """The model's input is a 3-channel image: the image panel feeds it, not the drawing pad."""
    return spec is not None and len(spec.shape) == 3 and int(spec.shape[0]) == 3


def thumbnail(pixels: np.ndarray, side: int = THUMB_PX) -> np.ndarray:
    """(side, side, 3) uint8: the whole picture fitted inside, centred on black (nothing cut)."""
    rgb = np.asarray(pixels)
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Display only: nearest when enlarging keeps a 32 px CIFAR picture's pixels visible, box when shrinking.
    how = Image.Resampling.NEAREST if scale >= 1.0 else Image.Resampling.BOX
    small = np.asarray(Image.fromarray(np.ascontiguousarray(rgb), "RGB").resize(size, how))
    out = np.zeros((side, side, 3), np.uint8)
    top, left = (side - size[1]) // 2, (side - size[0]) // 2
    out[top : top + size[1], left : left + size[0]] = small
    return out


@dataclass
class ImagePanelState:
    data_dir: str = ""  # --data-dir: where test sets are looked for ("" = none)
    path_text: str = ""  # the path field
    datasets: list[DatasetEntry] = field(default_factory=list)  # found under data_dir
    notes: list[str] = field(default_factory=list)  # what was found there but cannot be read
    choice: int = 0  # 0: a path typed in; k: datasets[k - 1]
    source: ImageSource | None = None  # the pictures being walked
    index: int = -1  # the picked picture's index in `source` (-1: none yet)
    pixels: np.ndarray | None = None  # the picture shown and fed: (h, w, 3) uint8, or float in [0, 1]
    thumb: np.ndarray | None = None  # `pixels` letterboxed for the panel
    name: str = ""  # the picture shown (kept when a later pick fails)
    label: str = ""  # its true label ("" where unknown)
    error: str | None = None  # one line: the newest failure
    version: int = 0  # bumps each time `pixels` changes
    scroll_list: bool = True  # bring the picked row into view when the list opens
    button_centers: dict[str, tuple[float, float]] = field(default_factory=dict)  # screen, for tests

    def find(self) -> None:
        """Look for test sets under data_dir (cheap: folders are only peeked into)."""
        if self.data_dir:
            self.datasets, self.notes = find_datasets(self.data_dir)

    def open_path(self, text: str) -> bool:
        """Open a file, a folder or an ImageFolder and pick its first picture; on failure keep all."""
        self.path_text = text
        try:
            source = open_path(text)
        except SourceError as exc:
            self.error = str(exc)
            return False
        return self._use(source, choice=0)

    def open_dataset(self, k: int) -> bool:
        """Open datasets[k - 1] and pick its first picture; on failure keep all."""
        try:
            source = self.datasets[k - 1].open()
        except SourceError as exc:
            self.error = str(exc)
            return False
        return self._use(source, choice=k)

    def _use(self, source: ImageSource, choice: int) -> bool:
        if len(source) == 0:
            self.error = f"{source.title}: no pictures"
            return False
        before = (self.source, self.index)
        self.source, self.index = source, -1
        if not self.select(0):
            self.source, self.index = before  # the previous picture stays, with the place it came from
            return False
        self.choice = choice
        return True

    def select(self, i: int) -> bool:
        """Pick picture i of the source (wrapping around); an unreadable one keeps the picture shown."""
        if self.source is None or len(self.source) == 0:
            return False
        i %= len(self.source)
        self.index = i
        self.scroll_list = True
        try:
            pixels = self.source.pixels(i)
        except SourceError as exc:
            self.error = f"{exc}; still showing {self.name}" if self.pixels is not None else str(exc)
            return False
        self.pixels = pixels
        self.thumb = thumbnail(pixels)
        self.name = self.source.name(i)
        self.label = self.source.label(i)
        self.error = None
        self.version += 1
        return True

    def step(self, delta: int) -> bool:
        return self.select(self.index + delta) if self.source is not None else False

    def show_pixels(self, pixels: np.ndarray, name: str, label: str = "") -> None:
        """A picture from elsewhere (the Embedding window's thumbnail of a training image), shown and fed
        on its own: there is no source to walk from it."""
        self.source, self.index = None, -1
        self.pixels = np.ascontiguousarray(pixels)
        self.thumb = thumbnail(self.pixels)
        self.name, self.label, self.error = name, label, None
        self.version += 1


class ImagePanel:
    """The panel's state, its GUI and its two textures (see the module docstring)."""

    def __init__(self, data_dir: str = "") -> None:
        self.state = ImagePanelState(data_dir=data_dir or "")
        self.state.find()
        self.seen: np.ndarray | None = None  # (H, W, 3) in [0, 1]: the last tensor sent, de-normalised
        self._seen_version = 0
        self._sent_key: tuple | None = None
        self._thumb_tex = None  # UiTexture, made in upload()
        self._seen_tex = None
        self._opened_default = False

    def open_default(self) -> None:
        """The first test set found, so a colour model has a picture from the start."""
        self._opened_default = True
        if self.state.pixels is None and self.state.datasets:
            self.state.open_dataset(1)

    def take_input(self, spec: InputDescription, generation: object = None) -> np.ndarray | None:
        """The model's tensor when the picture, the model's input or `generation` (the scene's network
        version: a reloaded model has not seen the picture) changed since the last call."""
        if not self._opened_default:
            self.open_default()
        s = self.state
        if s.pixels is None:
            return None
        key = (s.version, tuple(spec.shape), tuple(spec.mean), tuple(spec.std), generation)
        if key == self._sent_key:
            return None
        try:
            x = to_model_input(s.pixels, spec)
        except ValueError as exc:
            s.error = str(exc)
            self._sent_key = key  # the same picture and spec would fail the same way
            return None
        self._sent_key = key
        self.seen = np.clip(denormalize(x, spec.mean, spec.std), 0.0, 1.0).transpose(1, 2, 0)
        self._seen_version += 1
        return x

    # -- GPU side --------------------------------------------------------------------------------------

    def upload(self, ctx) -> None:
        """The picture and what the network sees, into textures (made or remade when sizes change)."""
        from convscope.engine.gpu.imgui_renderer import UiTexture  # the GUI side stays GL-free

        s = self.state
        if s.thumb is not None:
            if self._thumb_tex is None:
                self._thumb_tex = UiTexture(ctx, (THUMB_PX, THUMB_PX), 3, smooth=False)
            self._thumb_tex.sync(s.thumb, s.version)
        if self.seen is not None:
            h, w = self.seen.shape[:2]
            if self._seen_tex is not None and self._seen_tex.size != (w, h):
                self._seen_tex.release()
                self._seen_tex = None
            if self._seen_tex is None:
                self._seen_tex = UiTexture(ctx, (w, h), 3, smooth=False)
            self._seen_tex.sync(self.seen, self._seen_version)

    def release(self) -> None:
        for tex in (self._thumb_tex, self._seen_tex):
            if tex is not None:
                tex.release()
        self._thumb_tex = self._seen_tex = None

    # -- GUI ---------------------------------------------------------------------------------------------

    def gui(self, explore_state, scale: float, layout: PanelLayout) -> None:
        """Top of the left column, where the drawing pad is for grey models.  `explore_state`: the scene's
        ExploreState, read for the top guesses and the class names only."""
        side = picture_side(layout, THUMB_PX * scale, scale)
        layout.place(WINDOW, LEFT)
        imgui.begin(WINDOW, None, imgui.WindowFlags_.always_auto_resize | imgui.WindowFlags_.no_collapse)
        gui_image_panel(
            self.state,
            self._thumb_tex.ref if self._thumb_tex is not None and self.state.thumb is not None else None,
            self._seen_tex.ref if self._seen_tex is not None and self.seen is not None else None,
            [] if self.state.pixels is None else explore_state.top_guesses(3),  # no picture: no reading
            scale,
            side,
            explore_state.classes,
        )
        layout.keep_inside(WINDOW)
        imgui.end()


def picture_side(layout: PanelLayout, full: float, scale: float) -> float:
    """The picture's side in window units: `full`, less when the left column (this panel above the Network
    panel, as measured last frame) would not fit the display's height; never under MIN_SIDE.  The rest of
    the panel is taken as CHROME, not measured, so the picture does not shrink a little every frame (as
    the drawing pad's side is found in scenes/explore/scene.py)."""
    network = layout.previous("Network")
    if network is None:
        return full
    room = layout.display[1] - (2 * layout.margin + layout.gap + CHROME) * scale - network.h
    return float(min(max(room, MIN_SIDE * scale), full))


def gui_image_panel(
    s: ImagePanelState,
    thumb,
    seen,
    guesses: list[tuple[str, float]],
    scale: float,
    side: float,
    classes: tuple[str, ...] = (),
) -> None:
    """The panel's contents inside the caller's window; edits `s` only.  Rows: where the pictures come from;
    the picture, what the model gets and its top guesses side by side; Prev / Next with the list and the
    picture's name and true label; one line for an error.  Every row is there on every frame (placeholders
    while empty, the list in a drop-down), so the panel keeps its height and the Network panel stacked
    under it never has to move."""
    style = imgui.get_style()
    gap = style.item_spacing.x
    seen_side = max(min(SEEN_SIDE * scale, side - imgui.get_text_line_height_with_spacing()), 16.0 * scale)
    bars = guess_width(classes, scale)
    width = side + seen_side + bars + 2 * gap

    titles = [PATH_CHOICE] + [d.title for d in s.datasets]
    imgui.set_next_item_width(width * 0.42)
    changed, k = imgui.combo("##source", s.choice, titles)
    imgui.set_item_tooltip(
        f"{titles[s.choice]}: where the pictures come from (a path typed beside, or a test set in --data-dir)"
    )
    if changed and k != s.choice:
        if k == 0:
            s.choice = 0  # type a path beside; the picture shown stays until something is opened
        else:
            s.open_dataset(k)
    imgui.same_line()
    button = imgui.calc_text_size("Open").x + 2 * style.frame_padding.x
    imgui.set_next_item_width(width * 0.58 - button - 2 * gap)
    flags = imgui.InputTextFlags_.enter_returns_true
    entered, s.path_text = imgui.input_text_with_hint("##path", "image file or folder", s.path_text, flags)
    _remember(s, "path")
    imgui.same_line()
    clicked = imgui.button("Open")
    _remember(s, "open")
    if clicked or entered:
        s.open_path(s.path_text)

    if thumb is not None:
        image(thumb, (side, side))
    else:
        imgui.dummy(imgui.ImVec2(side, side))
    imgui.same_line()
    imgui.begin_group()
    imgui.text_colored(_DIM_RGBA, "model input")
    if seen is not None:
        image(seen, (seen_side, seen_side))
    imgui.end_group()
    imgui.same_line()
    imgui.begin_group()
    imgui.text("top guesses")
    _gui_guesses(s, guesses, bars)
    imgui.end_group()

    _gui_steps(s)
    imgui.same_line()
    if s.pixels is None:
        _one_line("open a picture" if not s.datasets else "pick a test set above", _rest(width), _DIM_RGBA)
    else:
        if s.label:  # the true label first: it is what the guesses are checked against
            imgui.text_colored(_DIM_RGBA, "true label")
            imgui.same_line()
            imgui.text(s.label)
            imgui.same_line()
        _one_line(s.name, _rest(width), _DIM_RGBA if s.label else None)
    if s.error:
        _one_line(s.error, width, _ERROR_RGBA)
    else:
        _one_line(s.notes[0] if s.notes else "", width, _DIM_RGBA)


def _rest(width: float) -> float:
    """What is left of a row `width` wide after the items already on it."""
    return width - imgui.get_cursor_pos_x() + imgui.get_style().window_padding.x


def _one_line(text: str, width: float, colour: imgui.ImVec4 | None = None) -> None:
    """`text` cut to one line of `width` (the whole of it in a tooltip when cut)."""
    shown = text
    if imgui.calc_text_size(text).x > width:
        lo, hi = 0, len(text)
        while lo < hi:  # the longest prefix that fits with its ellipsis
            mid = (lo + hi + 1) // 2
            if imgui.calc_text_size(text[:mid] + "...").x <= width:
                lo = mid
            else:
                hi = mid - 1
        shown = text[:lo] + "..."
    if colour is None:
        imgui.text(shown)
    else:
        imgui.text_colored(colour, shown)
    if shown != text:
        imgui.set_item_tooltip(text)


def _remember(s: ImagePanelState, name: str) -> None:
    lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
    s.button_centers[name] = ((lo.x + hi.x) / 2, (lo.y + hi.y) / 2)


def _gui_steps(s: ImagePanelState) -> None:
    """Prev / Next, and where we are: a drop-down of every picture (clipped: a test set has thousands)."""
    n = len(s.source) if s.source is not None else 0
    imgui.begin_disabled(n < 2)
    if imgui.arrow_button("##prev", imgui.Dir.left):
        s.step(-1)
    _remember(s, "prev")
    imgui.same_line()
    if imgui.arrow_button("##next", imgui.Dir.right):
        s.step(1)
    _remember(s, "next")
    imgui.end_disabled()
    imgui.same_line()
    where = f"{s.index + 1:,} of {n:,}" if n else "none open"
    imgui.set_next_item_width(imgui.calc_text_size("00,000 of 00,000").x + imgui.get_frame_height())
    imgui.begin_disabled(n == 0)
    if imgui.begin_combo("##pictures", where, imgui.ComboFlags_.height_large):
        clipper = imgui.ListClipper()
        clipper.begin(n)
        if s.index >= 0:
            clipper.include_item_by_index(s.index)
        while clipper.step():
            for i in range(clipper.display_start, clipper.display_end):
                label = s.source.label(i)
                text = f"{s.source.name(i)}   {label}" if label else s.source.name(i)
                clicked, _ = imgui.selectable(f"{text}##{i}", i == s.index)
                if i == s.index and s.scroll_list:
                    imgui.set_scroll_here_y()
                    s.scroll_list = False
                if clicked and i != s.index:
                    s.select(i)
        clipper.end()
        imgui.end_combo()
    else:
        s.scroll_list = True  # the next time the list opens, it opens at the picked picture
    _remember(s, "list")
    imgui.end_disabled()


def guess_width(classes: tuple[str, ...], scale: float) -> float:
    """Width of the top-guess bars: the longest class name with "100.0 %" fits on a bar (a fixed width cut
    "automobile" to "mobile"), within GUESS_WIDTH .. GUESS_MAX_WIDTH; the same for every picture, so the
    panel keeps its width."""
    pad = 2 * imgui.get_style().frame_padding.x + 6 * scale
    widest = max((imgui.calc_text_size(f"{c}   100.0 %").x for c in classes), default=0.0)
    return float(min(max(GUESS_WIDTH * scale, widest + pad), GUESS_MAX_WIDTH * scale))


def _gui_guesses(s: ImagePanelState, guesses: list[tuple[str, float]], width: float) -> None:
    """Three bars, always (empty until the network answers), the first green when it names the true label."""
    for rank in range(3):
        label, p = guesses[rank] if rank < len(guesses) else ("", 0.0)
        if rank == 0:
            right = bool(s.label) and label == s.label
            colour = imgui.ImVec4(0.35, 0.7, 0.35, 1.0) if right else imgui.ImVec4(0.95, 0.65, 0.2, 1.0)
            imgui.push_style_color(imgui.Col_.plot_histogram, colour)
        if label:
            text = f"{label}   {100.0 * p:5.1f} %"
        else:
            text = "waiting for the network..." if rank == 0 and s.pixels is not None else ""
        imgui.progress_bar(p, imgui.ImVec2(width, 0), text)
        if rank == 0:
            imgui.pop_style_color()
