"""Morph between two drawings: linear interpolation of the requests, the curve's bookkeeping, a real
LeNet worker's probabilities along a '1' -> '7' morph, the IDX reader, and the panel (ImGui + ImPlot,
scripted clicks, no GL)."""

from __future__ import annotations

import gzip
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from convscope.engine.proc.shm import list_segments, segment_prefix
from convscope.engine.ui.backend import UiBackend
from convscope.engine.ui.input import MOUSE_LEFT, InputCollector
from convscope.scenes.explore.morph import STEPS, MorphState, blend, gui_morph, load_idx_digits
from convscope.scenes.explore.pad import PadState
from convscope.scenes.explore.preprocess import pad_to_input
from imgui_bundle import imgui, implot
from PIL import Image

SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"
SHARED_MNIST = Path("/work/shared/data")


def draw(strokes: list[list[tuple[float, float]]]) -> np.ndarray:
    pad = PadState(size=280, radius=18.0)
    for stroke in strokes:
        pad.begin_stroke(*stroke[0])
        for p in stroke[1:]:
            pad.stroke_to(*p)
        pad.end_stroke()
    return pad_to_input(pad.canvas)


ONE = [[(145, 50), (135, 230)]]
SEVEN = [[(80, 60), (200, 60), (120, 230)]]


def test_requests_interpolate_linearly_between_a_and_b():
    rng = np.random.default_rng(0)
    a, b = rng.random((28, 28), dtype=np.float32), rng.random((28, 28), dtype=np.float32)
    ms = MorphState()
    assert ms.requests().shape == (0, 28, 28)  # nothing to morph yet
    ms.set_a(a)
    assert ms.requests().shape == (0, 28, 28)
    ms.set_b(b)
    images = ms.requests()
    assert images.shape == (STEPS, 28, 28) and images.dtype == np.float32
    np.testing.assert_array_equal(images[0], a)
    np.testing.assert_array_equal(images[-1], b)
    for i, t in enumerate(np.linspace(0, 1, STEPS)):
        np.testing.assert_allclose(images[i], (1 - t) * a + t * b, atol=1e-6)
    assert ms.requests().shape == (0, 28, 28), "the curve is asked for once per change of A or B"
    assert ms.pending()
    ms.set_t(0.5)
    np.testing.assert_allclose(ms.image(), 0.5 * a + 0.5 * b, atol=1e-6)
    np.testing.assert_array_equal(blend(a, b, 0.0), a)


def test_take_checks_the_shape_and_drops_stale_results():
    rng = np.random.default_rng(1)
    ms = MorphState()
    ms.set_a(rng.random((28, 28)))
    ms.set_b(rng.random((28, 28)))
    assert len(ms.requests()) == STEPS
    probs = rng.dirichlet(np.ones(10), STEPS).astype(np.float32)
    with pytest.raises(ValueError):
        ms.take(probs[:5])
    ms.set_b(rng.random((28, 28)))  # B changed while the curve was computed: those results are stale
    assert not ms.take(probs) and ms.curve is None
    assert len(ms.requests()) == STEPS
    assert ms.take(list(probs))
    assert ms.curve.shape == (STEPS, 10) and not ms.pending()
    np.testing.assert_array_equal(ms.winners(), probs.argmax(axis=1))


def test_input_follows_the_slider_only_while_active():
    ms = MorphState()
    ms.set_a(np.zeros((28, 28)))
    ms.set_b(np.ones((28, 28)))
    assert not ms.active and not ms.take_input_changed()
    ms.set_t(0.25)
    assert ms.active and ms.take_input_changed() and not ms.take_input_changed()
    assert float(ms.image().mean()) == pytest.approx(0.25)
    ms.set_a(np.full((28, 28), 0.5))  # a new end while active changes the input too
    assert ms.take_input_changed()
    ms.stop()
    ms.set_t(0.25)  # the same t re-activates (a click on the slider)
    assert ms.active
    with pytest.raises(ValueError):
        ms.set_a(np.zeros((32, 32)))


