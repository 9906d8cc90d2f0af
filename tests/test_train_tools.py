"""tools/train.py, tools/evaluate.py and tools/mnist_data.py on a tiny fake MNIST written here.

The fake set is real IDX files in torchvision's `MNIST/raw/` layout, so the tools run their real
code path without the shared data.  The network is blocked (in-process by patching sockets, in
subprocesses by an unreachable proxy) so "absent and offline" is tested the same way everywhere.
The one test on real MNIST runs only where /work/shared/data/MNIST exists.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import evaluate
import pytest
import torch
import train
from convscope.models.nets import build
from convscope.models.weights import card_path, load_model, save_model
from mnist_data import RAW_FILES, load_split, to_input

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path("/work/shared/data/MNIST")
N_TRAIN, N_TEST = 300, 50


def _idx_images(images: torch.Tensor) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">iiii", 2051, n, rows, cols) + images.numpy().tobytes()


def _idx_labels(labels: torch.Tensor) -> bytes:
    return struct.pack(">ii", 2049, len(labels)) + labels.to(torch.uint8).numpy().tobytes()


def write_fake_mnist(root: Path, gz: bool = False, seed: int = 0) -> dict[str, bytes]:
    """Write N_TRAIN/N_TEST random digits as IDX under root/MNIST/raw; return the files' bytes."""
    g = torch.Generator().manual_seed(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    blobs = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=g)
        blobs[f"{split}-images-idx3-ubyte"] = _idx_images(images)
        blobs[f"{split}-labels-idx1-ubyte"] = _idx_labels(labels)
    for name, data in blobs.items():
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (raw / name).write_bytes(data)
    return blobs


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake_mnist")
    write_fake_mnist(root)
    return root


