"""The Embedding window's images mode for a model of any input: the image set that fits it, made at its size.

- A colour model (tests/nets/small_resnet.py at 3 x 32 x 32, normalised by its card) over a small CIFAR-10
  binary set written here: test images, then training images; labels, thumbnails (the pictures themselves
  at 32 x 32) and one layer's vectors equal to a torch forward pass of those images.
- The image set without a worker: CIFAR-10 npz (pixels and JPEG) with its training split, an ImageFolder,
  and a colour model of another H x W: each batch is what the Image panel feeds for that picture
  (centre crop + resize), thumbnails stay small however big the model's input.
- A grey 1 x 32 x 32 model (LeNet-5) on the built-in digits: each digit resized to 32 x 32.
- A colour model with no image set: one line, no job, and the filter mode still works.
- The explorer with the colour model: images mode lays out the CIFAR images, a hovered point's tooltip
  shows a colour picture (pixels of the rendered frame), a click opens the image in the Image panel.

Run: python -m pytest tests/test_embed_any_model.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from convscope.engine.proc.shm import list_segments, segment_prefix
from convscope.features.data.image_set import COLOUR, GREY, NO_COLOUR_SET, image_kind, open_image_set
from convscope.features.data.image_sources import CIFAR_CLASSES
from convscope.features.data.pictures import image_to_model_pixels, resize
from convscope.features.embedding.messages import THUMB_BYTES, thumb_shape
from convscope.features.inference import WorkerHandle
from convscope.models.loader import load_model
from PIL import Image
from safetensors.torch import save_file
from ui_driver import TIMEOUT

NETS = __import__("pathlib").Path(__file__).resolve().parent / "nets"
RESNET = f"{NETS / 'small_resnet.py'}:SmallResNet"
LENET5 = f"{NETS / 'lenet5.py'}:LeNet5"
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
CARD = {"input_shape": [3, 32, 32], "mean": list(MEAN), "std": list(STD), "classes": list(CIFAR_CLASSES)}


def cifar_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n seeded colourful 32 x 32 RGB images (smooth blobs, so resizing is not all noise) and labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    images = np.empty((n, 32, 32, 3), np.uint8)
    for i in range(n):
        a, b, c = rng.random(3) * 6
        rgb = np.stack([np.sin(a * xx + b), np.cos(b * yy + c), np.sin(c * (xx + yy) + a)], -1)
        images[i] = np.clip((rgb * 0.5 + 0.5) * 255 + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    return images, rng.integers(0, 10, n).astype(np.uint8)


def write_cifar_bin(path, images: np.ndarray, labels: np.ndarray) -> None:
    """CIFAR-10's binary records: one label byte, then the R, G and B planes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    np.concatenate([labels[:, None], planes], 1).astype(np.uint8).tofile(path)


