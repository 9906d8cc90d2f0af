"""Details on demand in the explore scene, driven headless by scripted pointer events: hovering a node
draws its incoming edges (pixels), clicking opens the details panel (pixels) with the network's own
numbers, clicking empty space closes it, a drag orbits without selecting, panels swallow the hover,
a click during a model switch does not crash, a blank drawing shows no NaN.

Screenshots land in out/screens/details_*.png (look at them).  Run:
python -m pytest tests/test_details.py -q
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.graph.edges import incoming
from convscope.engine.graph.explain import formula_lines
from convscope.engine.ui.input import MOUSE_LEFT
from convscope.scenes.explore.run import wait_until_ready
from convscope.scenes.explore.scene import ExploreScene
from PIL import Image

pytestmark = pytest.mark.gl
W, H = 1280, 720
SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"
# The traced LeNet; conv1's count is for a node away from the border (it reads the 28x28 image through
# a zero pad, whose taps are not drawn).
EDGE_COUNTS = {"conv1": 25, "pool1": 4, "conv2": 150, "pool2": 4, "fc1": 400, "fc2": 120, "output": 100}


def digit() -> np.ndarray:
    """A '7'-ish stroke, so every layer has something to show."""
    img = np.zeros((28, 28), np.float32)
    img[5:8, 6:22] = 1.0
    for i in range(16):
        img[8 + i, 20 - i // 2 : 23 - i // 2] = 1.0
    return img


def our_segments() -> set[str]:
    """This process's segments only: other test runs on the machine make their own."""
    from convscope.engine.proc.shm import list_segments, segment_prefix

    return set(list_segments(segment_prefix()))


@pytest.fixture(scope="module")
def app():
    from convscope.engine.gpu.context import create_headless

    ctx = create_headless()
    before = our_segments()
    scene = ExploreScene(AppConfig(pad_size=280), drawing=digit())
    app = App(scene, ctx=ctx, size=(W, H))
    try:
        wait_until_ready(app, scene, 90)
        frames_until(app, lambda: scene.weights is not None)
        yield app
    finally:
        app.close()
        ctx.release()
    assert our_segments() - before == set(), "shared-memory segments left behind"