@pytest.fixture(scope="module")
def one_to_seven() -> MorphState:
    """A '1' -> '7' morph with its curve from a real LeNet worker (the shipped weights)."""
    from convscope.features.inference import WorkerHandle

    ms = MorphState()
    ms.set_a(draw(ONE), "a one")
    ms.set_b(draw(SEVEN), "a seven")
    with WorkerHandle("lenet") as worker:
        assert worker.ready, worker.error
        images = ms.requests()
        # One batched request, answered asynchronously: the handle never blocks while it runs.
        t0 = time.perf_counter()
        batch = worker.infer_batch(images)
        assert time.perf_counter() - t0 < 0.05, "infer_batch() must return at once"
        deadline = time.monotonic() + 30
        while (got := worker.batch(batch)) is None:
            assert time.monotonic() < deadline, "no answer to the batch"
            time.sleep(0.005)
        assert got.error == "" and got.probabilities.shape == (STEPS, 10)
        # The curve is exactly what one infer_sync per image gives (the round trips it replaces).
        one_by_one = np.stack([worker.infer_sync(img).probabilities for img in images])
        np.testing.assert_array_equal(got.probabilities, one_by_one)
        assert worker.batch(batch) is None, "an answer is handed out once"
        assert ms.take(got.probabilities)
    assert list_segments(segment_prefix()) == [], "the batch segment was left in /dev/shm"
    return ms


