"""The image panel for colour models: its picture sources on small files written here (an ImageFolder,
CIFAR-10 binary batches and npz files), errors that keep the previous picture, what it feeds the model,
the widget driven by scripted clicks and typing, and one frame of it (out/screens/image_panel.png)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import glfw
import numpy as np
import pytest
from convscope.engine.ui.backend import UiBackend
from convscope.engine.ui.input import KEY_PRESS, KEY_RELEASE, MOUSE_LEFT, InputCollector
from convscope.engine.ui.layout import PanelLayout
from convscope.features.data.image_sources import (
    CIFAR_CLASSES,
    SourceError,
    find_datasets,
    open_path,
    read_cifar_binary,
    read_cifar_npz,
)
from convscope.scenes.explore.image_panel import ImagePanel, ImagePanelState, takes_images, thumbnail
from convscope.scenes.explore.preprocess import to_model_input
from convscope.scenes.explore.state import ExploreState
from imgui_bundle import imgui
from PIL import Image

SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"


class Spec(NamedTuple):  # the fields of features/inference/messages.py's InputSpec
    shape: tuple
    mean: tuple
    std: tuple
    classes: tuple = ()


CIFAR = Spec((3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR_CLASSES)


def solid(rgb, size=(20, 16)) -> np.ndarray:
    return np.tile(np.uint8(rgb), (size[1], size[0], 1))


def image_folder(root: Path) -> dict[str, np.ndarray]:
    """root/cat/{b,a}.png, root/dog/{c.png, deep/d.png}, a stray text file; returns name -> pixels."""
    pics = {
        "cat/a.png": solid((200, 10, 10)),
        "cat/b.png": solid((10, 200, 10)),
        "dog/c.png": solid((10, 10, 200)),
        "dog/deep/d.png": solid((200, 200, 10)),
    }
    for name, px in pics.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px).save(root / name)
    (root / "dog" / "notes.txt").write_text("not a picture")
    return pics


def cifar_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_cifar_binary(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """CIFAR-10's binary format, written out here: a label byte, then the R, G and B planes, row-major."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "test_batch.bin", "wb") as f:
        for img, y in zip(images, labels, strict=True):
            f.write(bytes([int(y)]))
            for c in range(3):
                f.write(img[:, :, c].tobytes())
    return folder / "test_batch.bin"


# -- sources ---------------------------------------------------------------------------------------------


def test_image_folder_follows_torchvision_order_and_labels(tmp_path):
    pics = image_folder(tmp_path / "test")
    src = open_path(tmp_path / "test")
    assert len(src) == 4
    assert [src.name(i) for i in range(4)] == ["cat/a.png", "cat/b.png", "dog/c.png", "dog/deep/d.png"]
    assert [src.label(i) for i in range(4)] == ["cat", "cat", "dog", "dog"]
    for i in range(4):
        np.testing.assert_allclose(src.pixels(i), pics[src.name(i)] / 255.0, atol=1e-6)
    tv = pytest.importorskip("torchvision.datasets")
    ref = tv.ImageFolder(str(tmp_path / "test"))
    assert [p for p, _ in ref.samples] == src.paths
    assert [ref.classes[y] for _, y in ref.samples] == [src.label(i) for i in range(4)]


def test_a_symlink_loop_is_walked_once(tmp_path):
    image_folder(tmp_path / "pets")
    (tmp_path / "pets" / "cat" / "again").symlink_to(tmp_path / "pets", target_is_directory=True)
    src = open_path(tmp_path / "pets")  # ends, each real folder walked once per class folder
    assert [src.name(i) for i in range(len(src))] == [
        "cat/a.png",
        "cat/b.png",
        "cat/again/dog/c.png",
        "cat/again/dog/deep/d.png",
        "dog/c.png",
        "dog/deep/d.png",
    ]


