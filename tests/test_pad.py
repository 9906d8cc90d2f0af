"""Drawing pad: stroke geometry on the canvas, eraser / clear / flags, and the ImGui widget driven by
scripted pointer events (GL-free), plus one screenshot of the widget (out/screens/pad_widget.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from convscope.engine.ui.backend import UiBackend
from convscope.engine.ui.input import MOUSE_LEFT, MOUSE_RIGHT, InputCollector
from convscope.scenes.explore.pad import ERASER, PEN, PadState, gui_pad
from convscope.scenes.explore.preprocess import pad_to_input
from imgui_bundle import imgui
from PIL import Image

SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"


def segment_distance(size: int, a, b) -> np.ndarray:
    """Distance from every pixel centre of a size x size canvas to the segment a-b (reference)."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / max(d @ d, 1e-12), 0, 1)
    return np.hypot(xs - (a[0] + t * d[0]), ys - (a[1] + t * d[1]))


def test_a_stroke_inks_along_the_segment_and_nowhere_far():
    pad = PadState(size=280, radius=10.0)
    a, b = (40.0, 50.0), (230.0, 190.0)
    pad.begin_stroke(*a)
    pad.stroke_to(*b)
    pad.end_stroke()
    dist = segment_distance(280, a, b)
    ink = pad.canvas
    assert ink.dtype == np.float32 and ink.shape == (280, 280)
    assert ink[dist <= 9.0].min() == 1.0, "pixels inside the brush are not fully inked"
    assert ink[dist >= 11.0].max() == 0.0, "ink far from the segment"
    edge = ink[(dist > 9.6) & (dist < 10.4)]
    assert ((edge > 0.05) & (edge < 0.95)).mean() > 0.5, "the edge is not anti-aliased"


def test_a_fast_move_leaves_no_gap():
    pad = PadState(size=280, radius=3.0)
    pad.begin_stroke(5, 140)
    pad.stroke_to(275, 140)  # one pointer event across the whole pad
    assert np.all(pad.canvas[140, 5:275] == 1.0)


def test_eraser_removes_ink_and_clear_empties():
    pad = PadState(size=100, radius=20.0)
    pad.begin_stroke(10, 50)
    pad.stroke_to(90, 50)
    pad.end_stroke()
    inked = pad.canvas.sum()
    pad.tool = ERASER
    pad.radius = 6.0
    pad.begin_stroke(50, 0)
    pad.stroke_to(50, 100)
    pad.end_stroke()
    assert np.all(pad.canvas[:, 45:56] == 0.0), "the eraser path still has ink"
    assert pad.canvas[50, 20] == 1.0 and pad.canvas[50, 80] == 1.0, "the eraser touched ink outside its path"
    assert 0 < pad.canvas.sum() < inked
    pad.clear()
    assert pad.is_empty()


def test_erase_override_does_not_change_the_tool():
    pad = PadState(size=64, radius=4.0)
    pad.canvas[:] = 1.0
    pad.begin_stroke(32, 32, erase=True)
    pad.end_stroke()
    assert pad.canvas[32, 32] == 0.0 and pad.tool == PEN


def test_dirty_version_and_stroke_ended_flags():
    pad = PadState(size=64, radius=4.0)
    assert pad.consume() == (False, False) and pad.version == 0
    pad.begin_stroke(10, 10)
    assert pad.drawing and pad.dirty and not pad.stroke_ended
    v = pad.version
    assert pad.consume() == (True, False)
    assert pad.consume() == (False, False), "consume() must clear the flags"
    pad.stroke_to(10, 10)  # no movement: nothing to send
    assert not pad.dirty and pad.version == v
    pad.stroke_to(40, 40)
    assert pad.dirty and pad.version > v
    pad.end_stroke()
    assert pad.consume() == (True, True) and not pad.drawing
    pad.end_stroke()  # a second end without a stroke is not an event
    assert pad.consume() == (False, False)
    # Pen over ink that is already full changes nothing: no send.
    pad2 = PadState(size=32, radius=3.0)
    pad2.canvas[:] = 1.0
    pad2.begin_stroke(16, 16)
    assert not pad2.dirty
    pad2.clear()
    assert pad2.consume() == (True, True) and pad2.is_empty()


