"""Robustness experiments: shifting and rotating the pad canvas, MNIST-style preprocessing (checked
against its definition: box, size, centre of mass), and the panel driven by scripted clicks (GL-free)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from convscope.engine.ui.backend import UiBackend
from convscope.engine.ui.input import MOUSE_LEFT, InputCollector
from convscope.scenes.explore.pad import PadState
from convscope.scenes.explore.preprocess import pad_to_input
from convscope.scenes.explore.robustness import (
    ROTATE,
    SHIFT,
    Action,
    RobustnessState,
    center_of_mass,
    consume,
    gui_robustness,
    ink_box,
    mnist_preprocess,
    network_input,
    rotate_canvas,
    shift_canvas,
)
from imgui_bundle import imgui

CENTRE = 13.5  # the middle of a 28x28 image in index coordinates (pixel centres at 0.5 .. 27.5 + -0.5)


def draw(strokes: list[list[tuple[float, float]]], size: int = 280, radius: float = 18.0) -> np.ndarray:
    pad = PadState(size=size, radius=radius)
    for stroke in strokes:
        pad.begin_stroke(*stroke[0])
        for p in stroke[1:]:
            pad.stroke_to(*p)
        pad.end_stroke()
    return pad.canvas.copy()


SEVEN = [[(30, 30), (110, 30), (50, 130)]]  # a small '7' in the top-left corner, far off-centre
TWO = [[(150, 160), (180, 140), (215, 160), (210, 190), (160, 250), (230, 250)]]  # bottom-right


@pytest.mark.parametrize("strokes", [SEVEN, TWO], ids=["seven", "two"])
@pytest.mark.parametrize("subpixel", [False, True], ids=["whole", "subpixel"])
def test_mnist_preprocess_centres_mass_and_scales_the_box_to_20(strokes, subpixel):
    canvas = draw(strokes)
    before = center_of_mass(pad_to_input(canvas))
    assert max(abs(before[0] - CENTRE), abs(before[1] - CENTRE)) > 4, "the test digit should start off-centre"
    for source in (canvas, pad_to_input(canvas)):  # the full-resolution canvas or the 28x28 input
        out = mnist_preprocess(source, subpixel=subpixel)
        assert out.shape == (28, 28) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        cx, cy = center_of_mass(out)
        tol = 1e-3 if subpixel else 0.5
        assert abs(cx - CENTRE) <= tol and abs(cy - CENTRE) <= tol, f"centre of mass {cx:.3f}, {cy:.3f}"
        if not subpixel:  # whole-pixel placement keeps the box crisp: exactly 20 px on the longer side
            top, left, bottom, right = ink_box(out)
            assert max(bottom - top + 1, right - left + 1) == 20, ink_box(out)


def test_mnist_preprocess_keeps_aspect_ratio():
    # A wide bar: 160 x 40 pad pixels (plus round caps) -> 20 px wide, about 20 * 76 / 196 px tall.
    canvas = draw([[(60, 140), (220, 140)]], radius=18.0)
    top, left, bottom, right = ink_box(canvas)
    h, w = bottom - top + 1, right - left + 1
    out = mnist_preprocess(canvas)
    t2, l2, b2, r2 = ink_box(out)
    assert r2 - l2 + 1 == 20
    assert abs((b2 - t2 + 1) - 20 * h / w) <= 1.0, (h, w, ink_box(out))


def test_mnist_preprocess_of_a_known_square_is_exact():
    # A 10x10 square of ink at the top-left: scaled 2x to 20x20, placed at 4..23 (centre 13.5 exactly).
    image = np.zeros((28, 28), np.float32)
    image[1:11, 2:12] = 1.0
    out = mnist_preprocess(image)
    expected = np.zeros((28, 28), np.float32)
    expected[4:24, 4:24] = 1.0
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("image", [np.zeros((28, 28)), np.zeros((280, 280)), np.full((28, 28), np.nan)])
def test_blank_input_gives_zeros(image):
    out = mnist_preprocess(image)
    assert out.shape == (28, 28) and np.all(out == 0.0) and np.all(np.isfinite(out))
    assert center_of_mass(out) is None and ink_box(out) is None
    np.testing.assert_array_equal(rotate_canvas(image, 10.0), np.nan_to_num(np.asarray(image, np.float32)))


@pytest.mark.parametrize("dx, dy", [(1, 0), (-2, 0), (0, 1), (0, -2), (2, -1)])
def test_shift_moves_the_centre_of_mass_by_exactly_the_asked_amount(dx, dy):
    canvas = draw([[(120, 80), (160, 80), (130, 200)]])
    shifted = shift_canvas(canvas, dx, dy)
    # Far from the edges, so no ink is lost.
    assert shifted.shape == canvas.shape and canvas.sum() == pytest.approx(shifted.sum())
    (x0, y0), (x1, y1) = center_of_mass(pad_to_input(canvas)), center_of_mass(pad_to_input(shifted))
    assert x1 - x0 == pytest.approx(dx, abs=1e-4) and y1 - y0 == pytest.approx(dy, abs=1e-4)
    # The pad moved by dx * 10 pixels: shifting back restores the drawing exactly.
    np.testing.assert_array_equal(shift_canvas(shifted, -dx, -dy), canvas)


def test_shift_fills_with_zero_and_drops_ink_over_the_edge():
    canvas = np.ones((280, 280), np.float32)
    out = shift_canvas(canvas, 2, 0)
    assert np.all(out[:, :20] == 0.0) and np.all(out[:, 20:] == 1.0)
    assert np.all(shift_canvas(canvas, 28, 0) == 0.0)


def principal_angle_from_vertical(image: np.ndarray) -> float:
    """Degrees the ink's long axis leans from vertical, positive when the top leans left (counter-
    clockwise on screen)."""
    a = np.asarray(image, np.float64)
    ys, xs = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    m = a.sum()
    cx, cy = (a * xs).sum() / m, (a * ys).sum() / m
    cov = np.cov(np.stack([(xs - cx).ravel(), (ys - cy).ravel()]), aweights=a.ravel())
    vals, vecs = np.linalg.eigh(cov)
    vx, vy = vecs[:, np.argmax(vals)]
    if vy > 0:
        vx, vy = -vx, -vy  # point the axis upward (y down): its top end
    return math.degrees(math.atan2(-vx, -vy))


@pytest.mark.parametrize("degrees", [10.0, -10.0, 20.0])
def test_rotation_tilts_a_vertical_bar_by_the_angle_and_keeps_the_ink(degrees):
    bar = draw([[(140, 50), (140, 230)]], radius=12.0)
    assert abs(principal_angle_from_vertical(bar)) < 0.01
    out = rotate_canvas(bar, degrees)
    assert principal_angle_from_vertical(out) == pytest.approx(degrees, abs=0.3)
    assert out.sum() == pytest.approx(bar.sum(), rel=0.01)
    # About the ink's centre of mass: the digit turns in place.
    (x0, y0), (x1, y1) = center_of_mass(bar), center_of_mass(out)
    assert abs(x1 - x0) < 0.2 and abs(y1 - y0) < 0.2
    # The bar's top end moved left for a counter-clockwise (positive) turn: slope = tan(angle).
    # Rows a quarter of the way in from either end, clear of the round caps.
    inked = np.flatnonzero(out.max(axis=1) > 0.5)
    top_row = round(inked[0] + 0.25 * (inked[-1] - inked[0]))
    bottom_row = round(inked[0] + 0.75 * (inked[-1] - inked[0]))
    x_top = center_of_mass(out[top_row : top_row + 1])[0]
    x_bottom = center_of_mass(out[bottom_row : bottom_row + 1])[0]
    slope = (x_bottom - x_top) / (bottom_row - top_row)
    assert slope == pytest.approx(math.tan(math.radians(degrees)), abs=0.02)


def test_rotation_moves_a_point_as_a_rotation_would():
    # One bright pixel 50 px right of an explicit centre, turned 90 degrees: it lands 50 px above.
    canvas = np.zeros((200, 200), np.float32)
    canvas[100, 150] = 1.0
    out = rotate_canvas(canvas, 90.0, center=(100.5, 100.5))
    assert np.unravel_index(out.argmax(), out.shape) == (50, 100)
    assert out.max() == pytest.approx(1.0, abs=1e-5)


def test_consume_applies_actions_in_order_and_reports_the_toggle():
    rs = RobustnessState()
    canvas = draw([[(120, 80), (130, 200)]])
    assert consume(rs, canvas) == (None, False)
    rs.request_shift(1, 0)
    rs.request_shift(0, 2)
    rs.request_rotate(10)
    out, resend = consume(rs, canvas)
    expected = rotate_canvas(shift_canvas(shift_canvas(canvas, 1, 0), 0, 2), 10)
    np.testing.assert_array_equal(out, expected)
    assert resend and rs.pending == []
    rs.set_centering(True)
    rs.set_centering(True)
    assert consume(rs, canvas) == (None, True) and consume(rs, canvas) == (None, False)
    np.testing.assert_array_equal(network_input(canvas, True), mnist_preprocess(canvas))
    np.testing.assert_array_equal(network_input(canvas, False), pad_to_input(canvas))
    with pytest.raises(ValueError):
        from convscope.scenes.explore.robustness import apply_action

        apply_action(canvas, Action("skew"))


# -- the panel, through ImGui with scripted clicks (no GL) -----------------------------------------------


class Harness:
    def __init__(self) -> None:
        self.ui = UiBackend()
        self.input = InputCollector((500, 300), (500, 300))
        self.rs = RobustnessState()

    def frame(self, *events) -> None:
        for kind, *args in events:
            getattr(self.input, f"on_{kind}")(*args)
        self.ui.new_frame((500, 300), (1, 1), 1 / 60, self.input.snapshot())
        imgui.set_next_window_pos((0, 0))
        imgui.set_next_window_size((500, 300))
        imgui.begin(
            "Robustness", None, imgui.WindowFlags_.no_decoration | imgui.WindowFlags_.no_saved_settings
        )
        gui_robustness(self.rs, pad_to_input(draw(SEVEN)))
        imgui.end()
        self.ui.render()

    def click(self, key: str) -> None:
        x, y = self.rs.button_centers[key]
        self.frame(("cursor_pos", x, y))
        self.frame(("mouse_button", MOUSE_LEFT, True, 0))
        self.frame(("mouse_button", MOUSE_LEFT, False, 0))

    def close(self) -> None:
        self.ui.destroy()


def test_panel_buttons_record_actions_and_the_toggle():
    h = Harness()
    try:
        h.frame()
        for key in ("left", "right", "up", "down", "ccw", "cw"):
            h.click(key)
        assert h.rs.pending == [
            Action(SHIFT, dx=-1, dy=0),
            Action(SHIFT, dx=1, dy=0),
            Action(SHIFT, dx=0, dy=-1),
            Action(SHIFT, dx=0, dy=1),
            Action(ROTATE, degrees=10.0),
            Action(ROTATE, degrees=-10.0),
        ]
        h.click("centering")
        actions, toggled = h.rs.take()
        assert len(actions) == 6 and toggled and h.rs.mnist_centering
        h.rs.shift_step = 2
        h.frame()
        h.click("left")
        assert h.rs.pending == [Action(SHIFT, dx=-2, dy=0)]
    finally:
        h.close()


def test_undo_restores_a_drawing_that_a_shift_clipped():
    """An 8 px shift pushes ink over the edge; one undo brings back the pixels exactly, redo the shift."""
    pad = PadState(size=280, radius=18.0)
    pad.set_image(draw([[(30, 30), (250, 30), (250, 250)]]))  # ink near the right edge
    drawn = pad.canvas.copy()
    rs = RobustnessState()
    for _ in range(4):
        rs.request_shift(2, 0)  # four clicks of 2 network pixels: 8 px, 80 pad pixels
    canvas, _ = consume(rs, pad.canvas)
    pad.set_image(canvas)
    assert pad.canvas.sum() < drawn.sum() - 100, "the shift did not clip anything"
    shifted = pad.canvas.copy()
    assert pad.undo()
    np.testing.assert_array_equal(pad.canvas, drawn)
    assert pad.redo()
    np.testing.assert_array_equal(pad.canvas, shifted)