@pytest.fixture(scope="module")
def random_lenet(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "lenet.safetensors"
    save_model(build("lenet"), path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _offline_env() -> dict[str, str]:
    # urllib honours these, so a download attempt fails at once with "connection refused".
    env = dict(os.environ)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[var] = "http://127.0.0.1:9"
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    return env


def test_load_split_reads_the_idx_files(fake_root) -> None:
    raw = fake_root / "MNIST" / "raw"
    images, labels = load_split(fake_root, train=False)
    assert images.dtype == torch.uint8 and tuple(images.shape) == (N_TEST, 28, 28)
    assert labels.dtype == torch.int64 and tuple(labels.shape) == (N_TEST,)
    # Reference: the bytes as written, read back without torchvision.
    ref = (raw / "t10k-images-idx3-ubyte").read_bytes()[16:]
    assert images.numpy().tobytes() == ref
    assert labels.tolist() == list((raw / "t10k-labels-idx1-ubyte").read_bytes()[8:])


def test_evaluate_json_matches_a_direct_count(fake_root, random_lenet, capsys) -> None:
    rc = evaluate.main(
        ["--model", "lenet", "--data-dir", str(fake_root), "--weights", str(random_lenet), "--json"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    result = json.loads(out)
    assert set(result) == {"model", "accuracy", "n"}
    assert result["model"] == "lenet" and result["n"] == N_TEST
    images, labels = load_split(fake_root, train=False)
    with torch.no_grad():
        correct = int((load_model("lenet", random_lenet)(to_input(images)).argmax(1) == labels).sum())
    assert result["accuracy"] == pytest.approx(correct / N_TEST, abs=1e-12)


def test_evaluate_unpacks_gzipped_files_without_touching_stdout(tmp_path, random_lenet, capsys, monkeypatch):
    from torchvision.datasets import MNIST

    blobs = write_fake_mnist(tmp_path, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    # torchvision only unpacks files whose md5 it knows; give it the fake files' sums.
    resources = [(f"{n}.gz", hashlib.md5((raw / f"{n}.gz").read_bytes()).hexdigest()) for n in RAW_FILES]
    monkeypatch.setattr(MNIST, "resources", resources)
    rc = evaluate.main(
        ["--model", "lenet", "--data-dir", str(tmp_path), "--weights", str(random_lenet), "--json"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("\n") == 1 and json.loads(out)["n"] == N_TEST, f"stdout was {out!r}"
    assert (raw / "t10k-images-idx3-ubyte").read_bytes() == blobs["t10k-images-idx3-ubyte"]


def test_read_only_gzipped_data_is_not_unpacked_in_place(tmp_path, random_lenet, capsys) -> None:
    write_fake_mnist(tmp_path, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    raw.chmod(0o555)
    try:
        rc = evaluate.main(["--model", "lenet", "--data-dir", str(tmp_path), "--weights", str(random_lenet)])
        files = sorted(p.name for p in raw.iterdir())
    finally:
        raw.chmod(0o755)
    err = capsys.readouterr().err
    assert rc != 0 and "read-only" in err and "writable" in err, err
    assert files == sorted(f"{n}.gz" for n in RAW_FILES), f"wrote into the read-only folder: {files}"


def test_evaluate_cli_prints_exactly_one_json_object(fake_root, random_lenet) -> None:
    cmd = [sys.executable, str(ROOT / "tools" / "evaluate.py"), "--model", "lenet"]
    cmd += ["--data-dir", str(fake_root), "--weights", str(random_lenet), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_offline_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"expected one line on stdout, got {proc.stdout!r}"
    assert json.loads(lines[0])["n"] == N_TEST


def test_evaluate_bad_weights_is_one_clear_line(fake_root, tmp_path, capsys) -> None:
    bad = tmp_path / "lenet.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    rc = evaluate.main(["--model", "lenet", "--data-dir", str(fake_root), "--weights", str(bad), "--json"])
    captured = capsys.readouterr()
    assert rc != 0 and captured.out == ""
    assert captured.err.count("\n") == 1 and str(bad) in captured.err and "tools/train.py" in captured.err


def test_evaluate_absent_data_offline_is_one_clear_line(tmp_path, random_lenet, capsys, no_network) -> None:
    rc = evaluate.main(["--model", "lenet", "--data-dir", str(tmp_path), "--weights", str(random_lenet)])
    captured = capsys.readouterr()
    assert rc != 0 and captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert str(tmp_path / "MNIST" / "raw") in captured.err and "t10k-images-idx3-ubyte.gz" in captured.err


def test_train_cli_absent_data_offline_exits_without_traceback(tmp_path) -> None:
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), "--model", "mlp", "--data-dir", str(tmp_path)]
    cmd += ["--out", str(tmp_path / "mlp.safetensors")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_offline_env(), cwd=ROOT, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, f"expected one line, got {proc.stderr!r}"
    assert "put the raw MNIST files" in proc.stderr and str(tmp_path / "MNIST" / "raw") in proc.stderr
    assert not (tmp_path / "mlp.safetensors").exists()


@pytest.mark.parametrize("name", ["lenet", "mlp"])
def test_train_writes_loadable_weights_and_card(fake_root, tmp_path, name: str) -> None:
    out = tmp_path / f"{name}.safetensors"
    args = ["--model", name, "--data-dir", str(fake_root), "--limit", "256", "--epochs", "1"]
    args += ["--batch-size", "64", "--out", str(out), "--seed", "3"]
    assert train.main(args) == 0
    model = load_model(name, out)
    card = json.loads(card_path(out).read_text())
    assert card["model"] == name and card["n_test"] == N_TEST and card["n_train"] == 256
    assert card["architecture"] == train.architecture(model)
    assert card["training"]["seed"] == 3 and card["training"]["epochs"] == 1
    images, labels = load_split(fake_root, train=False)
    assert card["test_accuracy"] == pytest.approx(evaluate.accuracy(model, images, labels), abs=1e-12)


def test_train_is_reproducible_with_a_seed(fake_root, tmp_path) -> None:
    states = []
    for run in range(2):
        out = tmp_path / f"run{run}.safetensors"
        args = ["--model", "mlp", "--data-dir", str(fake_root), "--limit", "128", "--epochs", "1"]
        args += ["--out", str(out)]
        assert train.main(args) == 0
        states.append(load_model("mlp", out).state_dict())
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)


def test_augment_is_identity_when_ranges_are_zero() -> None:
    cfg = train.TrainConfig(rotate_deg=0, shear=0, scale=0, translate_px=0)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(train.augment(x, cfg, torch.Generator().manual_seed(0)), x, rtol=0, atol=1e-5)


def test_warp_by_whole_pixels_matches_roll() -> None:
    # Reference: shifting by whole pixels is torch.roll with the wrapped-around border zeroed.
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    theta = torch.tensor([[[1.0, 0.0, 2 * 2 / 28], [0.0, 1.0, -1 * 2 / 28]]])  # sample 2 px right, 1 px up
    ref = torch.roll(x, shifts=(1, -2), dims=(2, 3))
    ref[..., :1, :] = 0
    ref[..., :, -2:] = 0
    torch.testing.assert_close(train.warp(x, theta), ref, rtol=0, atol=1e-5)


def test_random_affine_stays_within_configured_ranges() -> None:
    cfg = train.TrainConfig(rotate_deg=10, shear=0.2, scale=0.1, translate_px=3)
    theta = train.random_affine(4096, cfg, torch.Generator().manual_seed(0))
    shift_px = theta[:, :, 2].abs() * 28 / 2
    assert float(shift_px.max()) <= 3 + 1e-5 and float(shift_px.max()) > 2.9
    # |det| = (1 - shx * shy) / zoom^2 bounds how much a warp can grow or shrink a digit.
    det = torch.linalg.det(theta[:, :, :2])
    lo, hi = (1 - 0.2**2) / 1.1**2, (1 + 0.2**2) / 0.9**2
    assert float(det.min()) >= lo - 1e-5 and float(det.max()) <= hi + 1e-5
    assert len(torch.unique(theta.reshape(len(theta), -1), dim=0)) == len(theta), "warps repeat"


@pytest.fixture(scope="session")
def real_root(tmp_path_factory) -> Path:
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"{SHARED_MNIST} not present")
    root = tmp_path_factory.mktemp("mnist")
    shutil.copytree(SHARED_MNIST, root / "MNIST")
    for path in [root / "MNIST", *(root / "MNIST").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the shared copy is read-only
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name,target", [("lenet", 0.99), ("mlp", 0.97)])
def test_shipped_weights_reach_target_on_real_mnist(real_root, capsys, name: str, target: float) -> None:
    assert evaluate.main(["--model", name, "--data-dir", str(real_root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 10000
    assert result["accuracy"] >= target, f"{name}: expected >= {target}, got {result['accuracy']}"


def test_bench_layer_edits_runs_the_worker_and_flags_chance(fake_root, tmp_path, capsys) -> None:
    """tools/bench_layer_edits.py end to end on the fake MNIST (random pixels and labels: nothing to learn),
    through a real training worker: one row per case with the numbers it reports, the edit really made
    (the network grows a conv layer), and every row flagged as stuck at chance, so the tool exits 1."""
    import bench_layer_edits

    out = tmp_path / "edits.json"
    argv = ["--data-dir", str(fake_root), "--datasets", "mnist", "--seeds", "0", "--before", "60"]
    code = bench_layer_edits.main([*argv, "--after", "120", "--cases", "none", "add0", "--json", str(out)])
    rows = json.loads(out.read_text())
    assert code == 1 and [r["case"] for r in rows] == ["none", "add0"], (code, rows)
    assert [len(r["widths"]) for r in rows] == [3, 4], "the '+ layer' row trains a 4-layer network"
    for r in rows:
        assert r["step"] >= 60 and r["end_step"] >= r["step"] + 120 and r["guard"] == 0, r
        assert all(math.isfinite(r[k]) for k in ("val_before", "val_right_after", "val_end", "train_next")), r
        assert not r["clear_of_chance"] and r["clip_norm"] == 1.0, r
    assert capsys.readouterr().out.count("AT CHANCE") == 2


def test_bench_layer_edits_bad_arguments_are_one_clear_line(tmp_path, capsys) -> None:
    import bench_layer_edits

    assert bench_layer_edits.main(["--data-dir", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convscope: error:") and err.count("\n") == 1, err
