"""Robustness experiments (Harley 2015, task analysis): shift and rotate the drawing, and MNIST-style
preprocessing, so a user sees why an off-centre digit fails and how centring fixes it.

Owns:
* `shift_canvas`, `rotate_canvas`: edits of the pad canvas itself, so the pad shows them.  A shift of
  (dx, dy) network pixels moves the canvas by round(dx * size / 28) pad pixels (exact when the pad size
  is a multiple of 28, as the default 280 is), filling with 0; ink pushed over the edge is lost.  A
  rotation turns the ink about its own centre of mass (not the canvas centre), so rotating does not also
  translate the digit: translation is the other experiment.  Bilinear resampling, zero outside.
* `mnist_preprocess(image)`: what LeCun et al. did to NIST digits to make MNIST: crop to the ink's
  bounding box (pixels above `threshold` x the brightest ink), scale so the longer side is 20 px keeping
  the aspect ratio (area averaging, i.e. anti-aliased), and place it in 28x28 so the ink's centre of
  mass sits at the image centre.  Coordinates: pixel (r, c) covers [c, c+1) x [r, r+1), so the centre is
  (14, 14), which is index coordinate 13.5.  By default the shift is rounded to whole pixels, as MNIST
  did (the centre of mass then lands within half a pixel of the centre and the 20 px box stays crisp);
  `subpixel=True` shifts by the exact fraction with linear interpolation (which moves the discrete
  centre of mass by exactly that fraction).  The box is kept inside the frame: a digit whose mass sits
  very near one end of its box is centred as far as that allows instead of being clipped.  An all-blank
  input (or one with no finite ink) gives zeros.
* `RobustnessState` + `gui_robustness(rs)`: the panel only records requested actions; the scene
  consumes them once per frame (see `consume`).

Per frame, in the scene (after the panels, before sending the drawing):

    canvas, resend = consume(rs, pad.canvas)    # applies queued shifts / rotations, in order
    if canvas is not None:
        pad.set_image(canvas)                   # same size: an exact copy; marks the pad changed
    elif resend:
        pad.dirty = True                        # the centring toggle changed what the network sees
    ...
    image = network_input(pad.canvas, rs.mnist_centering)   # instead of pad_to_input(pad.canvas)

numpy and Pillow only (no torch, no GL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from convscope.engine.ui.widgets import help_marker
from convscope.scenes.explore.preprocess import INPUT_SIZE, area_resize, pad_to_input
from imgui_bundle import imgui

MNIST_BOX = 20  # longer side of the digit's bounding box after size normalisation (LeCun et al.)

SHIFT, ROTATE = "shift", "rotate"


# -- measurements --------------------------------------------------------------------------------------


def center_of_mass(image: np.ndarray) -> tuple[float, float] | None:
    """(x, y) of the ink's centre of mass in index coordinates (pixel (r, c) has its centre at (c, r));
    None for an image with no ink."""
    a = np.asarray(image, np.float64)
    total = a.sum()
    if not total > 0:
        return None
    ys = np.arange(a.shape[0], dtype=np.float64)
    xs = np.arange(a.shape[1], dtype=np.float64)
    return float(a.sum(axis=0) @ xs / total), float(a.sum(axis=1) @ ys / total)


def ink_box(image: np.ndarray, threshold: float = 0.05) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right), inclusive, of pixels above `threshold` x the brightest pixel;
    None for an image with no ink."""
    a = np.nan_to_num(np.asarray(image, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(a.max(initial=0.0))
    if peak <= 0.0:
        return None
    mask = a > threshold * peak
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


# -- edits of the pad canvas ----------------------------------------------------------------------------


def _clean(canvas: np.ndarray) -> np.ndarray:
    """The canvas as float32 ink in [0, 1], non-finite values as no ink."""
    canvas = np.asarray(canvas, np.float32)
    if canvas.ndim != 2:
        raise ValueError(f"canvas must be 2-D, got shape {canvas.shape}")
    return np.clip(np.nan_to_num(canvas, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)


def shift_canvas(canvas: np.ndarray, dx: float, dy: float, input_size: int = INPUT_SIZE) -> np.ndarray:
    """The canvas moved by (dx, dy) network pixels (+x right, +y down), i.e. by round(d * size /
    input_size) canvas pixels, vacated pixels 0.  A new array; the input is not changed."""
    canvas = _clean(canvas)
    h, w = canvas.shape
    sx, sy = round(dx * w / input_size), round(dy * h / input_size)
    out = np.zeros_like(canvas)
    if abs(sx) >= w or abs(sy) >= h:
        return out
    out[max(sy, 0) : h + min(sy, 0), max(sx, 0) : w + min(sx, 0)] = canvas[
        max(-sy, 0) : h + min(-sy, 0), max(-sx, 0) : w + min(-sx, 0)
    ]
    return out


def rotate_canvas(
    canvas: np.ndarray, degrees: float, center: tuple[float, float] | None = None
) -> np.ndarray:
    """The canvas rotated by `degrees` counter-clockwise as seen on screen (row 0 at the top), about
    `center` (x, y) in continuous pixel coordinates (pixel (r, c) covers [c, c+1) x [r, r+1)); by default
    about the ink's centre of mass.  Bilinear resampling, zero outside; a blank canvas comes back as is."""
    canvas = _clean(canvas)
    if center is None:
        com = center_of_mass(canvas)
        if com is None:
            return canvas.copy()
        center = (com[0] + 0.5, com[1] + 0.5)  # index -> continuous coordinates
    h, w = canvas.shape
    cx, cy = center
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    # Inverse mapping: each output pixel centre p samples the source at c + R(-theta) (p - c).  With y
    # down, a counter-clockwise turn on screen takes (x, y) to (x cos + y sin, -x sin + y cos).
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5 - cy
    xs = np.arange(w, dtype=np.float32)[None, :] + 0.5 - cx
    src_x = cx + cos * xs - sin * ys - 0.5  # back to index coordinates for the interpolation
    src_y = cy + sin * xs + cos * ys - 0.5
    return _bilinear(canvas, src_x, src_y)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Samples of `image` at index coordinates (x, y), bilinear, 0 outside the image."""
    h, w = image.shape
    padded = np.zeros((h + 2, w + 2), np.float32)  # a ring of zeros: neighbours outside read 0
    padded[1:-1, 1:-1] = image
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    # Index into the padded image; anything further out than the ring is clamped onto the ring (zeros).
    xi = np.clip(x0.astype(np.int64) + 1, 0, w + 1)
    yi = np.clip(y0.astype(np.int64) + 1, 0, h + 1)
    xj, yj = np.clip(xi + 1, 0, w + 1), np.clip(yi + 1, 0, h + 1)
    out = (
        padded[yi, xi] * (1 - fx) * (1 - fy)
        + padded[yi, xj] * fx * (1 - fy)
        + padded[yj, xi] * (1 - fx) * fy
        + padded[yj, xj] * fx * fy
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# -- MNIST-style preprocessing --------------------------------------------------------------------------


def _placement(n: int, size: int, offset: float) -> np.ndarray:
    """(size, n) matrix putting n samples at `offset` (0 <= offset <= size - n): whole part by index,
    fraction by linear interpolation between neighbours, which keeps the mass and moves the discrete
    centre of mass by exactly `offset`."""
    whole = math.floor(offset)
    frac = offset - whole
    m = np.zeros((size, n), np.float32)
    j = np.arange(n)
    m[whole + j, j] = 1.0 - frac
    if frac > 0.0:
        m[whole + 1 + j, j] += frac
    return m


def mnist_preprocess(
    image: np.ndarray,
    *,
    size: int = INPUT_SIZE,
    box: int = MNIST_BOX,
    threshold: float = 0.05,
    subpixel: bool = False,
) -> np.ndarray:
    """A drawing (the pad canvas or a 28x28 input, ink in [0, 1]) as MNIST would have it: (size, size)
    float32, see the module docstring.  `threshold`: fraction of the brightest ink below which pixels do
    not count for the bounding box (the anti-aliased fringe of a stroke)."""
    a = _clean(image)
    bounds = ink_box(a, threshold)
    if bounds is None:
        return np.zeros((size, size), np.float32)
    top, left, bottom, right = bounds
    crop = a[top : bottom + 1, left : right + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    # The longer side becomes exactly `box` pixels; the shorter one the nearest whole number.
    nh, nw = max(1, min(box, round(h * scale))), max(1, min(box, round(w * scale)))
    small = area_resize(crop, nh, nw)
    com = center_of_mass(small)
    if com is None:  # every pixel above the threshold averaged away: cannot happen for box >= 1
        return np.zeros((size, size), np.float32)
    centre = size / 2.0 - 0.5  # the image centre in index coordinates
    offsets = []
    for c, n in ((com[1], nh), (com[0], nw)):
        offset = centre - c
        if not subpixel:
            offset = float(math.floor(offset + 0.5))  # nearest whole pixel, halves up (not banker's)
        offsets.append(min(max(offset, 0.0), float(size - n)))  # keep the whole box in the frame
    rows, cols = _placement(nh, size, offsets[0]), _placement(nw, size, offsets[1])
    return np.clip(rows @ small @ cols.T, 0.0, 1.0).astype(np.float32)


def network_input(canvas: np.ndarray, mnist_centering: bool) -> np.ndarray:
    """What the network sees of the pad: the area-averaged canvas, or its MNIST-style normalisation."""
    return mnist_preprocess(canvas) if mnist_centering else pad_to_input(canvas)


# -- panel state and actions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One requested edit of the drawing."""

    kind: str  # SHIFT or ROTATE
    dx: float = 0.0  # SHIFT: network pixels, +x right
    dy: float = 0.0  # SHIFT: network pixels, +y down
    degrees: float = 0.0  # ROTATE: counter-clockwise on screen, about the ink's centre of mass


def apply_action(canvas: np.ndarray, action: Action, input_size: int = INPUT_SIZE) -> np.ndarray:
    """The canvas after one action (a new array)."""
    if action.kind == SHIFT:
        return shift_canvas(canvas, action.dx, action.dy, input_size)
    if action.kind == ROTATE:
        return rotate_canvas(canvas, action.degrees)
    raise ValueError(f"unknown robustness action {action.kind!r}")


@dataclass
class RobustnessState:
    shift_step: int = 1  # network pixels per shift click (1 or 2, the paper's small translations)
    rotate_step: float = 10.0  # degrees per rotate click
    mnist_centering: bool = False  # the network sees mnist_preprocess(canvas) instead of the plain canvas
    pending: list[Action] = field(default_factory=list)  # requested by the panel, applied by the scene
    centering_changed: bool = False  # the toggle flipped since the scene last consumed: resend the input
    # Where the panel last drew each button (window coordinates, centre), for scripted-input tests.
    button_centers: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    def request_shift(self, dx: float, dy: float) -> None:
        self.pending.append(Action(SHIFT, dx=dx, dy=dy))

    def request_rotate(self, degrees: float) -> None:
        self.pending.append(Action(ROTATE, degrees=degrees))

    def set_centering(self, on: bool) -> None:
        if bool(on) != self.mnist_centering:
            self.mnist_centering = bool(on)
            self.centering_changed = True

    def take(self) -> tuple[list[Action], bool]:
        """(actions requested, centring toggled) since the previous call; clears both."""
        actions, changed = self.pending, self.centering_changed
        self.pending, self.centering_changed = [], False
        return actions, changed


def consume(rs: RobustnessState, canvas: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """Apply every pending action to a copy of `canvas`: (new canvas or None when there was none,
    whether the network input must be sent again because the centring toggle changed)."""
    actions, changed = rs.take()
    if not actions:
        return None, changed
    out = np.asarray(canvas, np.float32)
    for action in actions:
        out = apply_action(out, action)
    return out, True


# -- the panel ------------------------------------------------------------------------------------------

_DIM = imgui.ImVec4(0.75, 0.78, 0.85, 1.0)


def describe_input(image: np.ndarray | None) -> str:
    """One line on where the ink of a 28x28 input sits, compared with MNIST's digits ("" for no input, or
    for a picture that is not one grey drawing)."""
    if image is None or np.ndim(image) != 2:
        return ""
    com = center_of_mass(image)
    bounds = ink_box(image)
    if com is None or bounds is None:
        return "no ink"
    centre = np.asarray(image).shape[0] / 2.0 - 0.5
    dx, dy = com[0] - centre, com[1] - centre
    top, left, bottom, right = bounds
    return (
        f"ink centre {dx:+.1f}, {dy:+.1f} px from the middle; box {right - left + 1}x{bottom - top + 1} px "
        f"(MNIST: centred, longer side {MNIST_BOX})"
    )


def _button(rs: RobustnessState, key: str, label: str) -> bool:
    clicked = imgui.button(label)
    lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
    rs.button_centers[key] = ((lo.x + hi.x) / 2, (lo.y + hi.y) / 2)
    return clicked


def gui_robustness(rs: RobustnessState, seen: np.ndarray | None = None) -> None:
    """Shift / rotate buttons and the MNIST centring toggle, inside the caller's window.  `seen`: the
    28x28 image the network last got, to say where its ink sits.  Only edits `rs`."""
    imgui.push_id("robustness")
    step = rs.shift_step
    imgui.text("shift")
    imgui.same_line()
    if _button(rs, "left", f"< {step}"):
        rs.request_shift(-step, 0)
    imgui.same_line()
    if _button(rs, "right", f"{step} >"):
        rs.request_shift(step, 0)
    imgui.same_line()
    if _button(rs, "up", f"^ {step}"):
        rs.request_shift(0, -step)
    imgui.same_line()
    if _button(rs, "down", f"v {step}"):
        rs.request_shift(0, step)
    imgui.same_line()
    imgui.set_next_item_width(imgui.get_frame_height() * 3.2)
    _, rs.shift_step = imgui.slider_int("px##step", rs.shift_step, 1, 2)
    imgui.text("rotate")
    imgui.same_line()
    deg = rs.rotate_step
    if _button(rs, "ccw", f"+{deg:g} deg (left)"):
        rs.request_rotate(deg)
    imgui.same_line()
    if _button(rs, "cw", f"-{deg:g} deg (right)"):
        rs.request_rotate(-deg)
    changed, on = imgui.checkbox("centre like MNIST", rs.mnist_centering)
    lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
    rs.button_centers["centering"] = (lo.x + imgui.get_frame_height() / 2, (lo.y + hi.y) / 2)
    if changed:
        rs.set_centering(on)
    imgui.same_line()
    help_marker(
        "MNIST's digits were cropped to their ink, scaled so the longer side is 20 px, and placed in "
        "28x28 with the centre of mass in the middle. The networks learnt digits like that: a digit "
        "drawn off-centre or small is something they never saw. Shifts and turns edit the drawing; the "
        "toggle changes only what the network sees."
    )
    text = describe_input(seen)
    if text:
        imgui.push_text_wrap_pos(imgui.get_cursor_pos_x() + imgui.get_font_size() * 22)
        imgui.text_colored(_DIM, text)
        imgui.pop_text_wrap_pos()
    imgui.pop_id()
