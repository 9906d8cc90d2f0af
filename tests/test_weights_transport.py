"""The model's weights reach the render process once per model through shared memory
(features/inference/handle.py `weights`), equal to the safetensors file, and leave no segment behind.
Run: python -m pytest tests/test_weights_transport.py -q
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from convscope.engine.proc.shm import list_segments, segment_prefix
from convscope.features.inference import WorkerHandle
from convscope.models.nets import build
from convscope.models.weights import save_model
from safetensors.numpy import load_file

START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    paths = {}
    for seed, name in enumerate(("lenet", "mlp")):
        torch.manual_seed(10 + seed)
        paths[name] = root / f"{name}.safetensors"
        save_model(build(name), paths[name])
    return paths


def assert_equal_to_file(got: dict, path: Path) -> None:
    ref = load_file(str(path))
    assert {f"{layer}.{key}" for layer, d in got.items() for key in d} == set(ref)
    for name, array in ref.items():
        layer, key = name.split(".")
        assert got[layer][key].dtype == np.float32 and got[layer][key].shape == array.shape, name
        np.testing.assert_array_equal(got[layer][key], array, err_msg=name)


def wait_for(cond, timeout: float = START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("timed out")


def test_weights_arrive_once_per_model(weights):
    handle = WorkerHandle("lenet", weights)
    arrivals = []
    original = handle._on_weights_written

    def counting() -> None:
        arrivals.append(handle.spec.model)
        original()

    handle._on_weights_written = counting
    try:
        assert handle.start(START_TIMEOUT), handle.error
        got = handle.wait_for_weights()
        assert got is not None and handle.weights_version == 1
        assert_equal_to_file(got, weights["lenet"])
        assert list_segments(segment_prefix()) == [], "the weights segment is unlinked once read"

        rng = np.random.default_rng(0)
        for _ in range(20):
            handle.infer_sync(rng.random((28, 28), dtype=np.float32))
        assert handle.weights is got and handle.weights_version == 1, "no second copy for the same model"

        handle.switch_model("mlp")
        wait_for(lambda: (handle.poll(), handle.spec.model == "mlp" and handle.weights is not None)[1])
        assert handle.weights_version == 2
        assert_equal_to_file(handle.weights, weights["mlp"])

        # A restart of the same model keeps the weights it has: nothing is sent again.
        os.kill(handle.pid, signal.SIGKILL)
        wait_for(handle.check, timeout=5)
        wait_for(lambda: (handle.poll(), handle.ready)[1])
        handle.infer_sync(np.zeros((28, 28), np.float32))
        assert handle.weights_version == 2
        assert_equal_to_file(handle.weights, weights["mlp"])

        handle.switch_model("lenet")
        wait_for(lambda: (handle.poll(), handle.spec.model == "lenet" and handle.weights is not None)[1])
        assert_equal_to_file(handle.weights, weights["lenet"])
        assert arrivals == ["lenet", "mlp", "lenet"]
        assert list_segments(segment_prefix()) == []
    finally:
        handle.close()
    assert list_segments(segment_prefix()) == []


def test_failed_load_has_no_weights(weights, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    handle = WorkerHandle("lenet", {"lenet": bad, "mlp": weights["mlp"]})
    try:
        assert handle.start(START_TIMEOUT) is False
        assert handle.weights is None and handle.wait_for_weights(0.5) is None
        handle.switch_model("mlp")
        wait_for(lambda: (handle.poll(), handle.weights is not None)[1])
        assert_equal_to_file(handle.weights, weights["mlp"])
    finally:
        handle.close()
    assert list_segments(segment_prefix()) == []