def test_set_image_round_trips_through_pad_to_input():
    rng = np.random.default_rng(0)
    image = rng.random((28, 28)).astype(np.float32)
    pad = PadState(size=280)
    pad.set_image(image)
    np.testing.assert_allclose(pad_to_input(pad.canvas), image, atol=1e-6)
    assert pad.consume() == (True, True)


# -- the widget, driven through ImGui with scripted pointer events (no GL needed) ------------------


class Harness:
    """One ImGui window holding the pad at a known place; `frame(events)` runs one frame."""

    def __init__(self, pad: PadState, side: float = 280.0) -> None:
        self.pad, self.side = pad, side
        self.ui = UiBackend()
        self.input = InputCollector((400, 420), (400, 420))
        self.origin = None
        self.buttons: dict[str, tuple[float, float]] = {}

    def gui(self) -> None:
        imgui.set_next_window_pos((0, 0))
        imgui.set_next_window_size((400, 420))
        imgui.begin("Pad", None, imgui.WindowFlags_.no_decoration | imgui.WindowFlags_.no_saved_settings)
        origin = imgui.get_cursor_screen_pos()
        self.origin = (origin.x, origin.y)
        gui_pad(self.pad, self.side)
        # Where the tool buttons ended up: one row under the canvas, Pen | Eraser | Clear.
        style = imgui.get_style()
        y = origin.y + self.side + style.item_spacing.y + imgui.get_frame_height() / 2
        x = origin.x
        for label in ("Pen", "Eraser", "Clear"):
            w = imgui.calc_text_size(label).x + 2 * style.frame_padding.x
            self.buttons[label] = (x + w / 2, y)
            x += w + style.item_spacing.x
        imgui.end()

    def frame(self, *events) -> None:
        for kind, *args in events:
            getattr(self.input, f"on_{kind}")(*args)
        state = self.input.snapshot()
        self.ui.new_frame((400, 420), (1, 1), 1 / 60, state)
        self.gui()
        self.ui.render()

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        scale = self.side / self.pad.size
        return (self.origin[0] + x * scale, self.origin[1] + y * scale)

    def click(self, label: str) -> None:
        self.frame(("cursor_pos", *self.buttons[label]))
        self.frame(("mouse_button", MOUSE_LEFT, True))
        self.frame(("mouse_button", MOUSE_LEFT, False))
        self.frame()

    def close(self) -> None:
        self.ui.destroy()


@pytest.fixture
def harness():
    h = Harness(PadState(size=280, radius=8.0))
    h.frame()
    yield h
    h.close()


def test_widget_turns_a_drag_into_a_stroke(harness):
    h, pad = harness, harness.pad
    path = [(40, 40), (120, 60), (200, 200), (240, 250)]
    h.frame(("cursor_pos", *h.to_screen(*path[0])))
    h.frame(("mouse_button", MOUSE_LEFT, True))
    assert pad.drawing and pad.consume() == (True, False)
    for p in path[1:]:
        h.frame(("cursor_pos", *h.to_screen(*p)))
        assert pad.consume()[0], f"moving to {p} did not change the drawing"
    assert h.ui.want_capture_mouse, "the camera would fight the pad"
    h.frame(("mouse_button", MOUSE_LEFT, False))
    h.frame()
    assert not pad.drawing and pad.consume() == (False, True)
    for a, b in zip(path, path[1:], strict=False):
        dist = segment_distance(280, a, b)
        assert pad.canvas[dist <= 6.5].min() > 0.99, f"segment {a}-{b} has gaps"
    far = np.min([segment_distance(280, a, b) for a, b in zip(path, path[1:], strict=False)], axis=0)
    assert pad.canvas[far >= 10].max() == 0.0


def test_widget_buttons_and_right_drag(harness):
    h, pad = harness, harness.pad
    pad.canvas[:] = 1.0
    h.click("Eraser")
    assert pad.tool == ERASER
    h.click("Pen")
    assert pad.tool == PEN
    # Right drag erases even with the pen selected.
    h.frame(("cursor_pos", *h.to_screen(140, 20)))
    h.frame(("mouse_button", MOUSE_RIGHT, True))
    h.frame(("cursor_pos", *h.to_screen(140, 260)))
    h.frame(("mouse_button", MOUSE_RIGHT, False))
    h.frame()
    assert pad.canvas[30:250, 140].max() == 0.0 and pad.tool == PEN
    h.click("Clear")
    assert pad.is_empty()
    # A click outside the pad does nothing to it.
    pad.consume()
    h.frame(("cursor_pos", 395.0, 415.0))
    h.frame(("mouse_button", MOUSE_LEFT, True))
    h.frame(("mouse_button", MOUSE_LEFT, False))
    assert pad.consume() == (False, False)


