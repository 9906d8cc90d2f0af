"""Preprocessing to the network's 28x28 input: exact area averages, polarity, odd sizes, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from convscope.scenes.explore.preprocess import (
    InputImageError,
    area_resize,
    image_file_to_input,
    pad_to_input,
)
from PIL import Image


def blocky(values: np.ndarray, factor: int) -> np.ndarray:
    return np.kron(values, np.ones((factor, factor), np.float32)).astype(np.float32)


def digit_like(h: int = 280, w: int = 280) -> np.ndarray:
    """White-on-black ink in [0, 1]: a bar and a box outline, far from the border."""
    ink = np.zeros((h, w), np.float32)
    ink[h // 5 : h // 5 + max(h // 10, 1), w // 4 : 3 * w // 4] = 1.0
    ink[h // 2 : 4 * h // 5, w // 3 : w // 3 + max(w // 12, 1)] = 1.0
    return ink


def save(tmp_path, name: str, ink: np.ndarray, dark_on_light: bool, mode: str = "L", **kw):
    grey = 1.0 - ink if dark_on_light else ink
    img = Image.fromarray((grey * 255 + 0.5).astype(np.uint8), "L").convert(mode)
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_pad_blocks_downsample_to_their_values():
    rng = np.random.default_rng(1)
    values = rng.random((28, 28)).astype(np.float32)
    x = pad_to_input(blocky(values, 10))
    assert x.shape == (28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x, values, atol=1e-6)


def test_partly_inked_cells_average_by_area():
    canvas = np.zeros((280, 280), np.float32)
    canvas[0:5, 0:10] = 1.0  # half of cell (0, 0)
    canvas[20:30, 20:22] = 1.0  # a fifth of cell (2, 2)
    x = pad_to_input(canvas)
    assert x[0, 0] == pytest.approx(0.5) and x[2, 2] == pytest.approx(0.2)
    assert x.sum() == pytest.approx(0.7)


@pytest.mark.parametrize("size", [112, 300, 333, 2048])
def test_any_pad_size_keeps_the_mean_ink(size):
    rng = np.random.default_rng(size)
    canvas = (rng.random((size, size)) > 0.7).astype(np.float32)
    x = pad_to_input(canvas)
    assert x.shape == (28, 28)
    assert x.mean() == pytest.approx(canvas.mean(), abs=1e-5)  # an area average preserves the mean


def test_area_resize_of_a_non_multiple_matches_a_reference():
    img = np.arange(6, dtype=np.float32).reshape(2, 3)
    # 3 columns -> 2: [col0 + col1/2] / 1.5 and [col1/2 + col2] / 1.5, rows averaged.
    np.testing.assert_allclose(
        area_resize(img, 1, 2), [[(1.5 + 0.5 * 2.5) / 1.5, (0.5 * 2.5 + 3.5) / 1.5]], rtol=1e-6
    )


def test_both_polarities_give_the_same_input(tmp_path):
    ink = digit_like()
    expected = pad_to_input(ink)
    light = image_file_to_input(save(tmp_path, "dark_on_light.png", ink, dark_on_light=True))
    dark = image_file_to_input(save(tmp_path, "light_on_dark.png", ink, dark_on_light=False))
    np.testing.assert_allclose(light, expected, atol=0.01)
    np.testing.assert_allclose(dark, expected, atol=0.01)
    rgb_jpeg = image_file_to_input(
        save(tmp_path, "photo.jpg", ink, dark_on_light=True, mode="RGB", quality=95)
    )
    assert np.abs(rgb_jpeg - expected).max() < 0.1


def test_grey_paper_is_stretched_to_black_and_white(tmp_path):
    ink = digit_like()
    grey = 0.75 - 0.5 * ink  # dark grey ink on light grey paper
    path = tmp_path / "paper.png"
    Image.fromarray((grey * 255).astype(np.uint8)).save(path)
    np.testing.assert_allclose(image_file_to_input(path), pad_to_input(ink), atol=0.02)


def test_odd_non_square_image_is_padded_to_square(tmp_path):
    ink = np.zeros((37, 91), np.float32)
    ink[10:27, 20:70] = 1.0
    x = image_file_to_input(save(tmp_path, "odd.png", ink, dark_on_light=True, mode="RGB"))
    assert x.shape == (28, 28) and x.dtype == np.float32
    # 37 rows become the middle of a 91x91 square: rows 27..64 of 91, i.e. 8.3..19.7 of 28.
    assert x[:8].max() == 0.0 and x[21:].max() == 0.0
    expected_rows = np.zeros((91, 91), np.float32)
    expected_rows[27:64] = ink
    np.testing.assert_allclose(x, area_resize(expected_rows, 28, 28), atol=0.01)


def test_tiny_and_sixteen_bit_images(tmp_path):
    tiny = np.zeros((5, 5), np.float32)
    tiny[2, 1:4] = 1.0
    x = image_file_to_input(save(tmp_path, "tiny.png", tiny, dark_on_light=False))
    assert x.shape == (28, 28) and x.max() == pytest.approx(1.0) and x[0].max() == 0.0
    ink = digit_like(64, 64)
    path = tmp_path / "deep.png"
    Image.fromarray(((1.0 - ink) * 65535).astype(np.uint16)).save(path)  # mode I;16
    np.testing.assert_allclose(image_file_to_input(path), pad_to_input(ink), atol=0.01)


@pytest.mark.parametrize("ink_colour", [0, 255])
def test_transparent_background_either_ink_colour(tmp_path, ink_colour):
    ink = digit_like(100, 100)
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[..., :3] = ink_colour
    rgba[..., 3] = (ink * 255).astype(np.uint8)
    path = tmp_path / f"alpha_{ink_colour}.png"
    Image.fromarray(rgba, "RGBA").save(path)
    np.testing.assert_allclose(image_file_to_input(path), pad_to_input(ink), atol=0.01)


def test_blank_page_is_all_zero(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (50, 40), 255).save(path)
    x = image_file_to_input(path)
    assert x.shape == (28, 28) and not x.any()


def test_unreadable_files_raise_input_image_error_naming_the_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "cut.png"
    Image.fromarray((digit_like() * 255).astype(np.uint8)).save(tmp_path / "whole.png")
    truncated.write_bytes((tmp_path / "whole.png").read_bytes()[:200])
    for path in (tmp_path / "missing.png", text, truncated, tmp_path):
        with pytest.raises(InputImageError) as info:
            image_file_to_input(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, message
