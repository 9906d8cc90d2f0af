"""The tensor handed to any model: pad ink or RGB pictures resized to (C, H, W) and normalised per channel,
checked against hand-computed values and Pillow's own resamplers; `--input` files, .npy tensors, bad input."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from convscope.scenes.explore.preprocess import (
    InputImageError,
    centre_crop,
    check_input_file,
    denormalize,
    file_to_model_input,
    image_file_to_input,
    normalize,
    pad_to_input,
    resize,
    resize_matrix,
    to_model_input,
)
from PIL import Image

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Spec(NamedTuple):  # the fields of features/inference/messages.py's InputSpec
    shape: tuple
    mean: tuple
    std: tuple
    classes: tuple = ()


CIFAR = Spec((3, 32, 32), CIFAR_MEAN, CIFAR_STD)
MNIST = Spec((1, 28, 28), (0.1307,), (0.3081,))


def expected_cifar(rgb_uint8: np.ndarray) -> np.ndarray:
    """Written out once more by hand: (x / 255 - mean) / std, channels first."""
    x = rgb_uint8.astype(np.float64) / 255.0
    out = np.empty((3, *rgb_uint8.shape[:2]))
    for c in range(3):
        out[c] = (x[:, :, c] - CIFAR_MEAN[c]) / CIFAR_STD[c]
    return out


def test_a_model_sized_picture_is_only_scaled_and_normalised():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)  # pure red in the top-left corner: channel order and orientation
    x = to_model_input(rgb, CIFAR)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x, expected_cifar(rgb), atol=1e-5)
    assert x[0, 0, 0] == pytest.approx((1.0 - CIFAR_MEAN[0]) / CIFAR_STD[0], abs=1e-5)
    assert x[1, 0, 0] == pytest.approx(-CIFAR_MEAN[1] / CIFAR_STD[1], abs=1e-5)
    np.testing.assert_allclose(
        denormalize(x, CIFAR_MEAN, CIFAR_STD), rgb.transpose(2, 0, 1) / 255.0, atol=1e-6
    )


def test_a_bigger_picture_shrinks_by_exact_area_averages():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (32, 32, 3)).astype(np.float64)
    big = np.kron(small, np.ones((3, 3, 1))).astype(np.uint8)  # 96 x 96, each pixel a 3 x 3 block
    x = to_model_input(big, CIFAR)
    np.testing.assert_allclose(x, expected_cifar(small.astype(np.uint8)), atol=1e-5)


@pytest.mark.parametrize("size", [(5, 7, 16, 11), (64, 48, 12, 16)])
def test_resize_matches_pillow_bilinear_up_and_box_down(size):
    h, w, out_w, out_h = size
    img = np.random.default_rng(h).random((h, w)).astype(np.float32)
    how = Image.Resampling.BILINEAR if out_h > h else Image.Resampling.BOX
    ref = np.asarray(Image.fromarray(img, "F").resize((out_w, out_h), how))
    got = resize(img, out_h, out_w)
    assert got.shape == (out_h, out_w)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_shrinking_by_an_odd_ratio_is_the_exact_area_average():
    img = np.random.default_rng(6).random((97, 61)).astype(np.float64)
    # Reference: every pixel split into 32 x 20 sub-pixels, then whole blocks of 97 x 61 sub-pixels averaged.
    fine = np.kron(img, np.ones((32, 20)))
    ref = fine.reshape(32, 97, 20, 61).mean(axis=(1, 3))
    got = resize(img.astype(np.float32), 32, 20)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert got.mean() == pytest.approx(img.mean(), abs=1e-5)


@pytest.mark.parametrize("size", [(120, 90, 28, 40), (32, 32, 224, 224), (10, 40, 20, 10), (1, 5, 3, 1)])
def test_resize_of_colour_pictures_is_the_matrix_form_per_channel(size):
    h, w, out_h, out_w = size
    img = np.random.default_rng(w).random((h, w, 3))
    rows, cols = resize_matrix(h, out_h).astype(np.float64), resize_matrix(w, out_w).astype(np.float64)
    ref = np.stack([rows @ img[:, :, c] @ cols.T for c in range(3)], axis=-1)
    got = resize(img, out_h, out_w)
    assert got.shape == (out_h, out_w, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_a_small_picture_is_enlarged_smoothly_for_a_big_model():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, 4:] = 255  # a hard edge
    x = to_model_input(rgb, Spec((3, 64, 64), (0.0,), (1.0,)))
    row = x[0, 10]
    assert row[0] == 0.0 and row[-1] == pytest.approx(1.0)
    assert np.all(np.diff(row) >= -1e-6), "bilinear enlarging is monotone across an edge"
    assert 0.0 < row[32] < 1.0 and len(np.unique(np.round(row, 4))) > 4  # a ramp, not one step


def test_a_wide_picture_is_centre_cropped_not_squashed():
    rng = np.random.default_rng(2)
    wide = rng.integers(0, 256, (32, 50, 3), dtype=np.uint8)
    x = to_model_input(wide, CIFAR)
    np.testing.assert_allclose(x, expected_cifar(wide[:, 9:41]), atol=1e-5)
    assert centre_crop(np.zeros((50, 32)), 32, 32).shape == (32, 32)
    assert centre_crop(np.zeros((10, 40)), 20, 40).shape == (10, 20)  # a 2:1 model keeps 2:1


def test_pad_ink_is_area_resized_then_normalised():
    values = np.random.default_rng(3).random((28, 28)).astype(np.float32)
    canvas = np.kron(values, np.ones((10, 10), np.float32))  # the 280 px pad
    x = to_model_input(canvas, MNIST)
    assert x.shape == (1, 28, 28)
    np.testing.assert_allclose(x[0], (values - 0.1307) / 0.3081, atol=1e-5)
    np.testing.assert_allclose(
        to_model_input(canvas, Spec((1, 28, 28), (0.0,), (1.0,)))[0], pad_to_input(canvas), atol=1e-6
    )
    x32 = to_model_input(canvas, Spec((1, 14, 14), (0.0,), (1.0,)))
    np.testing.assert_allclose(x32[0], values.reshape(14, 2, 14, 2).mean(axis=(1, 3)), atol=1e-5)
    grey3 = to_model_input(canvas, Spec((3, 28, 28), (0.5,), (0.5,)))  # ink repeated for a colour model
    np.testing.assert_allclose(grey3, np.repeat((values[None] - 0.5) / 0.5, 3, axis=0), atol=1e-5)


def test_a_flat_input_of_a_square_count_gets_the_picture_row_by_row():
    values = np.random.default_rng(7).random((28, 28)).astype(np.float32)
    canvas = np.kron(values, np.ones((10, 10), np.float32))
    x = to_model_input(canvas, Spec((784,), (0.5,), (0.25,)))
    assert x.shape == (784,)
    np.testing.assert_allclose(x, ((values - 0.5) / 0.25).reshape(-1), atol=1e-5)
    with pytest.raises(ValueError, match="a flat one of n \\* n values; this model takes \\(10,\\)"):
        to_model_input(canvas, Spec((10,), (0.0,), (1.0,)))


def test_normalize_per_channel_and_its_checks():
    x = np.ones((3, 2, 2), np.float32)
    np.testing.assert_allclose(normalize(x, (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))[:, 0, 0], [1.0, 3.0, 0.5])
    np.testing.assert_allclose(normalize(x, (0.5,), (0.25,)), np.full((3, 2, 2), 2.0))
    with pytest.raises(ValueError, match="mean has 2 values for 3 channels"):
        normalize(x, (0.5, 0.5), (1.0,))
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(x, (0.5,), (0.0,))


def test_input_files_for_colour_and_grey_models(tmp_path):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "pic.png")
    np.testing.assert_allclose(
        file_to_model_input(tmp_path / "pic.png", CIFAR), expected_cifar(rgb), atol=1e-5
    )
    np.testing.assert_allclose(
        to_model_input(str(tmp_path / "pic.png"), CIFAR), expected_cifar(rgb), atol=1e-5
    )
    # A grey model takes a drawing through the ink pipeline (polarity found, 1 on 0), then normalises.
    ink = np.zeros((140, 140), np.uint8)
    ink[30:110, 60:80] = 255
    Image.fromarray(255 - ink).save(tmp_path / "one.png")  # dark ink on white paper
    x = file_to_model_input(tmp_path / "one.png", MNIST)
    np.testing.assert_allclose(x[0] * 0.3081 + 0.1307, image_file_to_input(tmp_path / "one.png"), atol=1e-5)
    assert x.shape == (1, 28, 28) and x[0, 14, 14] > 2.0 and x[0, 2, 2] == pytest.approx(-0.1307 / 0.3081)


def test_transparency_is_composited_over_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :16] = (255, 0, 0, 255)  # left half opaque red, right half fully transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    x = denormalize(file_to_model_input(tmp_path / "cut.png", CIFAR), CIFAR_MEAN, CIFAR_STD)
    np.testing.assert_allclose(x[:, 5, 5], [1.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(x[:, 5, 25], [1.0, 1.0, 1.0], atol=1e-5)


def test_sixteen_bit_grey_keeps_its_precision(tmp_path):
    grey = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 64).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "deep.png")  # uint16: mode I;16
    x = file_to_model_input(tmp_path / "deep.png", Spec((3, 32, 32), (0.0,), (1.0,)))
    np.testing.assert_allclose(x[1], grey / 65535.0, atol=1e-6)


def test_npy_inputs_are_taken_as_the_tensor(tmp_path):
    t = np.random.default_rng(5).standard_normal((3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", t)
    np.save(tmp_path / "batch.npy", t[None].astype(np.float64))
    np.testing.assert_array_equal(file_to_model_input(tmp_path / "x.npy", CIFAR), t)
    np.testing.assert_allclose(file_to_model_input(tmp_path / "batch.npy", CIFAR), t)
    np.save(tmp_path / "odd.npy", np.zeros((4, 7, 7), np.float32))  # any shape a model may take
    assert file_to_model_input(tmp_path / "odd.npy", Spec((4, 7, 7), (0.0,), (1.0,))).shape == (4, 7, 7)
    with pytest.raises(
        InputImageError, match=r"holds an array of shape \(4, 7, 7\); the model takes \(3, 32, 32\)"
    ):
        file_to_model_input(tmp_path / "odd.npy", CIFAR)


def test_bad_input_files_are_one_line(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    cases = [
        (tmp_path / "junk.png", CIFAR, "not an image format"),
        (tmp_path / "missing.png", CIFAR, "no such file"),
        (tmp_path, CIFAR, "it is a folder"),
        (tmp_path / "junk.npy", CIFAR, "not a readable .npy"),
        (tmp_path / "ok.png", Spec((2, 8, 8), (0.0,), (1.0,)), "this model takes 2"),
    ]
    for path, spec, words in cases:
        with pytest.raises(InputImageError) as info:
            file_to_model_input(path, spec)
        text = str(info.value)
        assert words in text and "\n" not in text and str(path.name) in text, text
    check_input_file(tmp_path / "ok.png")  # readable: whether it fits is known once the model is
    for path, _, words in cases[:4]:
        with pytest.raises(InputImageError, match=words):
            check_input_file(path)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 64, 64), (3, 20, 20), (1, 32, 24)])
def test_the_worker_handle_converts_a_drawing_as_the_scene_does(shape):
    """A caller that hands WorkerHandle.submit a 2-D drawing (tools, the kiosk) gets the same tensor as the
    explorer's own conversion, enlarging and shrinking alike."""
    from convscope.features.inference.messages import InputSpec
    from convscope.features.inference.model_input import as_model_input

    rng = np.random.default_rng(5)
    ink = np.clip(rng.random((28, 28), np.float32) * 1.4 - 0.2, 0.0, 1.0)
    spec = InputSpec(shape, (0.2,) * shape[0], (0.3,) * shape[0], ())
    np.testing.assert_allclose(as_model_input(ink, spec), to_model_input(ink, spec), atol=1e-6)
