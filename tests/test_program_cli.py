"""Models without their source and pictures for any model, through the real command line (scenes/cli.py ->
scenes/explore/run.py -> the worker).

A small residual net (tests/test_formats.py) is exported to .pt2 and .onnx in tmp_path and given as
`--model FILE` alone: its input shape comes from the file, the headless dump equals a torch forward pass
of the source within 1e-5 and `--explain` gives torch's value.  A picture given with `--input` reaches a
colour model (3x16x16) and a grey one that is not 28x28 (1x12x12) as `preprocess.to_model_input` makes it,
in the dump without OpenGL and, for the colour model, in the headless scene (through its image panel).
A card beside net.onnx is net.toml; a damaged or missing file is one `convscope: error:` line, exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from convscope.features.inference.messages import InputSpec
from convscope.scenes.cli import main
from convscope.scenes.explore.preprocess import to_model_input
from PIL import Image
from test_formats import Residual, SmallNet, _export, _randomize_bn

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)  # per channel, so a channel mix-up shows


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    rc = main(args)
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def residual():
    torch.manual_seed(3)
    return _randomize_bn(Residual(), seed=4)


def export(model: torch.nn.Module, fmt: str, folder: Path) -> Path:
    """`model` saved as `fmt` ('pt2' or 'onnx', the torch.export-based exporter) under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return _export(model, fmt, folder)


