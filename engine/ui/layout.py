"""PanelLayout: where every ImGui panel goes, kept on screen, and what the panels leave free.

A scene calls `begin_frame(display, scale)` once per frame before its panels, then per panel
`place(name, anchor)` right before `imgui.begin(name)` and `keep_inside(name)` right before
`imgui.end()`.  Anchors:
  LEFT / RIGHT      a column at that edge, panels stacked top to bottom in call order
  CENTER_RIGHT      the right edge, vertically centred
  BOTTOM_LEFT / BOTTOM_RIGHT   that corner
  BESIDE            bottom, just right of the left column (a window that refers to the network): a band
                    under the network, which is framed above it
Positions are applied on the first frames and again for a few frames after every change of the
window size (so the layout reflows), otherwise only on first use (the user may move a panel).
`keep_inside` clamps the current window into the display every frame: no panel is ever left
off-screen, after a resize or when it grows (a panel larger than the display keeps its top-left
corner on screen).  `free()` is the part of the display between the left and the right docked panels
(LEFT, BOTTOM_LEFT / RIGHT, CENTER_RIGHT) and above a BESIDE band, measured this frame: the camera fits
the network into it.  `size_due` tells a panel sized by the layout when to size it anew.
All in window units (ImGui's display units); `to_framebuffer` scales a rectangle to pixels.

Presentation mode (`begin_frame(..., presentation=True)`, the app's F5): the frame it starts every panel
placed is folded to its title bar (and unfolded the frame it ends); `flags()` lets a panel that is never
folded otherwise be folded and opened by a click on its title bar meanwhile; folded panels do not count
in `free()`: the network gets the whole screen, the tabs sit in its corners (a network's corners are
empty: its layers narrow towards the output), and a panel opened again docks as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgui_bundle import imgui

LEFT, RIGHT, CENTER_RIGHT, BOTTOM_LEFT, BOTTOM_RIGHT, BESIDE = (
    "left",
    "right",
    "center_right",
    "bottom_left",
    "bottom_right",
    "beside",
)
_DOCK_LEFT = (LEFT, BOTTOM_LEFT)
_DOCK_RIGHT = (RIGHT, CENTER_RIGHT)
_PASSING = "+passing"  # marks the anchor of a panel that does not dock
_NO_KEY = object()  # size_due's "never asked"
SETTLE_FRAMES = 3  # frames positions are re-applied after a change: stacked panels learn their heights


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def inside(self, w: float, h: float, tol: float = 0.5) -> bool:
        return self.x >= -tol and self.y >= -tol and self.right <= w + tol and self.bottom <= h + tol


def to_framebuffer(r: Rect, scale: tuple[float, float]) -> tuple[float, float, float, float]:
    """(x, y, w, h) in framebuffer pixels."""
    return (r.x * scale[0], r.y * scale[1], r.w * scale[0], r.h * scale[1])


class PanelLayout:
    def __init__(self, margin: float = 10.0, gap: float = 8.0) -> None:
        self.margin = margin  # window units at scale 1, between a panel and the display's edge
        self.gap = gap  # between stacked panels
        # Window units kept clear at the bottom centre for a host's own strip (the scene selector): a BESIDE
        # band sits above it and the free area ends there.
        self.bottom_reserve = 0.0
        self.display = (0.0, 0.0)
        self.scale = 1.0
        self.rects: dict[str, tuple[str, Rect]] = {}  # this frame's panels: anchor, measured rect
        self._previous: dict[str, tuple[str, Rect]] = {}
        self._settle = 0  # frames left that re-apply positions
        self._next = {LEFT: 0.0, RIGHT: 0.0}
        self.reflows = 0  # display size changes seen (tests)
        self._frame: int | None = None  # ImGui frame of the last begin_frame
        self._refit = False  # this frame fits every panel placed to its contents (a new scale)
        self._docked: frozenset[str] = frozenset()  # the docked panels of the last frame
        self._stack: dict[str, float] = {}  # heights of the stacked (LEFT / RIGHT) panels last frame
        self._unfolded: dict[str, tuple[float, float]] = {}  # a folded panel's size before it was folded
        self._avoid: dict[str, tuple[float, float]] = {}  # a passing panel's point not to cover (avoid())
        self._aside: set[str] = set()  # passing panels moved beside the left column to keep off that point
        self.presentation = False
        self._fold: bool | None = None  # this frame folds (True) or unfolds (False) every panel placed
        self.collapsed: set[str] = set()  # panels measured folded to their title bar this frame
        self._collapsed_prev: set[str] = set()
        self._folded_before: set[str] = set()  # panels already folded when presentation mode began
        self._size_keys: dict[str, object] = {}  # what each panel's size was last worked out from (size_due)

    def begin_frame(
        self, display: tuple[float, float], scale: float = 1.0, presentation: bool = False
    ) -> None:
        display = (float(display[0]), float(display[1]))
        frame = imgui.get_frame_count()
        # Frames without this layout (its scene was hidden behind another that may use the same
        # window names, "Network" say) count like a resize: every panel is put back in place.
        skipped = self._frame is not None and frame != self._frame + 1
        first = self._frame is None
        self._frame = frame
        self._fold = None if presentation == self.presentation else presentation
        if self._fold is True:  # what the user had folded stays folded when presentation mode ends
            self._folded_before = set(self.collapsed)
        # A panel whose rows fill its width (colour bars, -1 wide widgets) would keep the width of a larger
        # scale forever: on a new scale each panel is fitted to its contents once.
        self._refit = scale != self.scale and not first
        self.presentation = presentation
        # A docked panel that opened, closed or moved to another dock (the Embedding window), or a bottom band
        # whose top moved (folded by its arrow), changes the free area like a resize.
        docked = frozenset(
            (n, a, round(r.y) if a == BESIDE else 0)
            for n, (a, r) in self.rects.items()
            if a in _DOCK_LEFT + _DOCK_RIGHT + (BESIDE,)
        )
        redocked, self._docked = docked != self._docked and not first, docked
        # A stacked panel whose height changed (a section opened, or its first frames after a scene switch,
        # when it still had another scene's size) moves the panels under it: positions are applied again.
        stack = {n: r.h for n, (a, r) in self.rects.items() if a in (LEFT, RIGHT)}
        restack, self._stack = stack != self._stack and not first, stack
        if display != self.display or scale != self.scale or skipped or self._fold is not None or redocked:
            self.reflows += 1
            self._settle = SETTLE_FRAMES
        elif restack:
            self._settle = max(self._settle - 1, 1)
        else:
            self._settle = max(self._settle - 1, 0)
        self.display, self.scale = display, scale
        self._previous, self.rects = self.rects, {}
        self._collapsed_prev, self.collapsed = self.collapsed, set()
        m = self.margin * scale
        self._next = {LEFT: m, RIGHT: m}

    @property
    def reflowing(self) -> bool:
        """Positions are being (re)applied this frame: the first frames, and after a resize."""
        return self._settle > 0

    def place(
        self, name: str, anchor: str, always: bool = False, appearing: bool = False, dock: bool = True
    ) -> None:
        """Set the next window's position for `anchor`; call right before imgui.begin(name).

        `always`: every frame (panels that follow the display, like a kiosk's); `appearing`: also
        each time the window appears (a panel that opens and closes); `dock=False`: a passing panel
        (one that comes and goes with a selection) that does not shrink the free area."""
        w, h = self.display
        m = self.margin * self.scale
        prev = self._previous.get(name)
        height = prev[1].h if prev is not None else 0.0
        if anchor == RIGHT and not dock:
            # A passing panel at the right (node details) opens beside the docked right panels, not over them.
            edges = [
                r.x for n, (a, r) in self._previous.items() if a in _DOCK_RIGHT and r.w > 0 and n != name
            ]
            x = min(edges, default=w) - (self.gap * self.scale if edges else m)
            pos, pivot = (x, m), (1.0, 0.0)
            # Where it would cover the point it refers to (`avoid`: the node it explains), it goes beside
            # the left column instead, at once.
            target = self._avoid.get(name)
            aside = False
            if target is not None and prev is not None and prev[1].w > 0:
                if x - prev[1].w <= target[0] <= x and m <= target[1] <= m + prev[1].h:
                    left = self.left_edge(previous=True)
                    pos, pivot = (left + (self.gap * self.scale if left > 0 else m), m), (0.0, 0.0)
                    aside = True
            if aside != (name in self._aside):  # moved aside, or back once the point is clear again
                always = True
                self._aside ^= {name}
        elif anchor in (LEFT, RIGHT):
            y = self._next[anchor]
            self._next[anchor] = y + height + self.gap * self.scale
            pos, pivot = ((m, y), (0.0, 0.0)) if anchor == LEFT else ((w - m, y), (1.0, 0.0))
        elif anchor == CENTER_RIGHT:
            pos, pivot = (w - m, h / 2.0), (1.0, 0.5)
        elif anchor == BOTTOM_LEFT:
            pos, pivot = (m, h - m), (0.0, 1.0)
        elif anchor == BOTTOM_RIGHT:
            pos, pivot = (w - m, h - m), (1.0, 1.0)
        elif anchor == BESIDE:
            x = self.left_edge(previous=True) + self.gap * self.scale
            pos, pivot = (x, h - m - self.bottom_reserve), (0.0, 1.0)
        else:
            raise ValueError(f"unknown anchor {anchor!r}")
        if always or self.reflowing:
            cond = imgui.Cond_.always
        elif appearing:
            cond = imgui.Cond_.appearing
        else:
            cond = imgui.Cond_.first_use_ever
        imgui.set_next_window_pos(imgui.ImVec2(*pos), cond, imgui.ImVec2(*pivot))
        if self._fold is not None:
            imgui.set_next_window_collapsed(self._fold or name in self._folded_before, imgui.Cond_.always)
        if self.folded(name):  # a tab as wide as its title, not as the panel it folds
            if name not in self._unfolded and prev is not None and prev[1].w > 0:
                self._unfolded[name] = (prev[1].w, prev[1].h)  # given back when it opens again
            imgui.set_next_window_size(imgui.ImVec2(self.tab_width(name), 0.0), imgui.Cond_.always)
        elif name in self._unfolded:
            size = self._unfolded.pop(name)
            if name not in self._folded_before:  # a tab before presentation mode keeps its tab's width
                imgui.set_next_window_size(imgui.ImVec2(*size), imgui.Cond_.always)
        elif self._refit:
            imgui.set_next_window_size(imgui.ImVec2(0.0, 0.0), imgui.Cond_.always)  # 0: fit the contents
        if not dock:
            anchor += _PASSING
        self.rects[name] = (anchor, Rect(pos[0], pos[1], 0.0, 0.0))  # until keep_inside measures it

    @staticmethod
    def tab_width(name: str) -> float:
        """Width of the panel `name` folded to its title bar: its title, the arrow and the paddings."""
        style = imgui.get_style()
        title = imgui.calc_text_size(name.split("##")[0]).x
        return title + imgui.get_frame_height() + 3 * style.frame_padding.x + 2 * style.window_padding.x

    def was_collapsed(self, name: str) -> bool:
        """The panel was folded to its title bar last frame."""
        return name in self._collapsed_prev

    def avoid(self, name: str, point: tuple[float, float] | None) -> None:
        """Keep the passing panel `name` off `point` (window units; the node it explains), or forget it."""
        if point is None:
            self._avoid.pop(name, None)
        else:
            self._avoid[name] = (float(point[0]), float(point[1]))

    def folded(self, name: str) -> bool:
        """Presentation mode folds (or has folded) this panel to a tab: a caller setting the panel's size
        or size constraints should leave them to the layout this frame."""
        return self._fold is True or (
            self._fold is None and self.presentation and name in self._collapsed_prev
        )

    def flags(self, flags: int) -> int:
        """A panel's window flags as this mode wants them: in presentation mode every panel can be
        folded and opened again by a click on its title bar (no_collapse is dropped)."""
        if self.presentation:
            return flags & ~imgui.WindowFlags_.no_collapse
        return flags

    def size_due(self, name: str, key: object) -> bool:
        """True when `key` (what the panel's size is worked out from: the display and the UI scale, say)
        differs from the last call for `name`: the caller sets the size then, and leaves it to the user
        in between (a window made for 1920x1080 would keep that size at 1280x720)."""
        due = self._size_keys.get(name, _NO_KEY) != key
        self._size_keys[name] = key
        return due

    def max_size(self) -> tuple[float, float]:
        """The largest panel that fits the display with its margins."""
        m = self.margin * self.scale
        return (max(self.display[0] - 2 * m, 50.0), max(self.display[1] - 2 * m, 50.0))

    def keep_inside(self, name: str) -> Rect:
        """Inside the current window, before imgui.end(): clamp it into the display, record its rect."""
        pos, size = imgui.get_window_pos(), imgui.get_window_size()
        w, h = self.display
        collapsed = imgui.is_window_collapsed()
        if collapsed and size.x < self.tab_width(name) - 1.0:
            # An auto-sized panel folded can come back from presentation mode a few pixels wide ("E" of
            # "Experiments"): at least its title shows.
            size = imgui.ImVec2(self.tab_width(name), size.y)
            imgui.set_window_size(size)
        x = min(max(pos.x, 0.0), max(w - size.x, 0.0))
        y = min(max(pos.y, 0.0), max(h - size.y, 0.0))
        if (x, y) != (pos.x, pos.y):
            imgui.set_window_pos(imgui.ImVec2(x, y))
        anchor = self.rects.get(name, (LEFT, None))[0]
        r = Rect(x, y, size.x, size.y)
        if collapsed:
            self.collapsed.add(name)
        self.rects[name] = (anchor, r)
        return r

    def rect(self, name: str) -> Rect | None:
        got = self.rects.get(name)
        return got[1] if got is not None else None

    def previous(self, name: str) -> Rect | None:
        """The panel's rect as measured last frame (before this frame measures it anew)."""
        got = self._previous.get(name) or self.rects.get(name)
        return got[1] if got is not None and got[1].w > 0 else None

    def left_edge(self, previous: bool = False) -> float:
        """Right edge of the left docked panels (0 when none)."""
        rects = self._previous if previous else self.rects
        edges = [
            r.right for n, (a, r) in rects.items() if a in _DOCK_LEFT and r.w > 0 and self._open(n, previous)
        ]
        return max(edges, default=0.0)

    def right_edge(self) -> float:
        """Left edge of the right docked panels (the display's width when none)."""
        edges = [r.x for n, (a, r) in self.rects.items() if a in _DOCK_RIGHT and r.w > 0 and self._open(n)]
        return min(edges, default=self.display[0])

    def _open(self, name: str, previous: bool = False) -> bool:
        """Not folded to its title bar (this frame's measure, or last frame's for `previous`)."""
        return not self.presentation or name not in (self._collapsed_prev if previous else self.collapsed)

    def bottom_edge(self) -> float:
        """Top of the BESIDE band under the network, else of the bottom reserve."""
        tops = [r.y for n, (a, r) in self.rects.items() if a == BESIDE and r.w > 0 and self._open(n)]
        return min(tops, default=self.display[1] - self.bottom_reserve)

    def free(self, min_fraction: float = 0.0, reserve_left: float = 0.0) -> Rect:
        """The display between the left and right docked panels and above a BESIDE band, `reserve_left`
        more window units off its left (the fit's own margin keeps the network off the panels' edges); all
        of the display when that would leave less than `min_fraction` of its width or height."""
        w, h = self.display
        if w <= 0 or h <= 0:
            return Rect(0.0, 0.0, 0.0, 0.0)  # no panels laid out yet (or none shown): nothing known
        left = self.left_edge()
        right = self.right_edge()
        x0 = left + reserve_left * self.scale if left > 0 else 0.0
        x1 = right if right < w else w
        y1 = min(self.bottom_edge(), h)
        if x1 - x0 < min_fraction * w or x1 <= x0 or y1 < min_fraction * h:
            return Rect(0.0, 0.0, w, h)
        return Rect(x0, 0.0, x1 - x0, y1)