def test_cifar_binary_batch_is_read_plane_by_plane(tmp_path):
    images, labels = cifar_images(3)
    path = write_cifar_binary(tmp_path / "cifar-10-batches-bin", images, labels)
    src = read_cifar_binary(path)
    assert len(src) == 3
    for i in range(3):
        np.testing.assert_array_equal(src.pixels(i), images[i])
        assert src.label(i) == CIFAR_CLASSES[labels[i]]
    (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)))
    assert read_cifar_binary(path).label(0) == f"c{labels[0]}"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(SourceError, match="not a whole number of 3073-byte records"):
        read_cifar_binary(path)


def test_cifar_npz_exact_and_jpeg(tmp_path):
    images, labels = cifar_images(4, seed=1)
    names = np.array([f"k{i}" for i in range(10)])
    np.savez_compressed(tmp_path / "cifar_exact.npz", x_test=images, y_test=labels, label_names=names)
    src = read_cifar_npz(tmp_path / "cifar_exact.npz")
    np.testing.assert_array_equal(src.pixels(2), images[2])
    assert src.label(2) == f"k{labels[2]}"
    jpegs = []
    smooth = np.stack([solid((60 * i, 200 - 40 * i, 90), size=(32, 32)) for i in range(4)])
    for img in smooth:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=95)
        jpegs.append(np.frombuffer(buf.getvalue(), np.uint8))
    offsets = np.cumsum([0] + [len(j) for j in jpegs]).astype(np.int64)
    buffer = np.concatenate(jpegs)
    np.savez(tmp_path / "cifar_jpeg.npz", test_jpeg=buffer, test_offsets=offsets, y_test=labels)
    src = read_cifar_npz(tmp_path / "cifar_jpeg.npz")
    assert len(src) == 4 and src.label(3) == CIFAR_CLASSES[labels[3]]
    for i in range(4):  # each picture is its own JPEG, in order (lossy: close, not exact)
        got = src.pixels(i).astype(np.int16)
        assert got.shape == (32, 32, 3) and np.abs(got - smooth[i]).max() <= 4, i
    np.savez(tmp_path / "cifar_train_only.npz", x_train=images, y_train=labels)
    with pytest.raises(SourceError, match="holds no test split"):
        read_cifar_npz(tmp_path / "cifar_train_only.npz")


def test_find_datasets_under_a_data_dir(tmp_path):
    images, labels = cifar_images(2)
    write_cifar_binary(tmp_path / "cifar-10-batches-bin", images, labels)
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "cifar10_subset.npz", x_test=images, y_test=labels)
    np.savez(tmp_path / "cifar10" / "other.npz", x_test=images, y_test=labels)  # not named cifar
    image_folder(tmp_path / "pets" / "val")
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)  # no pictures: not an ImageFolder
    found, notes = find_datasets(tmp_path)
    assert [(d.kind, d.path.relative_to(tmp_path).as_posix()) for d in found] == [
        ("cifar-bin", "cifar-10-batches-bin/test_batch.bin"),
        ("cifar-npz", "cifar10/cifar10_subset.npz"),
        ("imagefolder", "pets/val"),
    ]
    assert notes == [] and [len(d.open()) for d in found] == [2, 2, 4]
    only_pickles = tmp_path / "other"
    (only_pickles / "cifar-10-batches-py").mkdir(parents=True)
    found, notes = find_datasets(only_pickles)
    assert found == [] and len(notes) == 1 and "never unpickled" in notes[0]


def test_open_path_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    cases = [
        ("", "type the path"),
        (str(tmp_path / "nope"), "no such file or folder"),
        (str(tmp_path / "empty"), "no images in folder"),
        (str(tmp_path / "texts"), "no images in folder"),
    ]
    for path, words in cases:
        with pytest.raises(SourceError) as info:
            open_path(path)
        assert words in str(info.value) and "\n" not in str(info.value)


# -- the panel's state -------------------------------------------------------------------------------------


