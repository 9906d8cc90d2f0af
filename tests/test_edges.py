"""Incoming edges generated from each layer's pattern (engine/graph/edges.py): counts per node kind
for the LeNet and the MLP, sources equal to the receptive field computed independently with torch
(a transposed convolution / pooling of a one-hot), weight indices that address the right weight,
edge values and colour scales.  Run: python -m pytest tests/test_edges.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convscope.engine.graph.edges import (
    edge_scale,
    edge_values,
    edge_weights,
    incoming,
    locate,
)
from convscope.engine.graph.spec import LayerSpec, NetSpec
from gl_helpers import lenet_spec, mlp_spec

torch.set_num_threads(1)

LENET_COUNTS = {
    "input": 0,
    "conv1": 25,
    "pool1": 4,
    "conv2": 150,
    "pool2": 4,
    "fc1": 400,
    "fc2": 120,
    "output": 100,
}
MLP_COUNTS = {"input": 0, "fc1": 784, "fc2": 300, "output": 100}


def sample_nodes(layer: LayerSpec, rng: np.random.Generator, n: int = 12) -> list[int]:
    """The first and last node and some random ones (corners of maps included)."""
    picks = {layer.start, layer.stop - 1, *rng.integers(layer.start, layer.stop, n).tolist()}
    if layer.is_grid:
        c, h, w = layer.shape
        picks |= {layer.start + (c - 1) * h * w + w - 1, layer.start + (h - 1) * w}
    return sorted(picks)


@pytest.mark.parametrize(("make", "counts"), [(lenet_spec, LENET_COUNTS), (mlp_spec, MLP_COUNTS)])
def test_edge_counts_per_layer(make, counts):
    spec = make()
    rng = np.random.default_rng(0)
    for layer in spec.layers:
        for node in sample_nodes(layer, rng):
            edges = incoming(spec, node)
            assert edges.count == counts[layer.name], (layer.name, node, edges.count)
            assert len(np.unique(edges.sources)) == edges.count, "no edge twice"
            if edges.count:
                below = spec.layers[spec.index(layer.name) - 1]
                assert edges.source_layer == below
                assert (edges.sources >= below.start).all() and (edges.sources < below.stop).all()


def receptive_field(spec: NetSpec, node: int) -> set[int]:
    """Independently of edges.py: the nodes of the layer below that a one-hot at `node` reaches
    backwards through torch's own conv / pool (gradient of the node w.r.t. the layer below, with
    all-ones weights so no tap is zero)."""
    where = locate(spec, node)
    layer = where.layer
    below = spec.layers[where.layer_index - 1]
    x = torch.rand(1, *below.shape, dtype=torch.float64, requires_grad=True)
    if layer.kind == "conv":
        k = layer.kernel
        w = torch.ones(layer.shape[0], below.shape[0], k, k, dtype=torch.float64)
        y = F.conv2d(x, w, stride=layer.stride, padding=layer.padding)
    elif layer.kind == "pool":
        # avg pool: every input of the window gets gradient (max pool would pick one).
        y = F.avg_pool2d(x, layer.kernel, layer.stride, layer.padding)
    else:
        y = x.flatten(1) @ torch.ones(below.count, layer.count, dtype=torch.float64)
    y.reshape(-1)[where.offset].backward()
    grad = x.grad.reshape(-1).numpy()
    return set((np.flatnonzero(grad != 0) + below.start).tolist())


@pytest.mark.parametrize("make", [lenet_spec, mlp_spec])
def test_sources_equal_the_receptive_field(make):
    spec = make()
    rng = np.random.default_rng(1)
    for layer in spec.layers[1:]:
        for node in sample_nodes(layer, rng, 6):
            got = set(incoming(spec, node).sources.tolist())
            assert got == receptive_field(spec, node), f"{layer.name} node {node}"


def test_padded_conv_and_strided_pool_windows():
    """A conv with padding 2 (as in the ReVACNN) drops the taps that fall on the zero border; a
    3-wide pool with stride 2 overlaps its neighbours."""
    spec = NetSpec.build(
        "padded",
        [
            LayerSpec("input", "input", (3, 8, 8)),
            LayerSpec("conv", "conv", (4, 8, 8), activation="relu", kernel=5, padding=2),
            LayerSpec("pool", "pool", (4, 3, 3), kernel=3, stride=2),
            LayerSpec("output", "output", (10,), activation="softmax"),
        ],
    )
    conv = spec.layer("conv")
    corner = conv.start  # (c 0, y 0, x 0): a 3 x 3 quarter of each 5 x 5 window is inside
    assert incoming(spec, corner).count == 3 * 3 * 3
    centre = conv.start + 4 * 8 + 4
    assert incoming(spec, centre).count == 3 * 5 * 5
    for node in (corner, centre, conv.start + 8 * 8 + 7, conv.stop - 1):
        assert set(incoming(spec, node).sources.tolist()) == receptive_field(spec, node)
    pool = spec.layer("pool")
    for node in range(pool.start, pool.stop):
        edges = incoming(spec, node)
        assert edges.count == 9
        assert set(edges.sources.tolist()) == receptive_field(spec, node)


def test_weight_index_addresses_torch_weights():
    """w[weight_index] times the inputs summed is torch's pre-activation, for every node of a layer."""
    spec = lenet_spec()
    g = torch.Generator().manual_seed(2)
    rng = np.random.default_rng(2)
    for name in ("conv1", "conv2", "fc1", "output"):
        layer = spec.layer(name)
        below = spec.layers[spec.index(name) - 1]
        x = torch.rand(1, *below.shape, generator=g)
        if layer.kind == "conv":
            w = torch.randn(layer.shape[0], below.shape[0], layer.kernel, layer.kernel, generator=g)
            ref = F.conv2d(x, w).reshape(-1)
        else:
            w = torch.randn(layer.count, below.count, generator=g)
            ref = (x.flatten(1) @ w.T).reshape(-1)
        acts = np.zeros(spec.total_nodes, np.float32)
        acts[below.start : below.stop] = x.reshape(-1).numpy()
        weights = {name: {"weight": w.numpy()}}
        for node in sample_nodes(layer, rng, 20):
            edges = incoming(spec, node)
            z = float(np.dot(edge_weights(edges, weights).astype(np.float64), acts[edges.sources]))
            assert z == pytest.approx(float(ref[node - layer.start]), abs=1e-4), (name, node)


