"""The Embedding window of the training scene, driven headless in this
process with a real training worker on the built-in digits (started paused: every step is the test's) and a
real t-SNE process:

- the filter embedding has one point per filter of the chosen layer, and its ids follow surgery (a filter
  added gets a new id, a removed one's id goes, the others keep theirs);
- the four vector kinds read through the worker's shared memory equal embed_vectors.filter_vectors computed
  here on the model loaded from a checkpoint the worker saved;
- a click on a point selects that filter in the 3D view (outline drawn), a click on a map in 3D selects and
  rings its point (the panel switches to that layer); hover shows the filter's picture;
- the images mode runs with progress while the UI keeps drawing frames, colours by class, shows the hovered
  image and makes a clicked held-out image the monitored one;
- nothing of ours stays in /dev/shm.

PNGs of the frames go to pytest's tmp_path (and out/screens/train_embed_*.png: look at them after a change).
Run: python -m pytest tests/test_train_embed.py -q
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from convscope.engine.app import App
from convscope.engine.proc.shm import list_segments, segment_prefix
from convscope.features.data.datasets import builtin_digits
from convscope.features.embedding.messages import KINDS
from convscope.features.embedding.panel import FILTER_RGB, IMAGES, SELECTED_RGB
from convscope.features.embedding.vectors import filter_vectors
from convscope.models.checkpoint import load_checkpoint
from convscope.scenes.train.scene import TrainScene
from convscope.scenes.train.state import TrainConfig
from gl_helpers import gl_context
from PIL import Image
from ui_driver import click, colour_count, embed_shown, frame, frames_until, move, save

pytestmark = pytest.mark.gl
W, H = 1280, 720
ROOT = Path(__file__).resolve().parents[1]
PREFIX = "train_embed"  # screenshots: out/screens/train_embed_*.png


@pytest.fixture(scope="module")
def app():
    torch.set_num_threads(1)
    ctx = gl_context()
    before = set(list_segments(segment_prefix()))
    cfg = TrainConfig(dataset="digits", start_paused=True, val_every=10_000, embed_refresh_every=0)
    app = App(TrainScene(cfg), ctx=ctx, size=(W, H))
    yield app
    app.close()
    assert set(list_segments(segment_prefix())) - before == set(), "shared-memory segments left behind"


@pytest.fixture(scope="module")
def digits():
    return builtin_digits(channels=1)  # what the worker trains on for dataset="digits" (grey: one channel)


def test_filter_points_and_ids_follow_surgery(app):
    scene, st = app.scene, app.scene.state
    p, view = st.embed, scene.embedding
    frames_until(app, lambda: embed_shown(app, "conv1", 16), "the first layout (conv1)")
    assert sorted(p.ids.tolist()) == list(range(16)) and np.isfinite(p.positions()).all()
    assert list(view._data.ids) == list(range(16))

    p.layer = "conv2"
    p.request_refresh()
    frames_until(app, lambda: embed_shown(app, "conv2", 20), "conv2's layout")

    st.request("add_filter", layer=1)
    frames_until(
        app, lambda: st.widths[1] == 21 and embed_shown(app, "conv2", 21), "a point for the new filter"
    )
    assert sorted(p.ids.tolist()) == list(range(21)), "the panel works in filter indices"
    assert list(view._data.ids) == list(range(21)), "the new filter gets the next id"

    st.request("remove_filter", layer=1, filter=3)
    frames_until(
        app,
        lambda: st.widths[1] == 20 and embed_shown(app, "conv2", 20) and 3 not in view._data.ids,
        "the removal",
    )
    kept = [0, 1, 2, *range(4, 21)]  # filter 4 is now index 3, ..., the added filter 20 is index 19
    assert list(view._data.ids) == kept, "ids follow the filters, not their indices"
    assert sorted(p.ids.tolist()) == list(range(20))
    # The t-SNE process placed the filters under their stable ids: its next warm start follows them.
    ids, points = view.embed.layout(p.kind, "conv2")
    assert sorted(ids.tolist()) == kept and points.shape == (20, 2)


def test_four_kinds_through_the_worker_equal_filter_vectors_of_its_checkpoint(app, digits, tmp_path):
    scene = app.scene
    h, view = scene.handle, scene.embedding
    frames_until(app, lambda: view._cmd is None and not view.embed.busy, "the embedding view to be idle")
    for _ in range(3):
        last = h.step()
    h.wait_reply(h.set_monitor_index(7))
    ok, text = h.wait_reply(h.save(tmp_path / "now.json"))
    assert ok, text
    assert h.replies[last][0]
    model = load_checkpoint(tmp_path / "now.json").build_model()
    for layer in range(3):
        got = h.wait_filters(h.embed_filters(layer))
        assert got.monitor_index == 7 and got.label == int(digits.y_val[7])
        ref = filter_vectors(model, layer, digits.x_val[7], got.label)
        assert got.layer == ref.layer == f"conv{layer + 1}"
        assert got.weight_shape == ref.weight_shape and got.map_shape == ref.map_shape
        assert got.loss == pytest.approx(ref.loss, abs=1e-5)
        for kind in KINDS:
            assert got.vectors[kind].shape == ref[kind].shape, kind
            np.testing.assert_allclose(got.vectors[kind], ref[kind], rtol=0, atol=1e-5, err_msg=kind)
        if layer == 1:
            assert list(got.ids) == [0, 1, 2, *range(4, 21)]
    # A layer that is not there: refused with the reason, and the worker goes on.
    with pytest.raises(RuntimeError, match="out of range"):
        h.wait_filters(h.embed_filters(5))
    assert h.alive


def test_click_links_the_panel_and_the_3d_selection_both_ways(app, tmp_path):
    scene, st = app.scene, app.scene.state
    p, view = st.embed, scene.embedding
    p.layer = "conv1"
    p.request_refresh()
    frames_until(app, lambda: embed_shown(app, "conv1", 16), "conv1's layout")

    # Hover: the tooltip shows filter 7's colour picture (conv1 filters are RGB).
    x, y = p.pixel_of(7)
    before = app.read_pixels()
    move(app, x, y, frames=3)  # a tooltip is measured in its first frame and shown from the next
    assert p.hovered == 7
    img = app.read_pixels()
    save(img, tmp_path, PREFIX, "hover")
    centre = (view._thumbs[7][2, 2] * 255).round().astype(int)
    # ImGui puts the tooltip below the pointer, or above / beside it near the window's edges: count the
    # pixels of the filter's colour around the pointer, against the same area before the hover.
    area = (slice(max(int(y) - 200, 0), int(y) + 200), slice(max(int(x) - 200, 0), int(x) + 400))

    def matching(im: np.ndarray) -> int:
        return int((np.abs(im[area].reshape(-1, 3).astype(int) - centre).max(-1) <= 3).sum())

    assert matching(img) > matching(before) + 50, "no picture of filter 7 in the tooltip"

    # Panel -> 3D: a click on the point selects the filter; its map gets the outline.
    click(app, x, y)
    assert st.selected == (0, 7) and p.selected_filter == 7
    frame(app)
    img = app.read_pixels()
    cx, cy = scene.camera.project(scene.geometry.centres["conv1"][7][None], W, H)[0]
    yellow = (img[..., 0] > 200) & (img[..., 1] > 200) & (img[..., 2] < 90)
    assert yellow[int(cy) - 30 : int(cy) + 30, int(cx) - 40 : int(cx) + 40].sum() > 20, "no outline in 3D"

    # 3D -> panel: a click on conv2's map 10 shows conv2's filters with filter 10 ringed.
    cx, cy = scene.camera.project(scene.geometry.centres["conv2"][10][None], W, H)[0]
    click(app, cx, cy)
    assert st.selected == (1, 10)
    frames_until(app, lambda: embed_shown(app, "conv2", 20), "conv2's layout after the 3D pick")
    assert p.layer == "conv2" and p.selected_filter == 10 and not p.take_selection()
    move(app, W / 2, 40, frames=2)  # pointer away: no hover ring, no tooltip
    img = app.read_pixels()
    save(img, tmp_path, PREFIX, "selected")
    rx, ry = p.pixel_of(10)
    assert colour_count(img, rx, ry, SELECTED_RGB) > 4, "the point selected in 3D has no ring"
    others = [i for i in range(20) if i != 10 and np.hypot(*np.subtract(p.pixel_of(i), (rx, ry))) > 20]
    assert others and all(colour_count(img, *p.pixel_of(i), SELECTED_RGB) == 0 for i in others[:5])
    assert all(colour_count(img, *p.pixel_of(i), FILTER_RGB, radius=3) > 0 for i in others)


def test_images_mode_progress_hover_and_monitor(app, digits, tmp_path):
    scene, st = app.scene, app.scene.state
    p, view = st.embed, scene.embedding
    click(app, *p.widget_centers[IMAGES])
    assert p.mode == IMAGES
    progress: list[tuple[str, float]] = []
    busy_frames = 0

    def done() -> bool:
        nonlocal busy_frames
        job = view._job
        if job is not None and job.active:
            busy_frames += 1
            if p.progress is not None:
                progress.append((p.phase, p.progress))
        return p.shown_view is not None and p.shown_view[0] == IMAGES and p.final and len(p.ids) > 0

    frames_until(app, done, "the images layout", rest=0.03)  # ~1,800-point t-SNE in the other process
    n_all = len(digits.x_val) + len(digits.x_train)  # 1797: the digits have fewer than 20,000 images
    assert len(p.ids) == n_all and view._job.n == n_all and "all that digits has" in st.embed_note
    assert busy_frames >= 2, "the UI drew frames while the worker computed the activations"
    fractions = [f for phase, f in progress if phase in ("starting", "activations")]
    assert fractions and fractions == sorted(fractions), f"progress went back: {progress}"
    labels = torch.cat([digits.y_val, digits.y_train]).numpy()
    np.testing.assert_array_equal(p.labels, labels[p.ids])
    assert list_segments(segment_prefix()) == [], "segments must be unlinked once attached"

    # Hover a held-out image: the one texture is filled with that image.
    first = int(np.flatnonzero(p.ids < len(digits.x_val))[0])
    frames_until(app, lambda: not p.animating, "the animation")
    move(app, *p.pixel_of(int(p.ids[first])), frames=3)
    hovered = p.hovered
    assert hovered is not None and view._hover_id == hovered
    comps = view._hover_tex.components  # 1: the digits are grey
    pixels = np.frombuffer(view._hover_tex.texture.read(), np.uint8).reshape(32, 32, comps)
    images = torch.cat([digits.x_val, digits.x_train]).numpy()
    np.testing.assert_array_equal(pixels, images[hovered].transpose(1, 2, 0))
    frame(app)  # the tooltip grows to the picture's size one frame after the picture arrives
    img = app.read_pixels()
    save(img, tmp_path, PREFIX, "images")
    x, y = p.pixel_of(hovered)
    below = img[int(y) + 10 : int(y) + 170, int(x) : int(x) + 200].reshape(-1, 3).astype(int)
    assert (below.min(-1) >= 250).sum() > 50, "no digit (white strokes) in the hover tooltip"

    # A click on a held-out image makes it the monitored one.
    if hovered < len(digits.x_val):
        click(app, *p.pixel_of(hovered))
        frames_until(app, lambda: st.monitor_index == hovered, "the clicked image to be monitored")


@pytest.mark.slow
def test_command_line_screenshot_shows_the_embedding_window(tmp_path):
    out = tmp_path / "train.png"
    cmd = [
        sys.executable,
        "-m",
        "convscope.scenes.cli",
        "--scene",
        "train",
        "--dataset",
        "digits",
        "--headless",
    ]
    cmd += ["--frames", "3", "--screenshot", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (H, W, 3)
    # The Embedding window sits at the bottom, left of the right column (at 1280x720 in the band under the
    # network, beside the Training panel); its plot has the filter markers.
    corner = img[H // 2 :, : 3 * W // 5].reshape(-1, 3).astype(int)
    markers = (np.abs(corner - np.array(FILTER_RGB) * 255).max(-1) <= 30).sum()
    assert markers > 100, f"no filter layout in the Embedding window ({markers} marker pixels)"
