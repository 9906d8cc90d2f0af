"""A user's model in the worker, seen from the render side (WorkerHandle): the Dag and InputSpec arrive, a
model input of the card's shape is handed over as it is, morph batches and the embedding view's filter
vectors work on the traced model, and a switch to a model that does not load keeps the previous one
running with its spec and results in place (the UI stays up and says why).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from convscope.features.inference import WorkerHandle
from convscope.models.loader import load_model
from safetensors.torch import save_file

NETS = Path(__file__).resolve().parent / "nets"
START_TIMEOUT = 120.0


def wait_for(cond, what: str, timeout: float = START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture(scope="module")
def separable(tmp_path_factory):
    torch.manual_seed(4)
    model = load_model(f"{NETS / 'separable.py'}:Separable")
    path = tmp_path_factory.mktemp("w") / "sep.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    spec = f"{NETS / 'separable.py'}:Separable"
    card = {"input_shape": [3, 16, 16], "mean": [0.5], "std": [0.25], "classes": [f"c{i}" for i in range(10)]}
    handle = WorkerHandle(spec, {spec: path}, card=card, device="cpu")
    assert handle.start(START_TIMEOUT), handle.error
    yield model.eval(), handle
    handle.close()


def test_spec_input_spec_and_results(separable):
    model, handle = separable
    assert handle.input_shape == (3, 16, 16) and handle.device == "cpu"
    assert handle.input_spec.mean == (0.5,) and handle.input_spec.classes[3] == "c3"
    assert handle.spec.layers[0].shape == (3, 16, 16) and handle.status == ""
    x = np.random.default_rng(0).standard_normal((3, 16, 16)).astype(np.float32)
    result = handle.infer_sync(x)
    first = handle.spec.layers[0]
    np.testing.assert_array_equal(result.activations[first.start : first.stop].reshape(3, 16, 16), x)
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(x)[None])[0], 0).numpy()
    np.testing.assert_allclose(result.probabilities, want, atol=1e-6)
    # a drawing is resized to 16x16, copied to the three channels and normalised with the card
    drawing = np.zeros((28, 28), np.float32)
    drawing[7:21, 7:21] = 1.0
    result = handle.infer_sync(drawing)
    got = result.activations[first.start : first.stop].reshape(3, 16, 16)
    assert np.isclose(got.min(), -2.0) and np.isclose(got.max(), 2.0)
    np.testing.assert_array_equal(got[0], got[2])
    weights = handle.wait_for_weights()
    convs = [x.name for x in handle.spec.layers if x.kind == "conv"]
    assert convs and all(name in weights for name in convs)


def test_morph_batch_on_a_traced_model(separable):
    model, handle = separable
    xs = np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)
    bid = handle.infer_batch(xs)
    got = wait_for(lambda: handle.batch(bid), "the batch")
    assert got.error == "", got.error
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(xs)), 1).numpy()
    np.testing.assert_allclose(got.probabilities, want, atol=1e-6)


def test_filter_vectors_of_the_first_conv_layer(separable):
    model, handle = separable
    x = np.random.default_rng(2).standard_normal((3, 16, 16)).astype(np.float32)
    handle.infer_sync(x)
    got = handle.wait_filters(handle.embed_filters(0))
    first = next(layer for layer in handle.spec.layers if layer.kind == "conv")
    assert got.layer == first.name
    conv = dict(model.named_modules())[first.name]
    np.testing.assert_allclose(
        got.vectors["coefficients"], conv.weight.detach().reshape(conv.out_channels, -1)
    )
    assert (
        np.isfinite(got.vectors["filter_gradients"]).all()
        and np.abs(got.vectors["filter_gradients"]).sum() > 0
    )


def test_a_failed_switch_keeps_the_previous_model(separable, tmp_path):
    model, handle = separable
    x = np.random.default_rng(3).standard_normal((3, 16, 16)).astype(np.float32)
    before = handle.infer_sync(x)
    spec, version = handle.spec, handle.spec_version
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\nraise ValueError('half-written model')\n")
    handle.switch_model(f"{bad}:Net", card={"input_shape": [3, 16, 16]})
    assert handle.spec is spec, "the old spec stays while the new model loads"
    wait_for(lambda: (handle.poll(), handle.ready and handle.error)[1], "the way back to the old model")
    assert "half-written model" in handle.error and "broken.py" in handle.error
    assert handle.spec == spec and handle.spec_version == version, "the layout is kept"
    assert handle.model.endswith("separable.py:Separable") and handle.failed_model == f"{bad}:Net"
    again = handle.infer_sync(x)
    np.testing.assert_array_equal(again.activations, before.activations)