def model_input(images: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 (N, H, W, 3) at the model's size -> the normalised batch torch is given directly."""
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """SmallResNet in the worker with seeded weights and batch-norm statistics that are not the identity."""
    torch.set_num_threads(1)
    torch.manual_seed(7)
    model = load_model(RESNET)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    handle = WorkerHandle(RESNET, {RESNET: path}, card=CARD, device="cpu")
    assert handle.start(TIMEOUT), handle.error
    yield model.eval(), handle
    handle.close()


def test_a_colour_model_embeds_cifar_images_as_torch_sees_them(resnet, tmp_path):
    model, handle = resnet
    before = set(list_segments(segment_prefix()))
    test, test_y = cifar_images(30, 1)
    train, train_y = cifar_images(20, 2)
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar_bin(folder / "test_batch.bin", test, test_y)
    write_cifar_bin(folder / "data_batch_1.bin", train[:12], train_y[:12])
    write_cifar_bin(folder / "data_batch_2.bin", train[12:], train_y[12:])

    handle.open_images(tmp_path)
    info = handle.wait_image_data()
    assert info["kind"] == COLOUR and (info["n_test"], info["n_train"]) == (30, 20)
    assert info["classes"] == CIFAR_CLASSES and info["entry"] == str(folder / "test_batch.bin")
    assert "cifar-10-batches-bin" in info["dataset"] and info["note"] == ""

    pooled = {}
    model.pool.register_forward_hook(lambda m, i, o: pooled.__setitem__("pool", o))
    everything = np.concatenate([test, train])
    with torch.no_grad():
        logits = model(model_input(everything)).numpy()
    job = handle.embed_images("pool", 45, include_train=True)  # all 30 test images, then 15 training ones
    job = handle.wait_images()
    assert (job.n, job.n_val, job.d) == (45, 30, 64)
    np.testing.assert_array_equal(job.labels, np.concatenate([test_y, train_y])[:45])
    # A 32 x 32 model sees CIFAR's pixels as they are: the thumbnails are those pixels, in colour.
    assert job.images.shape == (45, 3, 32, 32)
    np.testing.assert_array_equal(job.images, everything[:45].transpose(0, 3, 1, 2))
    with torch.no_grad():
        model(model_input(everything[:45]))
    np.testing.assert_allclose(job.vectors, pooled["pool"].flatten(1).numpy(), rtol=1e-4, atol=1e-5)

    job = handle.embed_images("fc", 1000, include_train=False)  # more than there are: the 30 test images
    job = handle.wait_images()
    assert job.n == job.n_val == 30
    np.testing.assert_allclose(job.vectors, logits[:30], rtol=1e-4, atol=1e-5)
    assert set(list_segments(segment_prefix())) - before == set(), "segments are unlinked once attached"


def test_a_colour_model_without_an_image_set_says_so_in_one_line_and_keeps_its_filters(resnet, tmp_path):
    _, handle = resnet
    handle.open_images(tmp_path)  # nothing there
    with pytest.raises(RuntimeError, match="the images did not load") as err:
        handle.wait_image_data()
    assert handle.image_error == NO_COLOUR_SET and "\n" not in str(err.value)
    with pytest.raises(RuntimeError, match="CIFAR-10 or an ImageFolder"):
        handle.embed_images("fc", 100)
    x = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    handle.infer_sync(x)
    got = handle.wait_filters(handle.embed_filters(0))
    assert got.layer == "conv" and got.vectors["coefficients"].shape == (16, 27)


def test_the_image_set_from_a_cifar_npz_with_its_training_split_at_another_size(tmp_path):
    test, test_y = cifar_images(6, 3)
    train, train_y = cifar_images(4, 4)
    np.savez(tmp_path / "cifar10.npz", x_test=test, y_test=test_y, x_train=train, y_train=train_y)
    data = open_image_set(str(tmp_path), COLOUR)
    assert (data.n_test, data.n_train, data.info["dataset"]) == (6, 4, "CIFAR-10 cifar10")
    np.testing.assert_array_equal(data.labels, np.concatenate([test_y, train_y]))
    # A non-square model: each picture as the Image panel feeds it (centre crop, resize), across both splits.
    shape, thumb = (3, 40, 24), (3, 20, 12)
    batch = data.batch(4, 9, shape, thumb)
    pics = np.concatenate([test, train])[4:9]
    want = np.stack([image_to_model_pixels(p, 40, 24).transpose(2, 0, 1) for p in pics])
    np.testing.assert_allclose(batch.inputs, want, atol=1e-6)
    assert batch.thumbs.shape == (5, *thumb) and batch.thumbs.dtype == np.uint8
    small = np.stack([resize(w.transpose(1, 2, 0), 20, 12) for w in want]).transpose(0, 3, 1, 2)
    assert np.abs(batch.thumbs.astype(float) - small * 255).max() <= 0.5 + 1e-3


def test_jpeg_npz_and_image_folder_sets_are_decoded_per_batch(tmp_path):
    import io

    test, test_y = cifar_images(5, 5)
    blobs = []
    for img in test:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
    jpeg_dir = tmp_path / "jpeg"
    jpeg_dir.mkdir()
    np.savez(
        jpeg_dir / "cifar10_jpeg.npz", test_jpeg=np.concatenate(blobs), test_offsets=offsets, y_test=test_y
    )
    data = open_image_set(str(jpeg_dir), COLOUR)
    assert (data.n_test, data.n_train) == (5, 0)
    batch = data.batch(0, 5, (3, 32, 32), (3, 32, 32))
    assert np.abs(batch.inputs * 255 - test.transpose(0, 3, 1, 2)).mean() < 6, "not the JPEGs' pictures"

    folder = tmp_path / "folder"
    for k, name in enumerate(("cat", "dog")):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((48, 64, 3), (40 + 100 * k, 20 * i, 200), np.uint8)).save(
                folder / name / f"{i}.png"
            )
    data = open_image_set(str(folder), COLOUR)
    assert data.info["classes"] == ("cat", "dog") and list(data.labels) == [0, 0, 0, 1, 1, 1]
    batch = data.batch(2, 5, (3, 16, 16), (3, 16, 16))
    want = [[40, 40, 200], [140, 0, 200], [140, 20, 200]]  # flat colours: the same after crop and resize
    np.testing.assert_allclose(batch.inputs[:, :, 8, 8] * 255, want, atol=1e-3)