def frames_until(app: App, cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        app.frame()
        time.sleep(0.002)


def move(app: App, x: float, y: float, frames: int = 2) -> None:
    app.headless_input.on_cursor_pos(x, y)
    for _ in range(frames):
        app.frame()


def click(app: App, x: float, y: float) -> None:
    """Press and release without moving; then frames for the panel to lay itself out."""
    sink = app.headless_input
    sink.on_cursor_pos(x, y)
    app.frame()
    sink.on_mouse_button(MOUSE_LEFT, True, 0)
    app.frame()
    sink.on_mouse_button(MOUSE_LEFT, False, 0)
    for _ in range(4):
        app.frame()


def screen_of(scene: ExploreScene, node: int) -> tuple[float, float]:
    return tuple(scene.camera.project(scene.layout.positions[node], W, H)[0])


def empty_spot(scene: ExploreScene) -> tuple[float, float]:
    """A point between the left panels and the details panel where no node is drawn."""
    for y in range(H - 30, 0, -25):
        for x in range(W - 380, 500, -25):
            if scene.pick(x + 0.5, y + 0.5, (W, H)) < 0:
                return x + 0.5, y + 0.5
    raise AssertionError("no empty spot")


def clear_node(scene: ExploreScene, layer, rng: np.random.Generator) -> int:
    """A random node of `layer` that no panel covers (between the left panels and the details panel)."""
    for _ in range(1000):
        node = int(rng.integers(layer.start, layer.stop))
        x, _ = screen_of(scene, node)
        if 500 < x < W - 380:
            return node
    raise AssertionError(f"no node of {layer.name} clear of the panels")


def save(pixels: np.ndarray, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(SCREENS / f"details_{name}.png")


def reset(app: App) -> None:
    scene = app.scene
    scene.state.selected = -1
    scene.interaction.fit_pending = True
    move(app, *empty_spot(scene), frames=3)
    for _ in range(30):  # the details panel closed: let the panels settle and the view refit first
        if not scene.panels.reflowing:
            break
        app.frame()
    move(app, *empty_spot(scene), frames=2)
    assert scene.state.hovered == -1


def test_hover_draws_the_incoming_edges(app):
    scene = app.scene
    reset(app)
    base = app.read_pixels().copy()
    spec = scene.spec
    rng = np.random.default_rng(0)
    for name, count in EDGE_COUNTS.items():
        layer = spec.layer(name)
        if layer.is_grid:  # a node at least two rows / columns in from the border
            c, h, w = layer.shape
            at = (int(rng.integers(c)), int(rng.integers(2, h - 2)), int(rng.integers(2, w - 2)))
            node = layer.start + int(np.ravel_multi_index(at, layer.shape))
        else:
            node = int(rng.integers(layer.start, layer.stop))
        x, y = screen_of(scene, node)
        move(app, x, y)
        assert scene.state.hovered == node, (name, node, scene.state.hovered)
        assert scene.view.edges.count == count == incoming(spec, node).count
        shot = app.read_pixels().copy()
        if name in ("fc1", "conv2", "output"):
            save(shot, f"hover_{name}")
        changed = np.abs(shot.astype(int) - base.astype(int)).sum(axis=2) > 40
        # Edges are drawn between the node and its inputs: pixels on the way changed.
        srcs = scene.camera.project(scene.layout.positions[incoming(spec, node).sources], W, H)
        hits = 0
        for sx, sy in srcs[:: max(1, count // 12)]:
            mx, my = int((sx + x) / 2), int((sy + y) / 2)
            hits += changed[my - 1 : my + 2, mx - 1 : mx + 2].any()
        assert hits >= min(3, count), f"{name}: only {hits} edge midpoints changed colour"
        assert changed[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3].any(), f"{name}: no highlight"
    # Leaving the node removes the edges again.
    move(app, *empty_spot(scene))
    assert scene.state.hovered == -1 and scene.view.edges.count == 0
    after = app.read_pixels()
    # (The scene only: the status lines in the left panels may change as results come in.)
    left = np.abs(after.astype(int) - base.astype(int)).sum(axis=2)[:, 500:] > 40
    if left.sum() >= 50:
        save(base, "hover_base")
        save(after, "hover_after")
    assert left.sum() < 50, f"{left.sum()} scene pixels still differ after the pointer left"


def test_hover_upload_only_when_something_changed(app):
    scene = app.scene
    reset(app)
    node = scene.spec.layer("fc2").start + 7
    move(app, *screen_of(scene, node))
    uploads, picks = scene.view.edges.uploads, scene.picks
    for _ in range(5):
        app.frame()  # pointer and camera still: no new pick, no new upload
    assert scene.view.edges.uploads == uploads and scene.picks == picks
    x, y = screen_of(scene, node)
    move(app, x + 0.3, y)  # still the same node: a pick, no upload
    assert scene.state.hovered == node and scene.view.edges.uploads == uploads
    scene.state.edge_mode = "contribution"
    app.frame()
    assert scene.view.edges.uploads == uploads + 1
    scene.state.edge_mode = "weight"
    app.frame()


def test_click_opens_details_and_empty_click_closes_them(app):
    scene = app.scene
    reset(app)
    before = app.read_pixels().copy()
    spec = scene.spec
    cam = (scene.camera.yaw, scene.camera.pitch, scene.camera.distance, tuple(scene.camera.target))
    node = spec.layer("conv2").start + 3 * 100 + 4 * 10 + 6
    click(app, *screen_of(scene, node))
    assert (scene.camera.yaw, scene.camera.pitch, scene.camera.distance, tuple(scene.camera.target)) == cam, (
        "a click must not move the camera"
    )
    assert scene.state.selected == node
    e = scene.state.details
    assert e is not None and e.node == node and e.kind == "conv"
    assert (e.channel, e.y, e.x) == (3, 4, 6)
    assert e.value == float(scene.activations[node])  # the network's own output
    assert e.result == pytest.approx(e.value, abs=1e-5) and e.patch.shape == (6, 5, 5)
    shot = app.read_pixels().copy()
    save(shot, "click_conv2")
    panel = np.abs(shot.astype(int) - before.astype(int)).sum(axis=2) > 40
    assert panel[20:300, W - 330 : W - 20].mean() > 0.3, "the details panel did not appear top right"

    fc = spec.layer("fc1").start + 11
    click(app, *screen_of(scene, fc))
    assert scene.state.selected == fc and scene.state.details.kind == "dense"
    save(app.read_pixels(), "click_fc1")
    out = spec.layer("output").start + 2  # left of the details panel, which now covers the right
    click(app, *screen_of(scene, out))
    e = scene.state.details
    assert e.kind == "dense" and e.label == "2" and e.probabilities is not None
    assert e.probability == pytest.approx(float(scene.state.probabilities[2]), rel=1e-4, abs=1e-7)
    save(app.read_pixels(), "click_output")

    click(app, *empty_spot(scene))
    assert scene.state.selected == -1 and scene.state.details is None
    closed = app.read_pixels()
    assert (np.abs(closed.astype(int) - before.astype(int)).sum(axis=2) > 40)[
        20:300, W - 330 : W - 20
    ].mean() < 0.02


def test_drag_orbits_and_does_not_select(app):
    scene = app.scene
    reset(app)
    sink = app.headless_input
    node = scene.spec.layer("fc2").start + 50
    x, y = screen_of(scene, node)
    yaw = scene.camera.yaw
    sink.on_cursor_pos(x, y)
    app.frame()
    sink.on_mouse_button(MOUSE_LEFT, True, 0)
    app.frame()
    sink.on_cursor_pos(x + 2, y)  # within the click slop: nothing moves yet
    app.frame()
    assert scene.camera.yaw == yaw
    for i in range(1, 6):
        sink.on_cursor_pos(x + 2 + 8 * i, y)
        app.frame()
    sink.on_mouse_button(MOUSE_LEFT, False, 0)
    app.frame()
    assert scene.camera.yaw != yaw and scene.state.selected == -1
    want = (yaw - 42 * scene.camera.orbit_speed) % (2 * np.pi)
    assert scene.camera.yaw == pytest.approx(want), "the whole drag counts once it is a drag"


def test_no_hover_through_a_panel(app):
    scene = app.scene
    reset(app)
    # Slide the network under the "Network" panel, then point at a node there.
    node = scene.spec.layer("fc1").start + 60
    x, y = screen_of(scene, node)
    scene.camera.pan(200 - x, 500 - y, H)
    app.frame()
    x, y = screen_of(scene, node)
    assert 20 < x < 380 and 420 < y < 640, (x, y)
    assert scene.pick(x, y, (W, H)) == node, "the node is drawn there (under the panel)"
    move(app, x, y)
    assert scene.state.hovered == -1 and scene.view.edges.count == 0
    click(app, x, y)
    assert scene.state.selected == -1, "a click on a panel is the panel's"
    scene.interaction.fit_pending = True
    app.frame()


def test_blank_drawing_shows_no_nan(app):
    scene = app.scene
    reset(app)
    seq = scene.result_seq
    scene.pad.set_image(np.zeros((28, 28), np.float32))
    frames_until(app, lambda: scene.ready and scene.result_seq > seq)
    rng = np.random.default_rng(1)
    for layer in scene.spec.layers:
        node = clear_node(scene, layer, rng)
        click(app, *screen_of(scene, node))
        assert scene.state.selected == node
        e = scene.state.details
        assert e is not None
        text = " ".join(formula_lines(e))
        assert "nan" not in text.lower(), text
        lg = scene.state.legend
        assert np.isfinite([lg.node_lo, lg.node_hi]).all() and (
            lg.edge_scale is None or np.isfinite(lg.edge_scale)
        )
    save(app.read_pixels(), "blank_output")
    scene.pad.set_image(digit())
    frames_until(app, lambda: scene.ready and scene.result_seq > seq + 1)


def test_click_during_a_model_switch(app):
    """Last in this module: it leaves the scene on the MLP."""
    scene = app.scene
    reset(app)
    node = scene.spec.layer("fc1").start + 20
    x, y = screen_of(scene, node)
    click(app, x, y)
    assert scene.state.selected == node
    scene.state.model = "mlp"
    app.frame()  # the switch is under way; the old network is still drawn
    for i in range(6):
        click(app, x + 3 * i, y)  # hover and click while the worker loads the MLP
    frames_until(app, lambda: scene.spec.model == "mlp" and scene.ready)
    for _ in range(6):
        click(app, x, y)  # node ids of the old network are gone; new ones are picked
    frames_until(app, lambda: scene.weights is not None)
    assert set(scene.weights) == {"fc1", "fc2", "output"}
    node = scene.spec.layer("fc2").start + 33
    click(app, *screen_of(scene, node))
    assert scene.state.selected == node and scene.state.details.kind == "dense"
    assert len(scene.state.details.terms) == 300
    save(app.read_pixels(), "mlp_fc2")
    move(app, *screen_of(scene, scene.spec.layer("fc1").start + 150))
    assert scene.view.edges.count == 784


def bar_pixels(shot: np.ndarray, rect) -> tuple[np.ndarray, np.ndarray]:
    """The middle row of a colour bar drawn at `rect` (screen units = pixels here), inset by 2 px, and
    where along the bar each pixel sits (0 at the left end, 1 at the right)."""
    x0, y0, x1, y1 = rect
    xs = np.arange(int(np.ceil(x0)) + 2, int(np.floor(x1)) - 2)
    row = shot[int((y0 + y1) / 2), xs].astype(float) / 255.0
    return row, (xs + 0.5 - x0) / (x1 - x0)


def lenet(app: App) -> None:
    """Back to LeNet (an earlier test switches to the MLP), with its weights and a result."""
    scene = app.scene
    scene.state.model = "lenet"
    frames_until(
        app,
        lambda: (
            scene.spec is not None
            and scene.spec.model == "lenet"
            and scene.weights is not None
            and scene.worker.weights_version == scene.net.weights_version
            and scene.ready
        ),
        90,
    )
    for _ in range(3):
        app.frame()


def test_colour_bars_show_the_maps_of_nodes_edges_and_heatmaps(app):
    """Select a conv2 node and hover it: the Network panel's node bar shows the node colormap, its edge bar
    and the details' filter / product bars the diverging map (blue, grey at zero, red), the patch bar the
    node colormap; every bar's pixels match the map they stand for, and the terms table shows whole labels."""
    from convscope.engine.gpu import colormaps

    scene = app.scene
    lenet(app)
    reset(app)
    node = scene.spec.layer("conv2").start + 5 * 100 + 3 * 10 + 4
    click(app, *screen_of(scene, node))
    move(app, *screen_of(scene, node), frames=4)
    assert scene.state.selected == node and scene.state.legend.edge_scale is not None
    shot = app.read_pixels().copy()
    save(shot, "colour_bars")
    rects = scene.state.bar_rects
    expected = {
        "nodes": scene.state.colormap,
        "edges": colormaps.DIVERGING,
        "patch": scene.state.colormap,
        "filter": colormaps.DIVERGING,
        "product": colormaps.DIVERGING,
    }
    for name, cmap in expected.items():
        assert name in rects, f"no {name} colour bar"
        row, t = bar_pixels(shot, rects[name])
        assert len(row) > 60, (name, rects[name])
        err = np.abs(row - colormaps.sample(cmap, t)).max(axis=1)
        assert np.median(err) < 0.03 and err.max() < 0.1, (name, float(np.median(err)), float(err.max()))
    lo, hi, _ = scene.state.detail_ranges["product"]
    assert lo == -hi and hi == pytest.approx(float(np.abs(scene.state.details.product).max()), rel=1e-6)


def test_an_all_zero_product_shows_the_zero_colour(app):
    """A blank drawing: conv2's inputs are constant, so a node's patch may be non-zero but a node whose
    product is all zero must show the diverging map's middle grey, not the top or a hue."""
    from convscope.engine.gpu import colormaps
    from convscope.engine.graph.explain import explain
    from convscope.scenes.explore.details import conv_images

    scene = app.scene
    lenet(app)
    spec = scene.spec
    conv1 = spec.layer("conv1")
    zeros = np.zeros(spec.total_nodes, np.float32)
    e = explain(spec, conv1.start, zeros, scene.weights)
    assert not e.product.any()
    images, ranges = conv_images(e, scene.state.colormap, (0.0, 1.0))
    grey = colormaps.sample(colormaps.DIVERGING, 0.5)
    tiles = images["product"][:, :5]
    np.testing.assert_allclose(tiles, np.broadcast_to(grey, tiles.shape), atol=1e-6)
    lo, hi, _ = ranges["product"]
    assert lo == hi == 0.0


def test_many_channel_heatmaps_wrap_into_rows_inside_the_panel():
    """A small ResNet's block2.conv2 node reads 32 x 3 x 3 inputs and block3.conv2's 64 x 3 x 3: the patch,
    filter and product heatmaps wrap into rows of 8 / 16 tiles that stay inside the window, each under
    its colour bar's width, and every tap on screen shows its value's colour; the 3-channel stem conv
    keeps one strip."""
    import sys

    import torch
    from convscope.engine.graph.explain import heatmap_grid
    from convscope.models.loader import load_model
    from convscope.scenes.explore.details import DETAIL_IMAGES, conv_images
    from traced_worker import TracedWorker

    nets = Path(__file__).resolve().parent / "nets"
    torch.manual_seed(1)
    model = load_model(f"{nets / 'small_resnet.py'}:SmallResNet")
    sys.modules[type(model).__module__].randomize_batch_norm(model, 1)
    from convscope.engine.gpu.context import create_headless

    ctx = create_headless()
    scene = ExploreScene(AppConfig(pad_size=280), drawing=digit())
    scene.worker = TracedWorker(model, (3, 32, 32), scene.state.model, tuple("abcdefghij"))
    app = App(scene, ctx=ctx, size=(W, H))
    try:
        app.frame()
        # A 3-channel model takes a picture, not the pad: hand the stand-in worker the digit directly.
        scene.net.sent_seq = scene.worker.submit(digit())
        frames_until(app, lambda: scene.ready)
        dag = scene.spec
        grids = {"conv": (3, 1), "block2.conv2": (8, 4), "block3.conv2": (16, 4)}
        for name, (per_row, rows) in grids.items():
            layer = dag.layer(name)
            _, h, w = layer.shape
            node = layer.start + (layer.shape[0] // 2) * h * w + (h // 3) * w + w // 2
            scene.state.selected = node
            frames_until(app, lambda node=node: getattr(scene.state.details, "node", None) == node)
            for _ in range(4):  # the panel lays itself out
                app.frame()
            e = scene.state.details
            assert e.patch is not None, name
            c, kh, kw = e.patch.shape
            assert heatmap_grid(c, kh, kw)[:2] == (per_row, rows), name
            shot = app.read_pixels().copy()
            save(shot, f"heatmaps_{name}")
            source = e.layer.inputs[0].source
            images, _ = conv_images(e, scene.state.colormap, scene.state.detail_ranges["patch"][:2])
            assert images["patch"].shape == (rows * (kh + 1) - 1, per_row * (kw + 1) - 1, 3), source
            px = heatmap_grid(c, kh, kw)[2]
            for kind in DETAIL_IMAGES:
                x0, y0, x1, _ = scene.state.bar_rects[kind]
                img = images[kind]
                iw, ih = px * img.shape[1], px * img.shape[0]
                assert x0 + iw <= min(x1, W) + 0.5, (name, kind, x0, iw, x1)  # inside the panel's bar width
                # the image sits right above its colour bar (an item spacing between): find how far
                taps_y = (np.arange(img.shape[0]) + 0.5) * px
                taps_x = (np.arange(img.shape[1]) + 0.5) * px
                best = None
                for gap in range(0, 12):
                    top = y0 - gap - ih
                    ys = (top + taps_y).astype(int)
                    xs = (x0 + taps_x).astype(int)
                    seen = shot[ys[:, None], xs[None, :]].astype(float) / 255.0
                    err = np.abs(seen - img).max(axis=2)
                    if best is None or np.median(err) < best[0]:
                        best = (float(np.median(err)), float(np.percentile(err, 99)), gap)
                assert best[0] < 0.02 and best[1] < 0.06, (name, kind, best)
    finally:
        app.close()
        ctx.release()