def test_failures_keep_the_previous_picture(tmp_path):
    pics = image_folder(tmp_path / "pets")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(solid((1, 2, 3))).save(flat / "1.png")
    (flat / "2.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(solid((4, 5, 6))).save(flat / "3.png")
    (tmp_path / "empty").mkdir()

    s = ImagePanelState()
    assert s.open_path(str(tmp_path / "pets")) and s.label == "cat" and s.index == 0 and s.error is None
    np.testing.assert_allclose(s.pixels, pics["cat/a.png"] / 255.0, atol=1e-6)
    shown, source, version = s.pixels, s.source, s.version
    assert not s.open_path(str(tmp_path / "empty"))
    assert "no images in folder" in s.error and s.pixels is shown and s.source is source
    assert s.version == version
    assert s.step(-1) and s.name == "dog/deep/d.png" and s.label == "dog" and s.error is None  # wraps around

    assert s.open_path(str(flat)) and s.name == "1.png" and s.label == ""
    shown = s.pixels
    assert not s.step(1)
    assert s.index == 1 and s.pixels is shown and s.name == "1.png"
    assert "2.png" in s.error and "still showing 1.png" in s.error
    assert s.step(1) and s.name == "3.png" and s.error is None  # Next gets past the broken one


def test_take_input_feeds_each_picture_once(tmp_path):
    image_folder(tmp_path / "pets")
    panel = ImagePanel()
    assert panel.take_input(CIFAR) is None  # nothing open yet
    panel.state.open_path(str(tmp_path / "pets"))
    x = panel.take_input(CIFAR, generation=1)
    np.testing.assert_allclose(x, to_model_input(panel.state.pixels, CIFAR), atol=1e-6)
    assert x.shape == (3, 32, 32) and panel.take_input(CIFAR, generation=1) is None
    np.testing.assert_allclose(panel.seen[0, 0], panel.state.pixels[0, 0], atol=1e-5)  # de-normalised
    panel.state.step(1)
    assert panel.take_input(CIFAR, generation=1) is not None
    assert panel.take_input(CIFAR, generation=2) is not None  # a reloaded model sees the picture again
    big = Spec((3, 64, 48), (0.5,), (0.5,))
    assert panel.take_input(big, generation=2).shape == (3, 64, 48) and panel.seen.shape == (64, 48, 3)
    assert (
        takes_images(CIFAR) and not takes_images(Spec((1, 28, 28), (0.0,), (1.0,))) and not takes_images(None)
    )


def test_the_first_test_set_opens_by_itself(tmp_path):
    images, labels = cifar_images(3)
    write_cifar_binary(tmp_path / "cifar-10-batches-bin", images, labels)
    panel = ImagePanel(str(tmp_path))
    x = panel.take_input(CIFAR)
    assert panel.state.name == "#0" and panel.state.label == CIFAR_CLASSES[labels[0]]
    np.testing.assert_allclose(x, to_model_input(images[0], CIFAR), atol=1e-6)


def test_thumbnail_fits_the_whole_picture():
    t = thumbnail(solid((255, 0, 0), size=(40, 20)), side=80)
    assert t.shape == (80, 80, 3)
    assert (t[40, 40] == (255, 0, 0)).all() and (t[5, 40] == 0).all()  # letterboxed above and below
    assert (t[20:60, :, 0] == 255).all()


# -- the widget ----------------------------------------------------------------------------------------------


class Harness:
    """The panel in a 1280 x 720 frame of ImGui, driven by scripted pointer and key events."""

    def __init__(self, panel: ImagePanel, size=(1280, 720)) -> None:
        self.panel, self.size = panel, size
        self.ui = UiBackend()
        self.input = InputCollector(size, size)
        self.layout = PanelLayout()
        self.state = ExploreState()
        self.state.classes = CIFAR_CLASSES
        self.state.probabilities = np.float32([0.05, 0.02, 0.03, 0.6, 0.05, 0.1, 0.05, 0.04, 0.03, 0.03])

    def frame(self, *events) -> None:
        for kind, *args in events:
            getattr(self.input, f"on_{kind}")(*args)
        self.ui.new_frame(self.size, (1, 1), 1 / 60, self.input.snapshot())
        self.layout.begin_frame(self.size, 1.0)
        self.panel.gui(self.state, 1.0, self.layout)
        self.ui.render()

    def click(self, name: str) -> None:
        self.frame(("cursor_pos", *self.panel.state.button_centers[name]))
        self.frame(("mouse_button", MOUSE_LEFT, True))
        self.frame(("mouse_button", MOUSE_LEFT, False))
        self.frame()

    def type(self, text: str) -> None:
        for ch in text:
            self.frame(("char", ord(ch)))

    def key(self, key: int) -> None:
        self.frame(("key", key, KEY_PRESS))
        self.frame(("key", key, KEY_RELEASE))

    def close(self) -> None:
        self.ui.destroy()


def test_widget_opens_a_typed_path_and_steps(tmp_path):
    image_folder(tmp_path / "pets")
    h = Harness(ImagePanel())
    try:
        h.frame()
        h.frame()
        h.click("path")
        h.type(str(tmp_path / "pets"))
        h.key(glfw.KEY_ENTER)
        s = h.panel.state
        assert s.path_text == str(tmp_path / "pets") and s.name == "cat/a.png", (s.path_text, s.error)
        h.click("next")
        assert s.name == "cat/b.png"
        h.click("next")
        h.click("prev")
        assert s.name == "cat/b.png" and s.index == 1
        h.click("path")
        h.type("/missing")
        h.click("open")
        assert "no such file or folder" in s.error and s.name == "cat/b.png"
    finally:
        h.close()


def test_guess_bars_fit_the_longest_class_name():
    """ "automobile   10.7 %" was cut to "mobile" on a bar of fixed width: the bars fit the longest class
    name (within bounds), whatever picture is shown."""
    from convscope.scenes.explore.image_panel import GUESS_MAX_WIDTH, GUESS_WIDTH, guess_width

    h = Harness(ImagePanel())
    try:
        h.frame()
        need = imgui.calc_text_size("automobile   100.0 %").x + 2 * imgui.get_style().frame_padding.x
        assert guess_width(CIFAR_CLASSES, 1.0) >= need
        assert guess_width(CIFAR_CLASSES, 2.0) > guess_width(CIFAR_CLASSES, 1.0)
        assert guess_width(tuple("0123456789"), 1.0) == GUESS_WIDTH
        assert guess_width(("x" * 300,), 1.0) == GUESS_MAX_WIDTH
    finally:
        h.close()


@pytest.mark.gl
def test_widget_frame_shows_the_picture_and_its_label(tmp_path):
    from convscope.engine.gpu.frame import OffscreenTarget
    from convscope.engine.gpu.imgui_renderer import ImGuiRenderer
    from gl_helpers import gl_context

    # A picture a person can check at a glance: red left half, blue right half, a white bar on top.
    px = np.zeros((48, 64, 3), np.uint8)
    px[:, :32] = (220, 30, 30)
    px[:, 32:] = (30, 30, 220)
    px[:6] = 255
    (tmp_path / "set" / "flag").mkdir(parents=True)
    Image.fromarray(px).save(tmp_path / "set" / "flag" / "one.png")
    Image.fromarray(px[:, ::-1].copy()).save(tmp_path / "set" / "flag" / "two.png")

    ctx = gl_context()
    panel = ImagePanel(str(tmp_path))
    h = Harness(panel)
    renderer = ImGuiRenderer(ctx)
    target = OffscreenTarget(ctx, *h.size)  # releases cleanly even while bound (a GL error otherwise)
    try:
        for _ in range(4):
            panel.take_input(CIFAR)
            panel.upload(ctx)
            h.frame()
        assert panel.state.name == "flag/one.png" and panel.state.label == "flag"
        target.use()
        target.clear((0.1, 0.1, 0.1, 1.0))
        renderer.render(imgui.get_draw_data())
        shot = target.read()
        SCREENS.mkdir(parents=True, exist_ok=True)
        Image.fromarray(shot).save(SCREENS / "image_panel.png")
        rect = h.layout.rects["Image"][1]
        assert rect.bottom < h.size[1] * 0.55, f"the panel leaves the Network panel room at 1280x720: {rect}"
        # The thumbnail: the first image item in the window. Find the red and blue halves on its row.
        red = np.all(np.abs(shot.astype(int) - (220, 30, 30)) < 12, axis=2)
        blue = np.all(np.abs(shot.astype(int) - (30, 30, 220)) < 12, axis=2)
        ys, xs = np.nonzero(red)
        assert red.sum() > 2000 and blue.sum() > 2000, "the picture is not on screen"
        assert xs.mean() < np.nonzero(blue)[1].mean(), "red must be left of blue"
        white_rows = np.nonzero(np.all(shot > 245, axis=2).sum(axis=1) > 60)[0]
        assert len(white_rows) and white_rows.min() < ys.min(), "the white bar sits on top"
        # An error: one red line at the bottom of the panel, the picture still there, the panel as tall.
        assert not panel.state.open_path(str(tmp_path / "no such folder"))
        h.frame()
        h.frame()
        target.clear((0.1, 0.1, 0.1, 1.0))
        renderer.render(imgui.get_draw_data())
        shot = target.read()
        Image.fromarray(shot).save(SCREENS / "image_panel_error.png")
        after = h.layout.rects["Image"][1]
        assert after.h == rect.h, "an error line must not change the panel's height"
        px = shot.astype(int)
        reddish = (px[:, :, 0] > 200) & (px[:, :, 1] < 150) & (px[:, :, 2] < 140)
        rows = np.nonzero(reddish[:, : int(after.right)].sum(axis=1) > 3)[0]
        text_rows = rows[rows > ys.max() + 30]  # below the picture and the step row
        assert len(text_rows) and text_rows.max() - text_rows.min() < 20, "one red line of text"
        assert np.all(np.abs(shot.astype(int) - (220, 30, 30)) < 12, axis=2).sum() > 2000
    finally:
        target.release()
        panel.release()
        renderer.release()
        h.close()


# -- in the explore scene ------------------------------------------------------------------------------------


@pytest.mark.gl
def test_scene_feeds_the_picture_to_a_colour_model(tmp_path, monkeypatch):
    """The scene with a worker that says its model takes 3 x 32 x 32: the Image panel replaces the pad and
    the picked picture, normalised, is what is submitted.  (The shipped LeNet stands in for a colour
    model: what reaches it is greyed to 28 x 28 here only so that it keeps answering.)"""
    import time

    from convscope.engine.app import App
    from convscope.engine.config import AppConfig
    from convscope.scenes.explore.preprocess import resize
    from convscope.scenes.explore.scene import ExploreScene
    from gl_helpers import gl_context

    images, labels = cifar_images(5, seed=3)
    write_cifar_binary(tmp_path / "cifar-10-batches-bin", images, labels)
    scene = ExploreScene(AppConfig(data_dir=str(tmp_path)), None, 1.0)
    submitted: list[np.ndarray] = []
    real_submit = scene.worker.submit

    def submit(x: np.ndarray) -> int:
        submitted.append(x)
        return real_submit(resize(np.clip(x.mean(axis=0) * 0.25 + 0.5, 0.0, 1.0), 28, 28))

    scene.worker.submit = submit
    # The scene is told the model takes 3 x 32 x 32 (the handle itself keeps LeNet's input, which the
    # greyed pictures above are converted to).
    monkeypatch.setattr("convscope.scenes.explore.scene.model_input_spec", lambda worker: CIFAR)
    app = App(scene, ctx=gl_context(), size=(1280, 720))
    try:
        deadline = time.monotonic() + 90
        while not (scene.ready and submitted) and time.monotonic() < deadline:
            app.frame()
            time.sleep(1 / 60)
        assert scene.ready and submitted, scene.worker.error
        np.testing.assert_allclose(submitted[-1], to_model_input(images[0], CIFAR), atol=1e-6)
        scene.images.state.step(1)
        for _ in range(8):
            app.frame()
        assert scene.images.state.label == CIFAR_CLASSES[labels[1]]
        np.testing.assert_allclose(scene.model_input, to_model_input(images[1], CIFAR), atol=1e-6)
        rects = scene.panels.rects
        assert "Image" in rects and "Draw a digit" not in rects
        assert rects["Image"][1].bottom <= rects["Network"][1].y, "the Network panel sits under the picture"
    finally:
        app.close()
