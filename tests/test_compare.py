"""Compare mode headless: a CompareView with a real MLP worker next to a LeNet diagram, split screen.

Checks: both halves show nodes, each half is exactly what its renderer draws alone (the second half's
clear does not erase the first), the MLP activations are the ones a WorkerHandle('mlp') computes for the
same input, the top-3 overlays are drawn, camera input goes to the half under the pointer, and the worker
and its shared memory go away on release.  Screenshot: out/screens/compare_split.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.camera import OrbitCamera
from convscope.engine.gpu.frame import OffscreenTarget
from convscope.engine.gpu.scene_renderer import RenderSettings, SceneRenderer
from convscope.engine.graph.layout import build_layout
from convscope.engine.ui.input import MOUSE_LEFT, InputState
from convscope.scenes.explore.compare import CompareView, split
from convscope.scenes.explore.pad import PadState
from convscope.scenes.explore.preprocess import pad_to_input
from gl_helpers import lenet_spec, smooth_activations
from PIL import Image

pytestmark = pytest.mark.gl
SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"
W, H = 960, 480


def our_segments() -> set[str]:
    """This process's segments only: other test runs on the machine make their own."""
    from convscope.engine.proc.shm import list_segments, segment_prefix

    return set(list_segments(segment_prefix()))


def seven() -> np.ndarray:
    pad = PadState(size=280, radius=18.0)
    pad.begin_stroke(80, 60)
    pad.stroke_to(200, 60)
    pad.stroke_to(120, 230)
    pad.end_stroke()
    return pad_to_input(pad.canvas)