def test_real_lenet_probabilities_cross_from_one_to_seven(one_to_seven):
    ms = one_to_seven
    curve = ms.curve
    assert curve.shape == (STEPS, 10)
    np.testing.assert_allclose(curve.sum(axis=1), 1.0, atol=1e-4)
    winners = ms.winners()
    assert winners[0] == 1 and winners[-1] == 7, winners
    # One crossing: the '1' holds the lead, then the '7' takes it and keeps it.
    switch = winners.index(7)
    assert set(winners[:switch]) == {1} and set(winners[switch:]) == {7}, winners
    assert 0 < switch < STEPS - 1
    assert curve[0, 1] > 0.9 and curve[-1, 7] > 0.9


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_idx_reader_reads_what_was_written(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", images)
    write_idx(raw / "t10k-labels-idx1-ubyte", labels)
    x, y = load_idx_digits(tmp_path, limit=5)
    assert x.shape == (5, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x, images[:5] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(y, labels[:5])
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x07\x01")  # truncated
    with pytest.raises(ValueError, match="truncated"):
        load_idx_digits(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_idx_digits(tmp_path / "nowhere")


@pytest.mark.skipif(
    not (SHARED_MNIST / "MNIST" / "raw").is_dir(), reason="no shared MNIST copy on this machine"
)
def test_real_mnist_test_digits_load():
    x, y = load_idx_digits(SHARED_MNIST, limit=10)
    assert x.shape == (10, 28, 28) and 0.0 <= x.min() and x.max() <= 1.0
    assert list(y[:3]) == [7, 2, 1]  # the famous first three test digits


# -- the panel (ImGui + ImPlot, scripted clicks, no GL) -----------------------------------------------


class Harness:
    def __init__(self) -> None:
        self.ui = UiBackend()
        self.plot = implot.create_context()
        self.input = InputCollector((520, 420), (520, 420))
        self.ms = MorphState()
        self.current = draw(ONE)

    def frame(self, *events) -> None:
        for kind, *args in events:
            getattr(self.input, f"on_{kind}")(*args)
        self.ui.new_frame((520, 420), (1, 1), 1 / 60, self.input.snapshot())
        imgui.set_next_window_pos((0, 0))
        imgui.set_next_window_size((520, 420))
        imgui.begin("Morph", None, imgui.WindowFlags_.no_decoration | imgui.WindowFlags_.no_saved_settings)
        gui_morph(self.ms, self.current)
        imgui.end()
        self.ui.render()

    def click(self, x: float, y: float) -> None:
        self.frame(("cursor_pos", x, y))
        self.frame(("mouse_button", MOUSE_LEFT, True, 0))
        self.frame(("mouse_button", MOUSE_LEFT, False, 0))

    def close(self) -> None:
        implot.destroy_context(self.plot)
        self.ui.destroy()


def test_panel_captures_both_ends_and_the_slider_sets_t():
    h = Harness()
    try:
        h.frame()
        h.click(*h.ms.button_centers["set_a"])
        np.testing.assert_array_equal(h.ms.a, h.current)
        h.current = draw(SEVEN)
        h.frame()
        h.click(*h.ms.button_centers["set_b"])
        np.testing.assert_array_equal(h.ms.b, h.current)
        assert len(h.ms.requests()) == STEPS
        h.ms.take(np.tile(np.eye(10, dtype=np.float32)[1], (STEPS, 1)))
        h.frame()  # the plot is drawn now
        x0, y = h.ms.button_centers["slider"]
        x1, _ = h.ms.button_centers["slider_end"]
        h.click(x0 + 0.75 * (x1 - x0), y)  # a click on the slider jumps there
        assert h.ms.active and 0.65 < h.ms.t < 0.85, h.ms.t
        assert h.ms.take_input_changed()
        h.click(*h.ms.button_centers["stop"])
        assert not h.ms.active
    finally:
        h.close()


@pytest.mark.gl
def test_panel_screenshot_shows_the_curve(one_to_seven):
    """out/screens/morph_panel.png: the real '1' -> '7' curve; the '1' line (orange) starts high on the
    left, the '7' line (grey) ends high on the right."""
    from convscope.engine.gpu.imgui_renderer import ImGuiRenderer
    from gl_helpers import gl_context, release_framebuffer

    ctx = gl_context()
    h = Harness()
    h.ms = one_to_seven
    h.ms.set_t(0.5)
    renderer = ImGuiRenderer(ctx)
    fbo = ctx.simple_framebuffer((520, 420))
    try:
        h.frame()
        h.frame()
        fbo.use()
        fbo.clear(0.1, 0.1, 0.1, 1.0)
        renderer.render(imgui.get_draw_data())
        px = np.frombuffer(fbo.read(components=3), np.uint8).reshape(420, 520, 3)[::-1]
        SCREENS.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px).save(SCREENS / "morph_panel.png")
        orange = (px[..., 0] > 200) & (px[..., 1] > 100) & (px[..., 1] < 160) & (px[..., 2] < 60)
        ys, xs = np.nonzero(orange)
        assert len(xs) > 50, "no line of class 1"
        # The line starts at p = 1 (the plot's top) on the left and falls to p = 0 (its bottom); the
        # legend's swatch is off to the right.
        left = xs < xs.min() + 20
        assert ys[left].max() < ys.min() + 10, "class 1 does not start at the top"
        assert ys.max() - ys.min() > 80, "class 1 never falls"
    finally:
        release_framebuffer(ctx, fbo)
        renderer.release()
        h.close()


# -- "back to the pad" in the real explore scene (headless app, real LeNet worker) ---------------------


def _pad_of(strokes: list[list[tuple[float, float]]]) -> np.ndarray:
    pad = PadState(size=280, radius=18.0)
    for stroke in strokes:
        pad.begin_stroke(*stroke[0])
        for p in stroke[1:]:
            pad.stroke_to(*p)
        pad.end_stroke()
    return pad.canvas.copy()


@pytest.mark.gl
def test_back_to_the_pad_restores_the_drawing_and_its_guesses():
    """Capture a '1' as A and a '7' as B, slide to t = 0.17 (the network sees mostly the '1'), then
    "back to the pad": the pad still holds the '7' pixel for pixel, and the network sees and guesses
    the '7' again, as before the morph."""
    import time

    from convscope.engine.app import App
    from convscope.engine.config import AppConfig
    from convscope.engine.gpu.context import create_headless
    from convscope.scenes.explore.run import wait_until_ready
    from convscope.scenes.explore.scene import ExploreScene

    def until(cond, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            app.frame()
            time.sleep(0.002)

    ctx = create_headless()
    scene = ExploreScene(AppConfig(pad_size=280))
    app = App(scene, ctx=ctx, size=(960, 600))
    try:
        wait_until_ready(app, scene, 90)
        one, seven = _pad_of(ONE), _pad_of(SEVEN)
        scene.pad.set_image(one)
        until(lambda: scene.ready and scene.state.network_input.max() > 0, "the '1'")
        scene.morph.set_a(scene.state.drawing_input)
        scene.pad.set_image(seven)
        seq = scene.sent_seq
        until(lambda: scene.sent_seq > seq and scene.ready, "the '7'")
        seven_probs = scene.state.probabilities.copy()
        assert scene.state.top_guesses(1)[0][0] == "7"
        scene.morph.set_b(scene.state.drawing_input)
        until(lambda: scene.morph.curve is not None, "the morph curve")
        scene.morph.set_t(0.17)
        until(lambda: scene.ready and scene.state.top_guesses(1)[0][0] == "1", "the blend's guess")
        np.testing.assert_allclose(scene.state.network_input, scene.morph.image(0.17))

        scene.morph.stop()  # what the "back to the pad" button does
        seq = scene.sent_seq
        until(lambda: scene.sent_seq > seq and scene.ready, "the pad's drawing again")
        np.testing.assert_array_equal(scene.pad.canvas, seven)
        np.testing.assert_array_equal(scene.state.network_input, pad_to_input(seven))
        np.testing.assert_allclose(scene.state.probabilities, seven_probs, atol=1e-5)
        assert scene.state.top_guesses(1)[0][0] == "7"
        assert not scene.morph.active
    finally:
        app.close()
        ctx.release()
