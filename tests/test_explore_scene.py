"""The explore scene driven headless in this process: drawing, model switch, a killed worker, and
the colours on screen following the activations.  Pointer input is scripted through the same
InputCollector calls a GLFW window makes."""

import os
import signal
import time

import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.ui.input import MOUSE_LEFT
from convscope.scenes.explore.run import wait_until_ready
from convscope.scenes.explore.scene import ExploreScene

pytestmark = pytest.mark.gl
W, H = 960, 600
PAD_X, PAD_Y = 18, 37  # pad's top-left corner in the "Draw a digit" panel at (10, 10)
PAD_UNITS = 280.0  # the strokes below are given on a pad this many units across


def our_segments() -> set[str]:
    """This process's segments only: other test runs on the machine make their own."""
    from convscope.engine.proc.shm import list_segments, segment_prefix

    return set(list_segments(segment_prefix()))


@pytest.fixture
def app(ctx):
    before = our_segments()
    scene = ExploreScene(AppConfig(pad_size=280))
    app = App(scene, ctx=ctx, size=(W, H))
    yield app
    app.close()
    assert our_segments() - before == set(), "shared-memory segments left behind"


def frames_until(app: App, cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        app.frame()
        time.sleep(0.002)


def on_pad(app: App, x: float, y: float) -> tuple[float, float]:
    """Window coordinates of a point given on a 280-unit pad (the pad's side shrinks to let a short
    window hold the whole left column)."""
    k = app.scene.pads.side / PAD_UNITS
    return PAD_X + x * k, PAD_Y + y * k


def drag(app: App, points: list[tuple[float, float]]) -> None:
    """A left-button stroke through `points` (pad coordinates), one pointer move per frame."""
    sink = app.headless_input
    sink.on_cursor_pos(*on_pad(app, *points[0]))
    app.frame()
    sink.on_mouse_button(MOUSE_LEFT, True, 0)
    app.frame()
    for x, y in points[1:]:
        sink.on_cursor_pos(*on_pad(app, x, y))
        app.frame()
    sink.on_mouse_button(MOUSE_LEFT, False, 0)
    app.frame()


def test_scripted_stroke_reaches_the_network_and_the_screen(app):
    scene = app.scene
    wait_until_ready(app, scene, 60)
    assert scene.spec.total_nodes == 8894  # the traced LeNet: 28x28 input, conv1 reads it through a zero pad
    app.frame()
    before = app.read_pixels().copy()
    seq0 = scene.result_seq
    drag(app, [(140, 40 + 10 * i) for i in range(21)])  # a vertical bar: a "1"
    frames_until(app, lambda: scene.ready and scene.result_seq > seq0)
    app.frame()
    after = app.read_pixels()
    assert scene.state.network_input.max() > 0.9
    assert scene.state.top_guesses(1)[0][0] == "1"
    # Pad pixels turned white along the stroke, and nodes in the scene changed colour.
    x, y = (int(v) for v in on_pad(app, 140, 150))
    assert after[y, x].mean() > 200 and before[y, x].mean() < 60
    changed = np.abs(after.astype(int) - before.astype(int)).sum(axis=2) > 60
    assert changed[:, PAD_X + 480 :].sum() > 300


def test_an_empty_pad_shows_no_guess_and_grey_nodes(app):
    """Pixels: before any ink the guesses show no bar and the nodes rest at the no-input grey; a
    stroke brings both."""
    scene = app.scene
    wait_until_ready(app, scene, 60)
    app.frame()

    def orange_bars(shot):  # the top guess's bar colour, right of the pad in the "Draw a digit" panel
        draw, network = scene.panels.rect("Draw a digit"), scene.panels.rect("Network")
        x0, x1 = int(draw.x + scene.pads.side + 8), int(draw.right)
        y0, y1 = int(draw.y), int(min(draw.bottom, network.y))  # the Network panel may overlap its foot
        assert x1 - x0 > 100 and y1 - y0 > 150, (draw, network)
        r, g, b = (shot[y0:y1, x0:x1, i].astype(int) for i in range(3))
        return int(((r > 200) & (g > 130) & (g < 200) & (b < 90)).sum())

    def coloured(shot):
        right = shot[:, 480:]
        return int((right.max(axis=2).astype(int) - right.min(axis=2) > 50).sum())

    blank = app.read_pixels().copy()
    assert scene.input_blank and scene.state.probabilities is not None, "the blank pad was not answered"
    assert orange_bars(blank) == 0, "an empty pad shows a guess"
    assert coloured(blank) < 50, "nodes are coloured without input"
    seq0 = scene.result_seq
    drag(app, [(140, 40 + 10 * i) for i in range(21)])
    frames_until(app, lambda: scene.ready and scene.result_seq > seq0)
    app.frame()
    drawn = app.read_pixels()
    assert orange_bars(drawn) > 100 and coloured(drawn) > 2000


def test_model_switch_at_run_time(app):
    scene = app.scene
    wait_until_ready(app, scene, 60)
    scene.state.model = "mlp"
    frames_until(app, lambda: scene.spec.model == "mlp" and scene.ready)
    assert scene.spec.total_nodes == 1194
    assert len(scene.activations) == 1194
    assert scene.state.layer_names == ["input", "fc1", "fc2", "output"]


def test_killed_worker_is_shown_restarted_and_leaks_nothing(app):
    scene = app.scene
    wait_until_ready(app, scene, 60)
    os.kill(scene.worker.pid, signal.SIGKILL)
    frames_until(app, lambda: scene.state.worker_restarts == 1)
    assert "restarted" in (scene.state.error or "")
    scene.pad.set_image(np.eye(28, dtype=np.float32))
    frames_until(app, lambda: scene.ready and scene.worker.alive, timeout=60)
    assert scene.activations is not None
    assert not our_segments()


def test_hiding_a_layer_removes_its_pixels(app):
    scene = app.scene
    wait_until_ready(app, scene, 60)
    app.frame()
    shown = app.read_pixels().copy()
    scene.state.layer_visible[scene.spec.index("conv1")] = False
    scene.state.layers_changed = True
    app.frame()
    app.frame()
    hidden = app.read_pixels()
    assert np.abs(shown.astype(int) - hidden.astype(int)).sum(axis=2).astype(bool).sum() > 1000


def test_morph_offers_mnist_test_digits_from_the_data_dir(tmp_path):
    import gzip

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = (np.arange(3 * 28 * 28) % 251).astype(np.uint8).reshape(3, 28, 28)
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(
            (2051).to_bytes(4, "big")
            + (3).to_bytes(4, "big")
            + (28).to_bytes(4, "big") * 2
            + images.tobytes()
        )
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write((2049).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([7, 2, 1]))
    scene = ExploreScene(AppConfig(data_dir=str(tmp_path)))
    assert scene.morph.test_images.shape == (3, 28, 28)
    assert np.allclose(scene.morph.test_images[1], images[1] / 255.0)
    assert list(scene.morph.test_labels) == [7, 2, 1]
    missing = ExploreScene(AppConfig(data_dir=str(tmp_path / "nothing")))
    assert missing.morph.test_images is None and "MNIST" in missing.state.error
