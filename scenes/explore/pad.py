"""The drawing pad: the canvas a digit is drawn on (`PadState`) and its ImGui widget (`gui_pad`).

Canvas: float32 (size, size), ink in [0, 1], row 0 at the top, white ink on black like MNIST.
Strokes are round, anti-aliased capsules between successive pointer positions, so a fast move
leaves no gaps; the pen takes the max with the existing ink and the eraser the min, so segments that
overlap at their joints do not darken or lighten twice.

What the scene does with it, once per frame after the GUI:

    changed, ended = pad.consume()          # clears both flags
    if changed or ended:                    # every change, at most once a frame; once more at stroke end
        send(pad_to_input(pad.canvas))
    pad_texture.sync(pad.canvas, pad.version)   # engine.gpu.imgui_renderer.UiTexture, GPU side
    pad.texture_ref = pad_texture.ref

Undo / redo: every edit (a stroke, Clear, and any `set_image`, which is how the scene applies shifts,
turns and centring) first keeps the canvas as it was, so `undo()` gives back exactly the pixels from
before, including ink a shift pushed over the edge; `redo()` replays.  A new edit drops the redo steps.
At most `history` steps are kept (a 280 px canvas is 306 KiB a step).

The widget makes no GL calls: it shows `texture_ref` (set by the GPU side) and turns pointer input
on it into strokes. Left button draws with the current tool, right button always erases. A
single-finger touch arrives as the left button.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from convscope.engine.ui.widgets import TextureLike, draw_image, toggle_button
from imgui_bundle import imgui

PEN, ERASER = "pen", "eraser"


@dataclass
class PadState:
    size: int = 280  # canvas edge in pad pixels (AppConfig.pad_size); 280 = ten per network pixel
    radius: float = 18.0  # brush radius in pad pixels (AppConfig.brush)
    tool: str = PEN  # PEN or ERASER, for the left button
    dirty: bool = False  # the drawing changed since the scene last called consume()
    stroke_ended: bool = False  # a stroke ended since the last consume(): send the final drawing
    version: int = 0  # bumps on every change; the GPU side re-uploads when it differs
    texture_ref: TextureLike | None = None  # the uploaded canvas, set by the GPU side; None = placeholder
    history: int = 32  # undo steps kept (older ones are forgotten)
    canvas: np.ndarray = field(init=False, repr=False)
    _undo: list[np.ndarray] = field(default_factory=list, init=False, repr=False)  # canvases before edits
    _redo: list[np.ndarray] = field(default_factory=list, init=False, repr=False)  # canvases undone
    _stroke_before: np.ndarray | None = field(default=None, init=False, repr=False)  # stroke in progress
    _last: tuple[float, float] | None = field(default=None, init=False, repr=False)  # stroke in progress
    _erasing: bool = field(default=False, init=False, repr=False)  # the stroke's tool

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ValueError(f"pad size must be at least 2, got {self.size}")
        if self.tool not in (PEN, ERASER):
            raise ValueError(f"pad tool must be {PEN!r} or {ERASER!r}, got {self.tool!r}")
        self.canvas = np.zeros((self.size, self.size), np.float32)

    @property
    def radius_range(self) -> tuple[float, float]:
        return (1.0, self.size / 4.0)

    @property
    def drawing(self) -> bool:
        """A stroke is in progress."""
        return self._last is not None

    def is_empty(self) -> bool:
        return not bool(self.canvas.any())

    # -- editing (pad pixel coordinates: x right, y down, (0, 0) the top-left corner) -------------

    def begin_stroke(self, x: float, y: float, erase: bool | None = None) -> None:
        """Put the brush down; `erase` overrides the current tool for this stroke."""
        if self._last is not None:
            self.end_stroke()
        self._erasing = (self.tool == ERASER) if erase is None else bool(erase)
        self._stroke_before = self.canvas.copy()
        self._last = (float(x), float(y))
        self._apply(self._last, self._last)

    def stroke_to(self, x: float, y: float) -> None:
        """Drag the brush to (x, y), inking the whole segment from the previous position."""
        if self._last is None:
            self.begin_stroke(x, y)
            return
        p = (float(x), float(y))
        if p != self._last:
            self._apply(self._last, p)
            self._last = p

    def end_stroke(self) -> None:
        if self._last is None:
            return
        self._last = None
        before, self._stroke_before = self._stroke_before, None
        if before is not None and not np.array_equal(before, self.canvas):
            self._remember(before)  # a stroke that changed nothing is no undo step
        self.stroke_ended = True

    def clear(self) -> None:
        self.end_stroke()
        if self.canvas.any():
            self._remember(self.canvas.copy())
            self.canvas[:] = 0.0
            self._changed()
        self.stroke_ended = True  # the scene sends the (empty) final drawing once

    # -- undo / redo ------------------------------------------------------------------------------

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) or self._last is not None

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        """Back to the canvas before the newest edit; False when there is none."""
        self.end_stroke()  # a stroke in progress becomes an edit of its own first
        if not self._undo:
            return False
        self._redo.append(self.canvas.copy())
        self._restore(self._undo.pop())
        return True

    def redo(self) -> bool:
        """Replay the newest undone edit; False when there is none."""
        self.end_stroke()
        if not self._redo:
            return False
        self._undo.append(self.canvas.copy())
        self._restore(self._redo.pop())
        return True

    def _remember(self, before: np.ndarray) -> None:
        self._undo.append(before)
        del self._undo[: -max(self.history, 1)]
        self._redo.clear()

    def _restore(self, canvas: np.ndarray) -> None:
        self.canvas[:] = canvas
        self._changed()
        self.stroke_ended = True

    def set_image(self, image: np.ndarray) -> None:
        """Replace the drawing with `image` ((h, w), values in [0, 1]; e.g. a 28x28 network input),
        nearest-neighbour scaled, so pad_to_input gives back a 28x28 image exactly when size % 28 == 0."""
        image = np.asarray(image, np.float32)
        if image.ndim != 2 or min(image.shape) < 1:
            raise ValueError(f"pad image must be 2-D, got shape {image.shape}")
        rows = (np.arange(self.size) * image.shape[0]) // self.size
        cols = (np.arange(self.size) * image.shape[1]) // self.size
        self.end_stroke()
        new = np.clip(image[rows[:, None], cols[None, :]], 0.0, 1.0)
        if not np.array_equal(new, self.canvas):
            self._remember(self.canvas.copy())
        self.canvas[:] = new
        self._changed()
        self.stroke_ended = True

    def consume(self) -> tuple[bool, bool]:
        """(changed, stroke_ended) since the previous call; clears both flags."""
        result = (self.dirty, self.stroke_ended)
        self.dirty = self.stroke_ended = False
        return result

    def _changed(self) -> None:
        self.dirty = True
        self.version += 1

    def _apply(self, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        r = max(float(self.radius), 0.5)
        reach = r + 1.0
        x_lo = max(math.floor(min(p0[0], p1[0]) - reach), 0)
        x_hi = min(math.ceil(max(p0[0], p1[0]) + reach), self.size)
        y_lo = max(math.floor(min(p0[1], p1[1]) - reach), 0)
        y_hi = min(math.ceil(max(p0[1], p1[1]) + reach), self.size)
        if x_lo >= x_hi or y_lo >= y_hi:
            return
        # Distance from each pixel centre to the segment; coverage falls from 1 to 0 over one pixel.
        ys = np.arange(y_lo, y_hi, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(x_lo, x_hi, dtype=np.float32)[None, :] + 0.5
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        length2 = dx * dx + dy * dy
        if length2 > 0.0:
            t = np.clip(((xs - p0[0]) * dx + (ys - p0[1]) * dy) / length2, 0.0, 1.0)
        else:
            t = np.float32(0.0)
        dist = np.hypot(xs - (p0[0] + t * dx), ys - (p0[1] + t * dy))
        coverage = np.clip(r + 0.5 - dist, 0.0, 1.0)
        region = self.canvas[y_lo:y_hi, x_lo:x_hi]
        updated = np.minimum(region, 1.0 - coverage) if self._erasing else np.maximum(region, coverage)
        if not np.array_equal(updated, region):
            region[...] = updated
            self._changed()


def gui_pad(pad: PadState, width: float | None = None) -> None:
    """The canvas as a square `width` wide (default: the available width), tools underneath."""
    side = float(width) if width else max(imgui.get_content_region_avail().x, 32.0)
    imgui.begin_group()
    p0 = imgui.get_cursor_screen_pos()
    p1 = (p0.x + side, p0.y + side)
    draw_list = imgui.get_window_draw_list()
    if pad.texture_ref is not None:
        draw_image(draw_list, pad.texture_ref, (p0.x, p0.y), p1)
    else:
        draw_list.add_rect_filled((p0.x, p0.y), p1, imgui.get_color_u32((0.0, 0.0, 0.0, 1.0)))
    draw_list.add_rect((p0.x, p0.y), p1, imgui.get_color_u32(imgui.Col_.border))

    imgui.invisible_button(
        "##pad_canvas",
        (side, side),
        imgui.ButtonFlags_.mouse_button_left | imgui.ButtonFlags_.mouse_button_right,
    )
    io = imgui.get_io()
    scale = pad.size / side
    x, y = (io.mouse_pos.x - p0.x) * scale, (io.mouse_pos.y - p0.y) * scale
    if imgui.is_item_activated():
        pad.begin_stroke(x, y, erase=True if imgui.is_mouse_down(imgui.MouseButton_.right) else None)
    elif imgui.is_item_active():
        pad.stroke_to(x, y)
    if imgui.is_item_deactivated():
        pad.end_stroke()
    if imgui.is_item_hovered() or imgui.is_item_active():
        # Brush outline, so the user sees how wide the stroke will be.
        draw_list.push_clip_rect((p0.x, p0.y), p1, True)
        draw_list.add_circle(io.mouse_pos, pad.radius / scale, imgui.get_color_u32((1.0, 1.0, 1.0, 0.5)))
        draw_list.pop_clip_rect()

    if toggle_button("Pen", pad.tool == PEN):
        pad.tool = PEN
    imgui.same_line()
    if toggle_button("Eraser", pad.tool == ERASER):
        pad.tool = ERASER
    imgui.same_line()
    if imgui.button("Clear"):
        pad.clear()
    imgui.same_line()
    imgui.begin_disabled(not pad.can_undo)
    if imgui.button("Undo"):
        pad.undo()
    imgui.end_disabled()
    imgui.set_item_tooltip("Ctrl+Z: undo the last stroke, Clear, shift or turn")
    imgui.same_line()
    imgui.begin_disabled(not pad.can_redo)
    if imgui.button("Redo"):
        pad.redo()
    imgui.end_disabled()
    imgui.set_item_tooltip("Ctrl+Y or Ctrl+Shift+Z")
    imgui.set_next_item_width(side)
    lo, hi = pad.radius_range
    _, pad.radius = imgui.slider_float("##brush", pad.radius, lo, hi, "brush %.0f px")
    imgui.end_group()