@pytest.mark.gl
def test_widget_screenshot():
    from convscope.engine.gpu.imgui_renderer import ImGuiRenderer, UiTexture
    from gl_helpers import gl_context, release_framebuffer

    ctx = gl_context()
    h = Harness(PadState(size=280, radius=14.0))
    renderer = ImGuiRenderer(ctx)
    texture = UiTexture(ctx, (280, 280))
    fbo = ctx.simple_framebuffer((400, 420))
    try:
        h.frame()
        # A "7": top bar, then the diagonal, drawn as one drag.
        points = [(60, 60), (220, 60), (200, 120), (150, 190), (120, 250)]
        h.frame(("cursor_pos", *h.to_screen(*points[0])))
        h.frame(("mouse_button", MOUSE_LEFT, True))
        for p in points[1:]:
            h.frame(("cursor_pos", *h.to_screen(*p)))
        h.frame(("mouse_button", MOUSE_LEFT, False))
        texture.sync(h.pad.canvas, h.pad.version)
        h.pad.texture_ref = texture.ref
        h.frame(("cursor_pos", *h.to_screen(140, 140)))  # hovering shows the brush outline
        texture.sync(h.pad.canvas, h.pad.version)
        fbo.use()
        fbo.clear(0.1, 0.1, 0.1, 1.0)
        renderer.render(imgui.get_draw_data())
        px = np.frombuffer(fbo.read(components=3), np.uint8).reshape(420, 400, 3)[::-1]
        SCREENS.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px).save(SCREENS / "pad_widget.png")
        ox, oy = h.origin
        # Ink shows white where the canvas is inked, black where it is not.
        assert px[int(oy + 60), int(ox + 140)].min() > 240
        assert px[int(oy + 250), int(ox + 30)].max() < 15
    finally:
        release_framebuffer(ctx, fbo)
        texture.release()
        renderer.release()
        h.close()


# -- undo / redo -------------------------------------------------------------------------------------------


def stroke(pad: PadState, points, erase: bool | None = None) -> None:
    pad.begin_stroke(*points[0], erase=erase)
    for p in points[1:]:
        pad.stroke_to(*p)
    pad.end_stroke()


def test_undo_and_redo_walk_strokes_clear_and_set_image_exactly():
    pad = PadState(size=280, radius=10.0)
    assert not pad.can_undo and not pad.undo() and not pad.redo()
    states = [pad.canvas.copy()]
    stroke(pad, [(40, 40), (200, 60)])
    states.append(pad.canvas.copy())
    stroke(pad, [(100, 20), (100, 250)], erase=True)
    states.append(pad.canvas.copy())
    pad.set_image(np.roll(pad.canvas, 30, axis=1)[::10, ::10])  # as the scene applies a shift
    states.append(pad.canvas.copy())
    pad.clear()
    states.append(pad.canvas.copy())
    changed = [not np.array_equal(a, b) for a, b in zip(states, states[1:], strict=False)]
    assert all(changed), "an edit changed nothing"
    for expected in reversed(states[:-1]):
        pad.consume()
        assert pad.undo()
        np.testing.assert_array_equal(pad.canvas, expected)
        assert pad.consume() == (True, True), "an undo must reach the network"
    assert not pad.undo()
    for expected in states[1:]:
        assert pad.redo()
        np.testing.assert_array_equal(pad.canvas, expected)
    assert not pad.redo()
    # A new edit after an undo drops the redo steps.
    pad.undo()
    stroke(pad, [(10, 10), (20, 20)])
    assert not pad.can_redo


def test_undo_skips_edits_that_changed_nothing_and_keeps_history_steps():
    pad = PadState(size=56, radius=3.0, history=3)
    stroke(pad, [(5, 5), (50, 5)], erase=True)  # erasing a blank pad: nothing to undo
    pad.clear()
    assert not pad.can_undo
    for y in (10, 20, 30, 40, 50):
        stroke(pad, [(5, y), (50, y)])
    for _ in range(3):
        assert pad.undo()
    assert not pad.undo()
    assert pad.canvas[10, 20] > 0.9 and pad.canvas[20, 20] > 0.9 and pad.canvas[30, 20] == 0.0