def test_thumbnails_stay_small_for_big_inputs_and_kinds_follow_the_shape():
    assert thumb_shape((3, 32, 32), 20_000) == (3, 32, 32)
    assert thumb_shape((1, 28, 28), 20_000) == (1, 28, 28)  # LeNet's digits as before
    c, h, w = thumb_shape((3, 224, 224), 20_000)
    assert c == 3 and h == w <= 64 and 20_000 * c * h * w <= THUMB_BYTES
    assert thumb_shape((3, 300, 150), 10) == (3, 64, 32)
    assert image_kind((1, 64, 64)) == image_kind((784,)) == GREY and image_kind((3, 224, 224)) == COLOUR
    with pytest.raises(ValueError, match="takes \\(2, 8, 8\\)"):
        image_kind((2, 8, 8))


def test_a_grey_model_of_32_by_32_embeds_the_digits_resized(tmp_path):
    torch.manual_seed(3)
    model = load_model(LENET5).eval()
    path = tmp_path / "lenet5.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    card = {"input_shape": [1, 32, 32], "mean": [0.1], "std": [0.3]}
    with WorkerHandle(LENET5, {LENET5: path}, card=card, device="cpu") as handle:
        assert handle.ready, handle.error
        handle.open_images(tmp_path)  # no MNIST here: the built-in digits
        info = handle.wait_image_data()
        assert info["kind"] == GREY and info["dataset"] == "digits" and "built-in" in info["note"]
        job = handle.embed_images(handle.spec.layers[-1].name, 60, include_train=False)
        job = handle.wait_images()
        assert job.images.shape == (60, 1, 32, 32)
        vectors = job.vectors  # a copy: the segment goes with the handle
    from convscope.features.data.datasets import builtin_digits

    digits = builtin_digits(channels=1, size=28).x_val[:60, 0].numpy()
    big = np.stack([np.clip(resize(d.astype(np.float32) / 255.0, 32, 32), 0, 1) for d in digits])
    np.testing.assert_array_equal(job.images[:, 0], np.rint(big * 255).astype(np.uint8))
    with torch.no_grad():
        want = model((torch.from_numpy(big)[:, None] - 0.1) / 0.3).numpy()
    np.testing.assert_allclose(vectors, want, rtol=1e-4, atol=1e-5)


