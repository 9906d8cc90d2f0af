"""The shipped weights and their model cards, and how bad weight files fail.

Runs without any dataset: shapes, cards and error messages only; accuracy on the real test set is
checked in tests/test_train_tools.py when the shared MNIST copy is present.
"""

from __future__ import annotations

import json

import pytest
import torch
from convscope.models.nets import MODELS, build
from convscope.models.weights import WeightsError, card_path, default_path, load_model, save_model

# The accuracy each shipped model must reach on the 10,000 MNIST test images.
TARGETS = {"lenet": 0.99, "mlp": 0.97}


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shipped_weights_load_with_model_shapes(name: str) -> None:
    path = default_path(name)
    assert path.is_file(), f"shipped weights {path} missing"
    model = load_model(name)
    assert not model.training
    for key, ref in build(name).state_dict().items():
        got = model.state_dict()[key]
        assert got.shape == ref.shape, f"{key}: expected {tuple(ref.shape)}, got {tuple(got.shape)}"
        assert got.dtype == torch.float32
        assert torch.isfinite(got).all(), key


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shipped_card_records_target_accuracy(name: str) -> None:
    cpath = card_path(default_path(name))
    assert cpath.is_file(), f"model card {cpath} missing"
    card = json.loads(cpath.read_text())
    assert card["model"] == name
    assert card["n_test"] == 10000
    assert card["test_accuracy"] >= TARGETS[name], (
        f"{name}: card says {card['test_accuracy']}, target {TARGETS[name]}"
    )
    layers = [{k: v for k, v in layer.to_dict().items() if k != "start"} for layer in MODELS[name].describe()]
    assert card["architecture"] == layers
    for key in ("training", "date", "torch_version"):
        assert key in card, f"card lacks {key!r}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_all_matches_forward_and_describe(name: str) -> None:
    model = load_model(name)
    x = _images()
    with torch.no_grad():
        acts = model.forward_all(x)
        logits = model(x)
    layers = model.describe()
    assert list(acts) == [layer.name for layer in layers]
    for layer in layers:
        assert tuple(acts[layer.name].shape) == (len(x), *layer.shape), layer.name
    torch.testing.assert_close(acts["output"], logits, rtol=0, atol=0)


def test_lenet_forward_matches_a_direct_torch_computation() -> None:
    # Reference: the same arithmetic written with plain torch ops and an explicit zero padding.
    model = load_model("lenet")
    x = _images()
    F = torch.nn.functional
    with torch.no_grad():
        h = F.conv2d(F.pad(x, (2, 2, 2, 2)), model.conv1.weight, model.conv1.bias).clamp_min(0)
        h = F.max_pool2d(F.conv2d(F.max_pool2d(h, 2), model.conv2.weight, model.conv2.bias).clamp_min(0), 2)
        h = (h.reshape(len(x), -1) @ model.fc1.weight.T + model.fc1.bias).clamp_min(0)
        h = (h @ model.fc2.weight.T + model.fc2.bias).clamp_min(0)
        ref = h @ model.output.weight.T + model.output.bias
        got = model(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_save_then_load_round_trips_exactly(tmp_path) -> None:
    torch.manual_seed(0)
    model = build("mlp")
    path = tmp_path / "mlp.safetensors"
    save_model(model, path, {"model": "mlp"})
    loaded = load_model("mlp", path)
    for key, ref in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], ref, rtol=0, atol=0)
    assert json.loads(card_path(path).read_text()) == {"model": "mlp"}
    assert not list(tmp_path.glob("*.tmp")), "save_model left a temporary file behind"
    assert path.stat().st_mode & 0o044 == 0o044, "weights should be readable by everyone, like the code"


def _assert_clear_error(exc: WeightsError, path) -> None:
    msg = str(exc)
    assert str(path) in msg, f"message does not name the file: {msg}"
    assert "tools/train.py" in msg, f"message does not say how to retrain: {msg}"


def test_garbage_bytes_give_weights_error(tmp_path) -> None:
    path = tmp_path / "lenet.safetensors"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(WeightsError) as info:
        load_model("lenet", path)
    _assert_clear_error(info.value, path)


def test_truncated_file_gives_weights_error(tmp_path) -> None:
    path = tmp_path / "lenet.safetensors"
    save_model(build("lenet"), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as info:
        load_model("lenet", path)
    _assert_clear_error(info.value, path)


def test_other_models_weights_give_weights_error(tmp_path) -> None:
    path = tmp_path / "mlp.safetensors"
    save_model(build("mlp"), path)
    with pytest.raises(WeightsError) as info:
        load_model("lenet", path)
    _assert_clear_error(info.value, path)


def test_wrong_shape_gives_weights_error(tmp_path) -> None:
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in build("mlp").state_dict().items()}
    state["fc1.weight"] = torch.zeros(200, 784)  # right names, wrong width
    path = tmp_path / "mlp.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as info:
        load_model("mlp", path)
    _assert_clear_error(info.value, path)
    assert "fc1.weight" in str(info.value)


def test_missing_file_gives_weights_error(tmp_path) -> None:
    path = tmp_path / "nowhere" / "lenet.safetensors"
    with pytest.raises(WeightsError) as info:
        load_model("lenet", path)
    _assert_clear_error(info.value, path)
