"""The `convscope` command-line contract: headless screenshot and activation dump, and clear errors.

Each run is a real subprocess (the render process must never import torch; the activations it
dumps are checked here against a direct torch forward pass of the shipped weights).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.gl


def convscope(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convscope.scenes.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{proc.stderr}"
    assert lines[0].startswith("convscope: error:"), lines[0]
    return lines[0]


def seven(tmp_path: Path, dark_on_light: bool) -> Path:
    """A hand-made '7' (a bar and a diagonal) of an odd size, in either polarity."""
    img = np.zeros((150, 130), np.uint8)
    img[20:34, 25:110] = 255
    for y in range(34, 135):
        x = int(105 - (y - 34) * 0.45)
        img[y, x - 7 : x + 7] = 255
    if dark_on_light:
        img = 255 - img
    path = tmp_path / f"seven_{int(dark_on_light)}.png"
    Image.fromarray(img).save(path)
    return path


@pytest.fixture(scope="module")
def headless_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    drawing = seven(tmp, dark_on_light=True)
    shot, dump = tmp / "shot.png", tmp / "acts.npz"
    proc = convscope(
        "--headless",
        "--frames",
        "2",
        "--width",
        "640",
        "--height",
        "400",
        "--screenshot",
        str(shot),
        "--input",
        str(drawing),
        "--dump-activations",
        str(dump),
    )
    assert proc.returncode == 0, proc.stderr
    return shot, dump, drawing


def test_headless_screenshot_has_the_asked_size_and_is_not_blank(headless_run):
    shot, _, _ = headless_run
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (400, 640, 3)
    assert pixels.std() > 20, "a flat frame: nothing was drawn"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200


def test_dumped_activations_equal_a_torch_forward_pass(headless_run):
    torch = pytest.importorskip("torch")
    from convscope.models.weights import load_model
    from convscope.scenes.explore.preprocess import image_file_to_input

    _, dump, drawing = headless_run
    acts = np.load(dump)
    model = load_model("lenet")
    x = torch.from_numpy(image_file_to_input(drawing))[None, None]
    with torch.no_grad():
        ref = {k: v[0].numpy() for k, v in model.forward_all(x).items()}
    # The traced Dag: the 28x28 image is the input (the pad to 32 is an index map).
    ref["input"] = x[0].numpy()
    for name, want in ref.items():
        assert acts[name].shape == want.shape, name
        assert np.abs(acts[name] - want).max() <= 1e-5, name
    probs = torch.softmax(torch.from_numpy(ref["output"]), 0).numpy()
    assert np.abs(acts["probabilities"] - probs).max() <= 1e-5
    assert int(np.argmax(acts["probabilities"])) == 7


def test_either_polarity_gives_the_same_network_input(headless_run, tmp_path):
    from convscope.scenes.explore.preprocess import image_file_to_input

    a = image_file_to_input(seven(tmp_path, dark_on_light=True))
    b = image_file_to_input(seven(tmp_path, dark_on_light=False))
    assert np.abs(a - b).max() < 1e-6
    assert np.abs(np.load(headless_run[1])["input"][0] - a).max() <= 1e-6


def test_unknown_option_is_one_line_and_exit_2():
    proc = convscope("--frobnicate")
    assert proc.returncode == 2
    assert "frobnicate" in one_error_line(proc)


def test_unreadable_input_file_is_one_line(tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"this is not a png")
    proc = convscope("--headless", "--screenshot", str(tmp_path / "x.png"), "--input", str(bad))
    assert proc.returncode == 2
    assert "not_an_image.png" in one_error_line(proc)
    missing = convscope(
        "--headless", "--screenshot", str(tmp_path / "x.png"), "--input", str(tmp_path / "nope.png")
    )
    assert missing.returncode == 2 and "nope.png" in one_error_line(missing)


def test_bad_config_names_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('colourmap = "viridis"\n')
    proc = convscope("--config", str(cfg))
    assert proc.returncode == 2
    assert "colourmap" in one_error_line(proc)


def test_corrupt_weights_give_a_clear_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 64)
    proc = convscope("--headless", "--screenshot", str(tmp_path / "x.png"), "--weights", str(bad))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "broken.safetensors" in line and "cannot read weights" in line


def test_mismatched_weights_give_a_clear_error(tmp_path):
    mlp = Path(__file__).resolve().parents[1] / "models" / "mlp.safetensors"
    proc = convscope(
        "--headless", "--screenshot", str(tmp_path / "x.png"), "--model", "lenet", "--weights", str(mlp)
    )
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "mlp.safetensors" in line and "do not fit" in line and "conv1.weight" in line


def test_data_mirror_reaches_the_training_config(tmp_path):
    """--data-mirror (an offline mirror) goes cli -> TrainConfig -> the worker's options, like --data-dir."""
    from convscope.scenes.cli import UsageError, main, parse
    from convscope.scenes.train.run import train_config_from
    from convscope.scenes.train.scene import TrainScene

    data = tmp_path / "data"
    data.mkdir()
    argv = ["--scene", "train", "--dataset", "mnist", "--data-dir", str(data)]
    opts, cfg, _ = parse([*argv, "--data-mirror", "http://10.0.0.5/datasets/"])
    train = train_config_from(cfg, opts)
    assert train.data_mirror == "http://10.0.0.5/datasets/" and train.data_dir == str(data)
    scene = TrainScene(train)  # the handle is made, not launched
    assert scene.handle.options["data_mirror"] == "http://10.0.0.5/datasets/"
    assert scene.handle.options["data_dir"] == str(data)
    scene.handle.close()
    # A folder is taken as a file:// URL.
    opts, _, _ = parse([*argv, "--data-mirror", str(tmp_path)])
    assert opts.data_mirror == tmp_path.resolve().as_uri()
    for bad, why in (
        (["--data-mirror", "http://x/"], "--data-mirror needs --scene train"),
        ([*argv, "--data-mirror", "ftp://x/"], "is not an http(s):// or file:// URL"),
        (["--scene", "train", "--data-mirror", "http://x/"], "--data-mirror needs --data-dir"),
    ):
        with pytest.raises(UsageError, match=why.replace("(", r"\(").replace(")", r"\)")):
            parse(bad)
    assert main(["--scene", "train", "--data-mirror", "nowhere"]) == 2
