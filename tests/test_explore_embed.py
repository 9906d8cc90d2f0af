"""The explorer's Embedding window: the inference worker's embedding commands
checked against torch, and the window driven headless in this process with a real worker and a real t-SNE
process.

- The four vector kinds of LeNet's conv layers, read through the worker's shared memory, equal a direct torch
  computation for the drawing, the loss taken against the network's own top guess (argmax); ids are the
  filter indices, shapes are LeNet's; an MLP has no filters and says so.
- Images mode through the worker: the built-in digits (the data dir is an empty tmp dir), their labels and
  pixels, and one layer's activations equal to a torch forward pass; drawings are answered while a job runs.
- The scene: the window renders its plot, a click on a point selects the filter's map in 3D (outlined),
  a click on a conv map in 3D rings its filter's point; the drawing-dependent kinds follow a new drawing;
  images mode colours points by class, hover shows the image and a click puts it on the drawing pad; the
  MLP's filters mode says it has no conv layers.
- A fresh process that opens the window and gets a layout never imports torch.

PNGs go to pytest's tmp_path and out/screens/explore_embed_*.png (look at them after a change).
Run: python -m pytest tests/test_explore_embed.py -q
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.proc.shm import list_segments, segment_prefix
from convscope.features.data.datasets import builtin_digits
from convscope.features.embedding.messages import KINDS
from convscope.features.embedding.panel import FILTER_RGB, FILTERS, IMAGES, PALETTE, SELECTED_RGB
from convscope.features.inference import WorkerHandle
from convscope.models.weights import load_model
from convscope.scenes.explore.run import wait_until_ready
from convscope.scenes.explore.scene import ExploreScene
from gl_helpers import gl_context
from ui_driver import TIMEOUT, click, colour_count, embed_shown, frame, frames_until, move, save

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "explore_embed"  # screenshots: out/screens/explore_embed_*.png
W, H = 1600, 900  # the explorer's default window: room right of the Embedding window for the 3D view


def drawing(seed: int = 0) -> np.ndarray:
    """A seeded, ambiguous 28x28 scribble: the network is unsure, so the loss and its gradients are not ~0."""
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), np.float32)
    y, x = 14.0, 14.0
    for _ in range(60):
        y, x = np.clip(y + rng.normal(0, 1.6), 4, 23), np.clip(x + rng.normal(0, 1.6), 4, 23)
        img[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 1.0
    return img


def reference(model, image: np.ndarray, conv_name: str) -> dict:
    """The four kinds for `image` by hand: forward, label = argmax, cross-entropy, autograd."""
    x = torch.from_numpy(image).view(1, 1, 28, 28)
    conv = getattr(model, conv_name)
    with torch.enable_grad():
        acts = model.forward_all(x)
        act = acts[conv_name]
        logits = acts["output"]
        label = int(logits.argmax(1))
        loss = F.cross_entropy(logits, torch.tensor([label]))
        gw, ga = torch.autograd.grad(loss, [conv.weight, act])
    c = conv.weight.shape[0]
    return {
        "label": label,
        "loss": float(loss.detach()),
        "coefficients": conv.weight.detach().reshape(c, -1).numpy(),
        "filter_gradients": gw.reshape(c, -1).numpy(),
        "activations": act.detach()[0].reshape(c, -1).numpy(),
        "activation_gradients": ga[0].reshape(c, -1).numpy(),
    }


# -- the worker --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet():
    torch.set_num_threads(1)
    handle = WorkerHandle("lenet")
    assert handle.start(TIMEOUT), handle.error
    yield handle
    handle.close()


@pytest.fixture(scope="module")
def digits():
    return builtin_digits(channels=1, size=28)  # what the worker shows without MNIST


def test_four_kinds_for_the_drawing_equal_torch_with_the_top_guess_as_label(lenet):
    model = load_model("lenet")
    img = drawing(0)
    result = lenet.infer_sync(img)
    for layer, name, c, weight_shape, map_shape in (
        (0, "conv1", 6, (1, 5, 5), (28, 28)),
        (1, "conv2", 16, (6, 5, 5), (10, 10)),
    ):
        got = lenet.wait_filters(lenet.embed_filters(layer))
        ref = reference(model, img, name)
        assert got.layer == name and got.layer_index == layer
        assert got.seq == result.seq, "the vectors are for the drawing in the input slot"
        assert list(got.ids) == list(range(c)), "the explorer's filter ids are their indices"
        assert got.weight_shape == weight_shape and got.map_shape == map_shape
        assert got.label == ref["label"] == int(np.argmax(result.probabilities)), "label = the top guess"
        assert got.loss == pytest.approx(ref["loss"], rel=1e-4, abs=1e-6)
        for kind in KINDS:
            assert got.vectors[kind].shape == ref[kind].shape, kind
            np.testing.assert_allclose(got.vectors[kind], ref[kind], rtol=1e-4, atol=1e-6, err_msg=kind)
        assert np.abs(got.vectors["activation_gradients"]).sum() > 0, "a zero gradient would prove nothing"
    # A new drawing: new vectors, for its own seq.
    other = drawing(1)
    seq = lenet.submit(other)
    got = lenet.wait_filters(lenet.embed_filters(1))
    assert got.seq == seq
    np.testing.assert_allclose(
        got.vectors["activations"], reference(model, other, "conv2")["activations"], atol=1e-5
    )
    # A layer that is not there: refused with the reason, and drawings go on.
    with pytest.raises(RuntimeError, match="out of range"):
        lenet.wait_filters(lenet.embed_filters(5))
    assert lenet.infer_sync(img).seq > seq


def test_mlp_has_no_filters_to_embed():
    handle = WorkerHandle("mlp")
    try:
        assert handle.start(TIMEOUT), handle.error
        job = handle.embed_filters(0)
        ok, text = handle.replies[job]
        assert not ok and "no conv layers" in text
    finally:
        handle.close()


def test_images_of_the_builtin_digits_by_one_layer_equal_torch(lenet, digits, tmp_path):
    before = set(list_segments(segment_prefix()))
    lenet.open_images(tmp_path)  # empty: no MNIST there
    info = lenet.wait_image_data()
    assert info["dataset"] == "digits" and "built-in" in info["note"] and "MNIST" in info["reason"]
    assert (info["n_test"], info["n_train"]) == (len(digits.x_val), len(digits.x_train))
    model = load_model("lenet")

    # More than the test images: the training images follow.
    n = len(digits.x_val) + 100
    job = lenet.embed_images("conv2", n, include_train=True)
    seqs = [lenet.submit(drawing(s)) for s in range(3)]  # drawings keep being answered meanwhile
    answered = 0
    while answered < seqs[-1]:
        r = lenet.poll()
        answered = max(answered, r.seq if r is not None else 0)
        time.sleep(0.001)
    job = lenet.wait_images()
    x = torch.cat([digits.x_val, digits.x_train[:100]])
    y = torch.cat([digits.y_val, digits.y_train[:100]])
    assert (job.n, job.n_val, job.d) == (n, len(digits.x_val), 16 * 10 * 10)
    np.testing.assert_array_equal(job.labels, y.numpy())
    np.testing.assert_array_equal(job.images, x.numpy())
    with torch.no_grad():
        expected = model.forward_all(x.float() / 255.0)["conv2"].flatten(1).numpy()
    np.testing.assert_allclose(job.vectors, expected, rtol=1e-4, atol=1e-5)

    # Only the test images, asked for more than there are: all of them; fc layers work too.
    job = lenet.embed_images("fc2", 10_000, include_train=False)
    job = lenet.wait_images()
    assert job.n == job.n_val == len(digits.x_val) and job.vectors.shape == (len(digits.x_val), 100)
    with torch.no_grad():
        expected = model.forward_all(digits.x_val.float() / 255.0)["fc2"].numpy()
    np.testing.assert_allclose(job.vectors, expected, rtol=1e-4, atol=1e-5)
    assert set(list_segments(segment_prefix())) - before == set(), "segments are unlinked once attached"


# -- the scene ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    torch.set_num_threads(1)
    ctx = gl_context()
    before = set(list_segments(segment_prefix()))
    empty = tmp_path_factory.mktemp("no_mnist")
    app = App(ExploreScene(AppConfig(pad_size=280, data_dir=str(empty))), ctx=ctx, size=(W, H))
    wait_until_ready(app, app.scene, TIMEOUT)
    app.scene.pad.set_image(drawing(0))
    app.scene.state.show_embedding = True
    yield app
    app.close()
    assert set(list_segments(segment_prefix())) - before == set(), "shared-memory segments left behind"


def map_centre(scene: ExploreScene, layer: str, f: int) -> tuple[float, float]:
    """Where the middle node of map `f` of `layer` is drawn on screen (framebuffer pixels)."""
    x = scene.spec.layer(layer)
    _, h, w = x.shape
    node = x.start + f * h * w + (h // 2) * w + w // 2  # a node, not the gap between the middle four
    px, py = scene.camera.project(scene.layout.positions[node][None], W, H)[0]
    return float(px), float(py)


def visible_map(scene: ExploreScene, layer: str) -> int:
    """The map of `layer` drawn farthest right: clear of the drawing panels and the Embedding window."""
    return int(np.argmax([map_centre(scene, layer, f)[0] for f in range(scene.spec.layer(layer).shape[0])]))


def test_filters_window_renders_and_a_click_selects_the_map_in_3d(app, tmp_path):
    scene, st = app.scene, app.scene.state
    p, view = st.embed, scene.embedding
    frames_until(app, lambda: embed_shown(app, "conv1", 6), "conv1's layout")
    assert sorted(p.ids.tolist()) == list(range(6)) and np.isfinite(p.positions()).all()
    assert view._data.label == int(np.argmax(st.probabilities)), "gradients against the top guess"
    assert "top guess" in p.kind_notes["filter_gradients"] and "top guess" in p.status
    frame(app)
    img = app.read_pixels()
    x0, y0, x1, y1 = (int(v) for v in p.plot_rect)
    plot = img[y0:y1, x0:x1].reshape(-1, 3).astype(int)
    markers = (np.abs(plot - np.array(FILTER_RGB) * 255).max(-1) <= 40).sum()
    assert markers > 6 * 20, f"the plot shows no filter markers ({markers} pixels)"
    assert len(np.unique(plot // 16, axis=0)) > 3, "the plot is blank"

    # Hover: the tooltip shows the filter's picture.
    f = visible_map(scene, "conv1")
    x, y = p.pixel_of(f)
    move(app, x, y, frames=3)
    assert p.hovered == f
    img = app.read_pixels()
    save(img, tmp_path, PREFIX, "hover")
    below = img[int(y) + 10 : int(y) + 160, int(x) : int(x) + 240].reshape(-1, 3).astype(int)
    centre = np.round(view._thumbs[f][2, 2] * 255).astype(int)  # grey: conv1 filters have one channel
    assert (np.abs(below - centre).max(-1) <= 3).sum() > 50, "no picture of the filter in the tooltip"

    # Panel -> 3D: a click on the point selects a node of the filter's map, its most active one.
    click(app, x, y)
    node = st.selected
    conv1 = scene.spec.layer("conv1")
    assert conv1.start + f * 784 <= node < conv1.start + (f + 1) * 784, f"node {node} is not in map {f}"
    acts = scene.activations[conv1.start + f * 784 : conv1.start + (f + 1) * 784]
    assert acts.max() <= 0 or scene.activations[node] == acts.max()
    assert p.selected_filter == f and not p.take_selection()
    move(app, W - 5, 5, frames=2)  # pointer away: no hover
    outlined = app.read_pixels().copy()
    scene.view.outline.clear()  # the same frame without the outline
    frame(app)
    bare = app.read_pixels()
    scene.net.outline_key = None  # draw it again from the next frame on
    save(outlined, tmp_path, PREFIX, "selected")
    cx, cy = map_centre(scene, "conv1", f)
    diff = np.abs(outlined.astype(int) - bare.astype(int)).max(-1) > 60
    near = diff[int(cy) - 60 : int(cy) + 60, int(cx) - 80 : int(cx) + 80]
    assert near.sum() > 20, "no outline around the selected filter's map in 3D"


def test_a_click_on_a_conv_map_in_3d_rings_its_point(app, tmp_path):
    scene, st = app.scene, app.scene.state
    p = st.embed
    st.selected = -1  # the details panel goes: it would cover the maps on the right
    frame(app)
    f = visible_map(scene, "conv2")
    click(app, *map_centre(scene, "conv2", f))
    conv2 = scene.spec.layer("conv2")
    assert conv2.start + f * 100 <= st.selected < conv2.start + (f + 1) * 100
    frames_until(app, lambda: embed_shown(app, "conv2", 16), "conv2's layout after the 3D pick")
    assert p.layer == "conv2" and p.selected_filter == f
    move(app, W - 5, 5, frames=2)
    img = app.read_pixels()
    save(img, tmp_path, PREFIX, "ringed")
    rx, ry = p.pixel_of(f)
    assert colour_count(img, rx, ry, SELECTED_RGB) > 4, "the filter picked in 3D has no ring"
    far = [i for i in range(16) if np.hypot(*np.subtract(p.pixel_of(i), (rx, ry))) > 20]
    assert far and all(colour_count(img, *p.pixel_of(i), SELECTED_RGB) == 0 for i in far[:5])


def test_drawing_dependent_kinds_follow_the_drawing(app):
    scene, st = app.scene, app.scene.state
    p, view = st.embed, scene.embedding
    click(app, *p.widget_centers["activations"])
    assert p.kind == "activations"
    frames_until(
        app, lambda: embed_shown(app, "conv2", 16) and view._data.seq == scene.sent_seq, "activations"
    )
    before, seq0 = view._data.vectors["activations"].copy(), view._data.seq
    scene.pad.set_image(drawing(2))  # what a stroke's end does
    frames_until(
        app,
        lambda: view._data.seq > seq0 and view._data.seq == scene.sent_seq and embed_shown(app, "conv2", 16),
        "a layout for the new drawing",
    )
    assert not np.allclose(view._data.vectors["activations"], before)
    # Coefficients do not change with the drawing: no request for a new one.
    click(app, *p.widget_centers["coefficients"])
    frames_until(app, lambda: embed_shown(app, "conv2", 16) and view._cmd is None, "coefficients")
    seq = view._data.seq
    scene.pad.set_image(drawing(3))
    frames_until(app, lambda: scene.ready, "the new drawing's result")
    for _ in range(5):
        frame(app)
    assert view._cmd is None and view._data.seq == seq, "coefficients were asked for again"


def test_images_mode_colours_by_class_and_a_click_draws_the_image(app, digits, tmp_path):
    scene, st = app.scene, app.scene.state
    p, view = st.embed, scene.embedding
    click(app, *p.widget_centers[IMAGES])
    assert p.mode == IMAGES
    frames_until(
        app,
        lambda: p.shown_view == (IMAGES, p.image_layer) and p.final and not p.animating,
        "the images layout",
        rest=0.03,  # a 1,797-point t-SNE in the other process
    )
    n_all = len(digits.x_val) + len(digits.x_train)  # fewer than the 10,000 asked for
    assert p.image_layer == "fc2" and len(p.ids) == n_all and "all that digits has" in st.embed_note
    assert "built-in" in st.embed_data_note
    labels = torch.cat([digits.y_val, digits.y_train]).numpy()
    np.testing.assert_array_equal(p.labels, labels[p.ids])
    frame(app)
    img = app.read_pixels()
    x0, y0, x1, y1 = (int(v) for v in p.plot_rect)
    colours = {tuple(c) for c in (img[y0:y1, x0:x1].reshape(-1, 3) // 32).tolist()}
    assert len(colours) > 10, "the points are not coloured by class"

    # From raster_min_points on, the points go out as one picture: the same squares where the markers were.
    assert not p.rastered, "1,797 points are drawn as markers by default"
    p.raster_min_points = 1000
    for _ in range(3):  # the texture is made the first frame, painted and shown the next
        frame(app)
    assert p.rastered and p.raster is not None and p.raster.shape[:2] == p.raster_size[::-1]
    pic = app.read_pixels()
    save(
        np.concatenate([img[y0:y1, x0:x1], pic[y0:y1, x0:x1]], axis=1), tmp_path, PREFIX, "raster_vs_markers"
    )
    a, b = img[y0:y1, x0:x1].astype(int), pic[y0:y1, x0:x1].astype(int)
    differ = (np.abs(a - b).max(-1) > 60).mean()
    assert differ < 0.03, f"the picture differs from the markers on {100 * differ:.1f}% of the plot"
    coloured = [
        (np.abs(x - x.reshape(-1, 3)[0]).max(-1) > 60).sum() for x in (a, b)
    ]  # vs the plot's background
    assert 0.7 < coloured[1] / coloured[0] < 1.4, f"points cover {coloured} pixels (markers, picture)"
    # Isolated points show their class colour at their centre.
    px = p.to_pixels(p.positions())
    near = np.hypot(*(px[:, None, :] - px[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(near, np.inf)
    lonely = np.flatnonzero(near.min(1) > 4)[:20]  # farther than a square (3 px) from any other
    assert len(lonely) >= 3
    for i in lonely:
        x, y = px[i]
        want = np.array(PALETTE[int(p.labels[i])]) * 255
        assert np.abs(pic[int(y), int(x)].astype(int) - want).max() <= 40, f"point {i} at {x:.0f},{y:.0f}"

    # Hover: the tooltip texture holds the image; a click puts it on the pad and through the network.
    images = torch.cat([digits.x_val, digits.x_train]).numpy()
    target = int(p.ids[0])
    move(app, *p.pixel_of(target), frames=3)
    hovered = p.hovered
    assert hovered is not None and view._hover_id == hovered
    pixels = np.frombuffer(view._hover_tex.texture.read(), np.uint8).reshape(28, 28)
    np.testing.assert_array_equal(pixels, images[hovered][0])
    frame(app)
    save(app.read_pixels(), tmp_path, PREFIX, "images")
    seq = scene.sent_seq
    click(app, *p.pixel_of(hovered))
    frames_until(app, lambda: scene.sent_seq > seq and scene.ready, "the clicked image's result")
    np.testing.assert_allclose(st.network_input, images[hovered][0] / 255.0, atol=1e-6)
    assert "on the pad" in p.status


def test_mlp_filters_mode_says_there_are_no_conv_layers(app, tmp_path):
    scene, st = app.scene, app.scene.state
    p = st.embed
    click(app, *p.widget_centers[FILTERS])
    st.model = "mlp"
    frames_until(app, lambda: scene.spec is not None and scene.spec.model == "mlp" and scene.ready, "the MLP")
    frame(app)
    assert p.layers == [] and p.status == "" and not len(p.ids)  # the panel says "no conv layers"
    assert p.image_layers == ["input", "fc1", "fc2", "output"] and p.image_layer == "fc2"
    save(app.read_pixels(), tmp_path, PREFIX, "mlp")
    st.model = "lenet"
    frames_until(app, lambda: scene.spec.model == "lenet" and scene.ready, "LeNet again")


def test_render_process_with_the_embedding_window_never_imports_torch(tmp_path):
    code = f"""
import sys, time
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.gpu.context import create_headless
from convscope.scenes.explore.run import wait_until_ready
from convscope.scenes.explore.scene import ExploreScene
if __name__ == "__main__":
    ctx = create_headless()
    app = App(ExploreScene(AppConfig(data_dir={str(tmp_path)!r})), ctx=ctx, size=(640, 480))
    wait_until_ready(app, app.scene, 60)
    app.scene.state.show_embedding = True
    p = app.scene.state.embed
    deadline = time.monotonic() + 60
    while not (p.shown_view is not None and p.final and len(p.ids)) and time.monotonic() < deadline:
        app.frame()
        time.sleep(0.01)
    print("LAYOUT", len(p.ids))
    app.close()
    prefixes = ("torch.", "convscope.models.nets", "openTSNE")
    bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(prefixes))
    print("IMPORTED", bad)
    sys.exit(1 if bad or not len(p.ids) else 0)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