def picture(path: Path, height: int, width: int, seed: int = 0) -> Path:
    """A colourful RGB picture of another size and aspect than the model's input."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    rgb = np.stack([xx, yy, 0.5 + 0.5 * np.sin(7 * xx * yy)], axis=2) + 0.1 * rng.standard_normal(
        (height, width, 3)
    )
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB").save(path)
    return path


def check_against_source(dump: Path, source: torch.nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every dumped layer equals the source's torch forward pass on `x` (the dumped input) within 1e-5."""
    got = dict(np.load(dump))
    np.testing.assert_allclose(got.pop("input"), x, atol=1e-6, rtol=0)
    assert got.pop("nonfinite").size == 0
    probs = got.pop("probabilities")
    with torch.no_grad():
        ref = source.reference(torch.from_numpy(x)[None])
        out = source(torch.from_numpy(x)[None])[0]
    assert sorted(got) == sorted(ref), (sorted(got), sorted(ref))
    for name, want in ref.items():
        np.testing.assert_allclose(
            got[name], want[0].numpy().reshape(got[name].shape), atol=1e-5, rtol=0, err_msg=name
        )
    want_probs = out.exp() if isinstance(source, Residual) else torch.softmax(out, 0)  # log_softmax ends it
    np.testing.assert_allclose(probs, want_probs.numpy(), atol=1e-6)
    return got


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_program_file_dump_and_explain_equal_torch(fmt, residual, tmp_path, capsys):
    path = export(residual, fmt, tmp_path / fmt)
    x = np.random.default_rng(7).standard_normal(Residual.shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    dump, explained = tmp_path / "acts.npz", tmp_path / "node.json"
    rc, err = run_cli(
        [
            "--model",
            str(path),
            "--device",
            "cpu",
            "--headless",
            "--input",
            str(tmp_path / "x.npy"),
            "--dump-activations",
            str(dump),
            "--explain",
            "block.conv1:3,2,5",
            "--explain-json",
            str(explained),
        ],
        capsys,
    )  # fmt: skip  (no --input-shape: the file says 3x16x16)
    assert rc == 0, err
    got = check_against_source(dump, residual, x)
    e = json.loads(explained.read_text())
    assert e["layer"] == "block.conv1"
    want = got["block.conv1"][3, 2, 5]
    assert abs(e["value"] - want) <= 1e-5, (e["value"], want)
    assert abs(e["result"] - e["value"]) <= 1e-4 * max(1.0, abs(e["value"]))
    assert len(e["sources"]) == len(e["inputs"]) == 8 * 9, "a 3x3 conv over 8 channels"


def test_colour_picture_reaches_the_model_as_to_model_input(residual, tmp_path, capsys):
    """A 40x64 picture for a 3x16x16 model: cropped, resized and normalised per channel, not a drawing."""
    path = export(residual, "pt2", tmp_path / "pt2")
    pic = picture(tmp_path / "wide.png", 40, 64)
    dump = tmp_path / "acts.npz"
    normalize = f"{','.join(map(str, MEAN))}/{','.join(map(str, STD))}"
    rc, err = run_cli(["--model", str(path), "--device", "cpu", "--normalize", normalize, "--headless",
                       "--input", str(pic), "--dump-activations", str(dump)], capsys)  # fmt: skip
    assert rc == 0, err
    spec = InputSpec(Residual.shape, MEAN, STD, tuple("abcde"))
    with Image.open(pic) as img:
        want = to_model_input(img, spec)
    assert want.shape == (3, 16, 16) and np.ptp(want[0] - want[2]) > 0.5, "the channels differ"
    check_against_source(dump, residual, want)


def test_grey_picture_for_a_model_that_is_not_28(tmp_path, capsys):
    """A 1x12x12 model read from .onnx gets the picture's ink at 12x12 (not the 28x28 drawing resized)."""
    torch.manual_seed(1)
    source = _randomize_bn(SmallNet(), seed=2)
    path = export(source, "onnx", tmp_path / "onnx")
    ink = np.zeros((50, 50), np.uint8)
    ink[8:42, 20:30] = 255  # a light stroke on black
    Image.fromarray(ink).save(tmp_path / "stroke.png")
    dump = tmp_path / "acts.npz"
    stroke = str(tmp_path / "stroke.png")
    rc, err = run_cli(["--model", str(path), "--device", "cpu", "--normalize", "0.5/0.25", "--headless",
                       "--input", stroke, "--dump-activations", str(dump)], capsys)  # fmt: skip
    assert rc == 0, err
    want = to_model_input(Image.open(tmp_path / "stroke.png"), InputSpec((1, 12, 12), (0.5,), (0.25,), ()))
    assert np.isclose(want.min(), -2.0) and np.isclose(want.max(), 2.0), "ink 0 and 1 normalised"
    check_against_source(dump, source, want)


def test_card_beside_the_program_file(residual, tmp_path, capsys):
    """net.toml beside net.onnx is the model's card: its class names and normalisation are used."""
    path = export(residual, "onnx", tmp_path / "m")
    card = path.with_suffix(".toml")
    card.write_text('classes = "a,b,c"\n')
    args = [
        "--model",
        str(path),
        "--device",
        "cpu",
        "--headless",
        "--dump-activations",
        str(tmp_path / "a.npz"),
    ]
    rc, err = run_cli(args, capsys)
    assert rc == 2 and err.count("\n") == 1 and "3 class names for 5 outputs" in err, err
    card.write_text('normalize = "0.5/0.5"\nclasses = ["a", "b", "c", "d", "e"]\n')
    pic = picture(tmp_path / "p.png", 16, 16, seed=3)
    rc, err = run_cli([*args, "--input", str(pic)], capsys)
    assert rc == 0, err
    want = to_model_input(Image.open(pic), InputSpec(Residual.shape, (0.5,), (0.5,), tuple("abcde")))
    np.testing.assert_allclose(np.load(tmp_path / "a.npz")["input"], want, atol=1e-6)


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_damaged_or_missing_program_is_one_line(suffix, tmp_path, capsys):
    bad = tmp_path / f"net{suffix}"
    bad.write_bytes(b"\x08\x07not a model at all" * 10)
    dump = tmp_path / "a.npz"
    for model, want in ((bad, str(bad)), (tmp_path / f"none{suffix}", "no file")):
        rc, err = run_cli(["--model", str(model), "--device", "cpu", "--headless", "--dump-activations",
                           str(dump)], capsys)  # fmt: skip
        assert rc == 2, err
        assert err.startswith("convscope: error:") and err.count("\n") == 1 and "Traceback" not in err, err
        assert want in err, err
        assert not dump.exists()


def test_colour_picture_in_the_headless_scene(residual, tmp_path, capsys):
    """The scene path: the picture goes to the image panel, the dump's input is the tensor it sent."""
    path = export(residual, "pt2", tmp_path / "pt2")
    pic = picture(tmp_path / "tall.png", 48, 30, seed=5)
    dump, shot = tmp_path / "acts.npz", tmp_path / "shot.png"
    rc, err = run_cli(["--model", str(path), "--device", "cpu", "--headless", "--frames", "2",
                       "--width", "480", "--height", "320", "--input", str(pic), "--screenshot", str(shot),
                       "--dump-activations", str(dump)], capsys)  # fmt: skip
    if rc == 2 and "OpenGL" in err:
        pytest.skip(err)
    assert rc == 0, err
    want = to_model_input(Image.open(pic), InputSpec(Residual.shape, (0.0,), (1.0,), tuple("abcde")))
    check_against_source(dump, residual, want)
    frame = np.asarray(Image.open(shot).convert("RGB"), np.float32)
    assert frame.std() > 5.0, "the screenshot is not an empty frame"


def test_tensor_input_needs_the_dump_path(tmp_path, capsys):
    """The scene feeds the model from its pad or image panel: a .npy tensor goes with a dump only."""
    np.save(tmp_path / "x.npy", np.zeros((3, 16, 16), np.float32))
    for extra in (["--headless", "--screenshot", str(tmp_path / "s.png")], ["--frames", "2"]):
        rc, err = run_cli(["--input", str(tmp_path / "x.npy"), *extra], capsys)
        assert rc == 2 and err.count("\n") == 1 and "needs --headless without --screenshot" in err, err


def test_colour_model_without_a_picture_reads_black_and_shows_no_input(residual, tmp_path, capsys):
    """No --input and no data set: the scene does not wait for a picture; the model reads a black image
    (its normalised zeros) and the nodes rest at the "no input" grey."""
    path = export(residual, "pt2", tmp_path / "pt2")
    dump, shot = tmp_path / "acts.npz", tmp_path / "shot.png"
    rc, err = run_cli(["--model", str(path), "--device", "cpu", "--headless", "--frames", "2",
                       "--width", "1280", "--height", "720", "--normalize", "0.5,0.4,0.3/0.25,0.2,0.1",
                       "--screenshot", str(shot), "--dump-activations", str(dump)], capsys)  # fmt: skip
    if rc == 2 and "OpenGL" in err:
        pytest.skip(err)
    assert rc == 0, err
    spec = InputSpec(Residual.shape, (0.5, 0.4, 0.3), (0.25, 0.2, 0.1), tuple("abcde"))
    want = to_model_input(np.zeros((*Residual.shape[1:], 3), np.float32), spec)
    assert np.allclose(want[:, 0, 0], [-2.0, -2.0, -3.0])
    check_against_source(dump, residual, want)
    frame = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    right = frame[:, 760:]  # the network, right of the panels: grey nodes, no colour map
    # the colour map's dark blues, purples and magentas (the amber skip arc and the grey nodes are not)
    mapped = (right[:, :, 2] - right[:, :, 1]) > 40
    assert mapped.sum() < 0.001 * mapped.size, mapped.sum()