class CompareScene:
    """The smallest scene using CompareView as the explore scene would: LeNet (synthetic activations,
    the primary) on the left, the real MLP worker on the right."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.camera = OrbitCamera()
        self.primary_probs = np.eye(10, dtype=np.float32)[7] * 0.8 + 0.02
        self.compare: CompareView | None = None

    def on_enter(self, fc) -> None:
        self.ctx = fc.ctx
        self.renderer = SceneRenderer(self.ctx, build_layout(lenet_spec()))
        self.renderer.set_activations(smooth_activations(lenet_spec(), seed=3))
        self.compare = CompareView(self.ctx, "mlp")
        self.compare.submit(self.image)

    def gui(self) -> None:
        self.compare.gui(self.primary_probs, "LeNet (CNN)")

    def update(self, inp: InputState, dt: float, ui_mouse: bool, ui_keyboard: bool) -> None:
        self.compare.update()
        self.compare.steer(inp, ui_mouse, self.camera)

    def upload(self) -> None:
        self.compare.upload()

    def draw(self, viewport: tuple[int, int]) -> None:
        self.compare.draw(viewport, RenderSettings(), primary=(self.renderer, self.camera))

    def on_exit(self) -> None:
        self.compare.release()
        self.renderer.release()


@pytest.fixture(scope="module")
def ctx():
    from gl_helpers import gl_context

    return gl_context()


@pytest.fixture(scope="module")
def app(ctx):
    before = our_segments()
    app = App(CompareScene(seven()), ctx=ctx, size=(W, H))
    scene = app.scene
    deadline = time.monotonic() + 60
    while not scene.compare.ready:
        assert time.monotonic() < deadline, f"no MLP result ({scene.compare.error})"
        app.frame()
        time.sleep(0.01)
    app.frame()  # the result is on the GPU now; this frame shows it (and the overlay of the last draw)
    app.frame()
    yield app
    app.close()
    assert our_segments() - before == set(), "shared-memory segments left behind"


def node_pixels(px: np.ndarray) -> np.ndarray:
    """Pixels of nodes: the harley colormap runs from navy (0, 27, 63) through saturated colours; the
    background is a grey-blue glow (blue at most ~20 above red, channels within ~25 of each other)."""
    f = px.astype(np.int32)
    navy = f[..., 2] - f[..., 0] > 35
    saturated = (f.max(axis=2) - f.min(axis=2) > 60) & (f.max(axis=2) > 120)
    return navy | saturated


def test_both_halves_show_their_network(app):
    px = app.read_pixels()
    SCREENS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(px).save(SCREENS / "compare_split.png")
    left, right = px[110:, : W // 2], px[110:, W // 2 :]  # below the overlay cards
    assert node_pixels(left).sum() > 2000, "no LeNet nodes in the left half"
    assert node_pixels(right).sum() > 2000, "no MLP nodes in the right half"
    left, right = px[:, : W // 2], px[:, W // 2 :]
    # The overlay cards: a white title in each half's top-left corner.
    for half in (left, right):
        corner = half[8:30, 8:160]
        assert (corner.min(axis=2) > 230).sum() > 20, "no title text in the corner"


def test_each_half_shows_what_its_renderer_draws_alone(app, ctx):
    """The nodes of each half sit where the renderer puts them in a window of the half's size: the
    lens-shifted projection changes where the picture goes, not what it is, and the second half's clear
    leaves the first alone.  (The background glow is centred on the whole frame, so compare nodes.)"""
    scene = app.scene
    frame = app.read_pixels()
    halves = split((0, 0, W, H))
    renderers = (scene.renderer, scene.compare._renderer)
    cameras = (scene.camera, scene.compare.camera)
    for (x, y, w, h), renderer, camera in zip(halves, renderers, cameras, strict=True):
        alone = OffscreenTarget(ctx, w, h)
        try:
            alone.use()
            renderer.draw(camera, (w, h), RenderSettings())
            ctx.finish()
            ref = alone.read()
        finally:
            alone.release()
        half = frame[y : y + h, x : x + w]
        keep = np.ones((h, w), bool)
        keep[:110, :200] = False  # the overlay card
        keep[:, :2] = False  # the divider line
        ref_nodes, half_nodes = node_pixels(ref) & keep, node_pixels(half) & keep
        assert ref_nodes.sum() > 300, f"the renderer alone drew no nodes for the half at x={x}"
        iou = (ref_nodes & half_nodes).sum() / (ref_nodes | half_nodes).sum()
        assert iou > 0.97, f"nodes of the half at x={x} are not where they are alone (IoU {iou:.3f})"
        diff = np.abs(half.astype(np.int32) - ref.astype(np.int32))[ref_nodes & half_nodes]
        assert np.median(diff) <= 2, f"node colours differ (median {np.median(diff)})"


def test_mlp_activations_equal_a_plain_worker(app):
    from convscope.features.inference import WorkerHandle

    compare = app.scene.compare
    assert compare.spec.model == "mlp" and compare.spec.total_nodes == 784 + 300 + 100 + 10
    with WorkerHandle("mlp") as reference:
        expected = reference.infer_sync(app.scene.image)
    np.testing.assert_array_equal(compare.activations, expected.activations)
    np.testing.assert_array_equal(compare.probabilities, expected.probabilities)
    assert int(np.argmax(compare.probabilities)) == 7
    # The output nodes show the probabilities, the rest the activations as computed.
    shown = compare.display_values()
    np.testing.assert_array_equal(shown[-10:], expected.probabilities)
    np.testing.assert_array_equal(shown[:-10], expected.activations[:-10])


def test_a_drag_in_the_right_half_moves_the_mlp_camera(app):
    scene = app.scene
    sink = app.headless_input
    yaw_primary, target_other = scene.camera.yaw, scene.compare.camera.target.copy()
    # Right button: pan only the camera of the half the drag started in.
    sink.on_cursor_pos(3 * W // 4, H // 2)
    app.frame()
    sink.on_mouse_button(1, True, 0)
    app.frame()
    for i in range(1, 6):
        sink.on_cursor_pos(3 * W // 4 + 10 * i, H // 2)
        app.frame()
    sink.on_mouse_button(1, False, 0)
    app.frame()
    assert not np.allclose(scene.compare.camera.target, target_other), "the MLP camera did not pan"
    # Left button in the left half: orbits, linked, so both cameras turn.
    yaw_other = scene.compare.camera.yaw
    sink.on_cursor_pos(W // 4, H // 2)
    app.frame()
    sink.on_mouse_button(MOUSE_LEFT, True, 0)
    app.frame()
    sink.on_cursor_pos(W // 4 + 40, H // 2)
    app.frame()
    sink.on_mouse_button(MOUSE_LEFT, False, 0)
    app.frame()
    assert scene.camera.yaw != yaw_primary and scene.compare.camera.yaw != yaw_other


def test_a_killed_worker_is_restarted_and_answers_again(app):
    import os
    import signal

    compare = app.scene.compare
    before = compare.activations.copy()
    os.kill(compare.worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while compare.worker.restarts == 0 or not compare.worker.ready:
        assert time.monotonic() < deadline, f"worker not restarted ({compare.error})"
        app.frame()
        time.sleep(0.01)
    seq = compare.submit(app.scene.image)
    while compare.result_seq < seq:
        assert time.monotonic() < deadline, "no result after the restart"
        app.frame()
        time.sleep(0.01)
    np.testing.assert_array_equal(compare.activations, before)