def test_edge_values_and_scales():
    spec = lenet_spec()
    rng = np.random.default_rng(3)
    weights = {
        layer.name: {
            "weight": rng.normal(0, 0.3, (layer.count, spec.layers[i - 1].count)).astype(np.float32)
            if layer.kind in ("fc", "output")
            else rng.normal(0, 0.3, (layer.shape[0], spec.layers[i - 1].shape[0], 5, 5)).astype(np.float32)
        }
        for i, layer in enumerate(spec.layers)
        if layer.kind in ("conv", "fc", "output")
    }
    acts = rng.random(spec.total_nodes, dtype=np.float32)

    # Pool: a selector.  Weight 1 on the winner, contribution = the winner's input.
    pool = spec.layer("pool1")
    node = pool.start + 17
    e = incoming(spec, node)
    x = acts[e.sources]
    w = edge_values(e, weights, acts, "weight")
    assert w.sum() == 1.0 and w[np.argmax(x)] == 1.0
    c = edge_values(e, weights, acts, "contribution")
    assert c[np.argmax(x)] == x.max() and np.count_nonzero(c) == 1

    # Conv / fc: weights and weight x input; NaN until weights / activations exist.
    e = incoming(spec, spec.layer("conv2").start + 123)
    np.testing.assert_array_equal(edge_values(e, weights, acts, "weight"), edge_weights(e, weights))
    np.testing.assert_allclose(
        edge_values(e, weights, acts, "contribution"), edge_weights(e, weights) * acts[e.sources], rtol=1e-6
    )
    assert np.isnan(edge_values(e, None, acts, "weight")).all()
    assert np.isnan(edge_values(e, weights, None, "contribution")).all()

    # Scales: per layer the largest |value| over every node of the layer (brute force here).
    for name in ("conv1", "conv2", "fc1", "output", "pool2"):
        layer = spec.layer(name)
        for mode in ("weight", "contribution"):
            brute = max(
                float(np.abs(edge_values(incoming(spec, n), weights, acts, mode)).max())
                for n in range(layer.start, layer.stop)
            )
            got = edge_scale(spec, layer, weights, acts, mode, "layer")
            if name.startswith("pool") and mode == "weight":
                assert got == 1.0
            else:
                assert got == pytest.approx(brute, rel=1e-6), (name, mode)
    glob = edge_scale(spec, spec.layer("fc2"), weights, acts, "weight", "global")
    assert glob == pytest.approx(max(float(np.abs(v["weight"]).max()) for v in weights.values()))
    glob_c = edge_scale(spec, spec.layer("fc2"), weights, acts, "contribution", "global")
    assert glob_c >= edge_scale(spec, spec.layer("conv2"), weights, acts, "contribution", "layer")
    assert edge_scale(spec, spec.layer("fc1"), None, None, "weight", "layer") == 1.0  # nothing yet: never 0