@pytest.mark.gl
def test_the_explorer_shows_a_colour_model_s_images_in_colour_and_a_click_feeds_one(tmp_path):
    """The whole window: images mode on SmallResNet over CIFAR images; the hovered point's tooltip is the
    picture in colour (the frame differs from one where that thumbnail is grey only in a coloured patch of
    the tooltip's size); a click opens the image in the Image panel, which feeds it to the network."""
    from convscope.engine.app import App
    from convscope.engine.config import AppConfig
    from convscope.features.embedding.panel import IMAGES
    from convscope.scenes.explore.preprocess import to_model_input
    from convscope.scenes.explore.run import wait_until_ready
    from convscope.scenes.explore.scene import ExploreScene
    from gl_helpers import gl_context
    from ui_driver import click, frame, frames_until, move, save

    torch.set_num_threads(1)
    data = tmp_path / "data"
    test, test_y = cifar_images(60, 8)
    write_cifar_bin(data / "cifar-10-batches-bin" / "test_batch.bin", test, test_y)
    before = set(list_segments(segment_prefix()))
    cfg = AppConfig(model=RESNET, card=dict(CARD), data_dir=str(data), device="cpu")
    app = App(ExploreScene(cfg), ctx=gl_context(), size=(1600, 900))
    try:
        scene = app.scene
        wait_until_ready(app, scene, TIMEOUT)
        scene.state.show_embedding = True
        p, view = scene.state.embed, scene.embedding
        frames_until(app, lambda: IMAGES in p.widget_centers, "the Embedding window")
        click(app, *p.widget_centers[IMAGES])
        frames_until(
            app, lambda: p.shown_view == (IMAGES, p.image_layer) and p.final and not p.animating, "the layout"
        )
        assert len(p.ids) == 60 and "all that CIFAR-10" in scene.state.embed_note
        assert p.class_names == CIFAR_CLASSES
        target = int(p.ids[0])
        move(app, *p.pixel_of(target), frames=3)
        hovered = p.hovered
        assert hovered is not None and view._hover_id == hovered and view._hover_tex.components == 3
        tex = np.frombuffer(view._hover_tex.texture.read(), np.uint8).reshape(32, 32, 3)
        np.testing.assert_array_equal(tex, test[hovered])
        frame(app)
        colour = app.read_pixels()
        save(colour, tmp_path, "embed_any_model", "colour_tooltip")
        job = view._job
        job.images[hovered] = job.images[hovered].mean(0, keepdims=True).astype(np.uint8)  # the same, grey
        view._hover_id = None
        for _ in range(4):  # uploaded, then the tooltip settles to its size again
            frame(app)
        grey = app.read_pixels()
        ys, xs = np.nonzero(np.abs(colour.astype(int) - grey.astype(int)).max(-1) > 24)
        assert len(ys), "the tooltip's picture did not change with its texture"
        side = p.thumb_size
        assert abs((ys.max() - ys.min() + 1) - side) <= 4 and abs((xs.max() - xs.min() + 1) - side) <= 4
        patch = colour[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(int)
        spread = patch.max(-1) - patch.min(-1)  # 0 for a grey pixel
        assert spread.mean() > 40, (
            f"the tooltip's picture is not in colour (channel spread {spread.mean():.1f})"
        )
        grey_patch = grey[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(int)
        assert (grey_patch.max(-1) - grey_patch.min(-1)).max() <= 2

        seq = scene.sent_seq
        click(app, *p.pixel_of(hovered))
        panel = scene.images.state
        frames_until(app, lambda: scene.sent_seq > seq and scene.ready, "the clicked image's result")
        assert panel.index == hovered and panel.label == CIFAR_CLASSES[test_y[hovered]]
        assert "in the Image panel" in p.status
        np.testing.assert_allclose(scene.model_input, to_model_input(test[hovered], scene.worker.input_spec))
    finally:
        app.close()
    assert set(list_segments(segment_prefix())) - before == set(), "shared-memory segments left behind"


def test_a_filters_layout_landing_in_images_mode_keeps_that_mode_s_status_line():
    """The window opens in filters mode and asks for a layout; switched to images mode before it lands, the
    late layout must not replace the images mode's line (e.g. that there is no image set)."""
    from convscope.features.embedding.handle import EmbedResult
    from convscope.features.embedding.messages import FilterData
    from convscope.features.embedding.panel import FILTERS, IMAGES, EmbedPanelState
    from convscope.scenes.embedding_view import EmbedView

    panel = EmbedPanelState()
    view = EmbedView(panel, host=None, embed=object())  # neither is reached on this path
    rows = np.random.default_rng(0).random((4, 9), np.float32)
    view._data = FilterData(
        1, 0, "conv", 0, np.arange(4), {"coefficients": rows}, (1, 3, 3), (8, 8), 0, 1.0, 0, -1, 0.1
    )
    late = EmbedResult(1, "coefficients", "conv", np.arange(4), rows[:, :2], True, 1.0, 0.01, 0.0, "trivial")
    panel.mode, panel.status = IMAGES, f"images: {NO_COLOUR_SET}"
    view._show(late)
    assert panel.status == f"images: {NO_COLOUR_SET}" and not len(panel.ids)
    panel.mode = FILTERS
    view.host = type("Host", (), {"filters_source": lambda self, d: "the drawing"})()
    view._show(late)  # in filters mode the same layout is shown
    assert len(panel.ids) == 4 and panel.status.startswith("conv: 4 filters")
