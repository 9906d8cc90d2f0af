"""Hover edges on a Dag (engine/graph/edges.py, engine/graph/spec.py's to_dag): a NetSpec turned into a
Dag keeps its node ids and its edges (counts per node kind for the LeNet and the MLP, sources equal to
the receptive field computed independently with torch, weight indices that address torch's weights);
edge values and colour scales on the LeNet and on traced networks (residual adds, batch norm,
depthwise convs, concat, dilation, adaptive pooling), the scales equal to brute force over every edge.
Run: python -m pytest tests/test_edges.py -q
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convscope.engine.graph.dag import Dag
from convscope.engine.graph.edges import edge_scale, edge_values, edge_weights, incoming, locate
from convscope.engine.graph.spec import LayerSpec, NetSpec, as_dag
from gl_helpers import lenet_spec, mlp_spec

torch.set_num_threads(1)
NETS = Path(__file__).parent / "nets"

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


def sample_nodes(layer, rng: np.random.Generator, n: int = 12) -> list[int]:
    """The first and last node and some random ones (corners of maps included)."""
    picks = {layer.start, layer.stop - 1, *rng.integers(layer.start, layer.stop, n).tolist()}
    if layer.is_grid:
        c, h, w = layer.shape
        picks |= {layer.start + (c - 1) * h * w + w - 1, layer.start + (h - 1) * w}
    return sorted(picks)


def test_to_dag_keeps_names_shapes_node_ids_and_kinds():
    for spec in (lenet_spec(), mlp_spec()):
        dag = spec.to_dag()
        assert as_dag(spec) is dag and as_dag(dag) is dag  # converted once, a Dag passes through
        assert dag.total_nodes == spec.total_nodes and dag.classes == spec.classes
        assert [(x.name, x.shape, x.start) for x in dag.layers] == [
            (x.name, x.shape, x.start) for x in spec.layers
        ]
        kinds = {"input": "input", "conv": "conv", "pool": "pool", "fc": "dense", "output": "dense"}
        assert [x.kind for x in dag.layers] == [kinds[x.kind] for x in spec.layers]
        assert dag.output == "output" and dag.layer("output").activation == "softmax"
        assert Dag.from_dict(dag.to_dict()) == dag  # it travels like a traced Dag
    lenet = lenet_spec().to_dag()
    assert lenet.layer("conv1").activation == "relu" and lenet.layer("pool1").inputs[0].pool == "max"
    fc1 = lenet.layer("fc1").inputs[0]
    assert fc1.in_shape == (400,) and fc1.steps[0].op == "reshape" and fc1.steps[0].in_shape == (16, 5, 5)
    with pytest.raises(TypeError, match="NetSpec or a Dag"):
        as_dag({"layers": []})


@pytest.mark.parametrize(("make", "counts"), [(lenet_spec, LENET_COUNTS), (mlp_spec, MLP_COUNTS)])
def test_edge_counts_per_layer(make, counts):
    spec = make()
    dag = spec.to_dag()
    rng = np.random.default_rng(0)
    for i, layer in enumerate(dag.layers):
        for node in sample_nodes(layer, rng):
            edges = incoming(dag, node)
            assert edges.count == counts[layer.name], (layer.name, node, edges.count)
            assert len(np.unique(edges.sources)) == edges.count, "no edge twice"
            if edges.count:
                below = dag.layers[i - 1]
                assert (edges.sources >= below.start).all() and (edges.sources < below.stop).all()


def receptive_field(spec: NetSpec, node: int) -> set[int]:
    """Independently of the Dag: the nodes of the layer below that a one-hot at `node` reaches
    backwards through torch's own conv / pool (gradient of the node w.r.t. the layer below, with
    all-ones weights so no tap is zero), from the NetSpec's own numbers."""
    layer = spec.layer_of(node)
    i = spec.index(layer.name)
    below = spec.layers[i - 1]
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
    y.reshape(-1)[node - layer.start].backward()
    grad = x.grad.reshape(-1).numpy()
    return set((np.flatnonzero(grad != 0) + below.start).tolist())


@pytest.mark.parametrize("make", [lenet_spec, mlp_spec])
def test_sources_equal_the_receptive_field(make):
    spec = make()
    dag = spec.to_dag()
    rng = np.random.default_rng(1)
    for layer in dag.layers[1:]:
        for node in sample_nodes(layer, rng, 6):
            got = set(incoming(dag, node).sources.tolist())
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
    dag = spec.to_dag()
    conv = dag.layer("conv")
    corner = conv.start  # (c 0, y 0, x 0): a 3 x 3 quarter of each 5 x 5 window is inside
    assert incoming(dag, corner).count == 3 * 3 * 3
    centre = conv.start + 4 * 8 + 4
    assert incoming(dag, centre).count == 3 * 5 * 5
    for node in (corner, centre, conv.start + 8 * 8 + 7, conv.stop - 1):
        assert set(incoming(dag, node).sources.tolist()) == receptive_field(spec, node)
    pool = dag.layer("pool")
    for node in range(pool.start, pool.stop):
        edges = incoming(dag, node)
        assert edges.count == 9
        assert set(edges.sources.tolist()) == receptive_field(spec, node)
    where = locate(dag, conv.start + 64 + 8 * 3 + 5)
    assert (where.channel, where.y, where.x, where.unit) == (1, 3, 5, None)


def test_weight_index_addresses_torch_weights():
    """w[weight_index] times the inputs summed is torch's pre-activation, for every node of a layer."""
    spec = lenet_spec()
    dag = spec.to_dag()
    g = torch.Generator().manual_seed(2)
    rng = np.random.default_rng(2)
    for name in ("conv1", "conv2", "fc1", "output"):
        layer = dag.layer(name)
        below = dag.layers[dag.index(name) - 1]
        x = torch.rand(1, *below.shape, generator=g)
        if layer.kind == "conv":
            w = torch.randn(layer.shape[0], below.shape[0], 5, 5, generator=g)
            ref = F.conv2d(x, w).reshape(-1)
        else:
            w = torch.randn(layer.count, below.count, generator=g)
            ref = (x.flatten(1) @ w.T).reshape(-1)
        acts = np.zeros(dag.total_nodes, np.float32)
        acts[below.start : below.stop] = x.reshape(-1).numpy()
        weights = {name: {"weight": w.numpy()}}
        for node in sample_nodes(layer, rng, 20):
            edges = incoming(dag, node)
            z = float(np.dot(edge_weights(edges, weights).astype(np.float64), acts[edges.sources]))
            assert z == pytest.approx(float(ref[node - layer.start]), abs=1e-4), (name, node)


def brute_scale(dag: Dag, layer, weights, acts, mode: str) -> float:
    """Largest |edge value| over every edge of every node of `layer`, edge by edge."""
    return max(
        (
            float(np.abs(edge_values(incoming(dag, n, weights), weights, acts, mode)).max(initial=0.0))
            for n in range(layer.start, layer.stop)
        ),
        default=0.0,
    )


def test_edge_values_and_scales():
    dag = lenet_spec().to_dag()
    rng = np.random.default_rng(3)
    weights = {}
    for i, layer in enumerate(dag.layers):
        below = dag.layers[i - 1]
        if layer.kind == "dense":
            weights[layer.name] = {
                "weight": rng.normal(0, 0.3, (layer.count, below.count)).astype(np.float32)
            }
        elif layer.kind == "conv":
            shape = (layer.shape[0], below.shape[0], 5, 5)
            weights[layer.name] = {"weight": rng.normal(0, 0.3, shape).astype(np.float32)}
    acts = rng.random(dag.total_nodes, dtype=np.float32)

    # Max pool: a selector.  Weight 1 on the winner, contribution = the winner's input.
    pool = dag.layer("pool1")
    e = incoming(dag, pool.start + 17)
    x = acts[e.sources]
    w = edge_values(e, weights, acts, "weight")
    assert w.sum() == 1.0 and w[np.argmax(x)] == 1.0
    c = edge_values(e, weights, acts, "contribution")
    assert c[np.argmax(x)] == x.max() and np.count_nonzero(c) == 1

    # Conv / dense: weights and weight x input; NaN until weights / activations exist.
    e = incoming(dag, dag.layer("conv2").start + 123)
    np.testing.assert_array_equal(edge_values(e, weights, acts, "weight"), edge_weights(e, weights))
    np.testing.assert_allclose(
        edge_values(e, weights, acts, "contribution"), edge_weights(e, weights) * acts[e.sources], rtol=1e-6
    )
    assert np.isnan(edge_values(e, None, acts, "weight")).all()
    assert np.isnan(edge_values(e, weights, None, "contribution")).all()

    # Scales: per layer the largest |value| over every node of the layer (brute force here).
    for name in ("conv1", "conv2", "fc1", "output", "pool2"):
        layer = dag.layer(name)
        for mode in ("weight", "contribution"):
            got = edge_scale(dag, layer, weights, acts, mode, "layer")
            if name.startswith("pool") and mode == "weight":
                assert got == 1.0
            else:
                assert got == pytest.approx(brute_scale(dag, layer, weights, acts, mode), rel=1e-6), (
                    name,
                    mode,
                )
    glob = edge_scale(dag, dag.layer("fc2"), weights, acts, "weight", "global")
    assert glob == pytest.approx(max(float(np.abs(v["weight"]).max()) for v in weights.values()))
    glob_c = edge_scale(dag, dag.layer("fc2"), weights, acts, "contribution", "global")
    assert glob_c >= edge_scale(dag, dag.layer("conv2"), weights, acts, "contribution", "layer")
    assert edge_scale(dag, dag.layer("fc1"), None, None, "weight", "layer") == 1.0  # nothing yet: never 0


def _traced(file: str, cls: str, shape: tuple[int, ...], seed: int):
    from convscope.models.loader import load_model
    from convscope.models.trace import activations, trace

    torch.manual_seed(seed)
    model = load_model(f"{NETS / file}:{cls}")
    module = sys.modules[type(model).__module__]
    if hasattr(module, "randomize_batch_norm"):
        module.randomize_batch_norm(model, seed)
    t = trace(model, shape)
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(seed + 10))
    return model, t, activations(t, x), x


@pytest.mark.parametrize(
    ("file", "cls", "shape"),
    [
        ("small_resnet.py", "SmallResNet", (3, 32, 32)),
        ("separable.py", "Separable", (3, 16, 16)),
        ("inception.py", "Inception", (3, 12, 12)),
    ],
)
def test_traced_edge_values_and_scales(file, cls, shape):
    """On traced networks every edge value is what its op applies (weights where learned: their sum with
    the inputs is torch's conv / linear output; +-1 for adds, 1 / n for averages, the selector for max
    pooling), and every layer's scale is the brute-force maximum over all of its edges."""
    _, t, acts, _ = _traced(file, cls, shape, 5)
    dag, w = t.dag, t.weights
    rng = np.random.default_rng(6)
    kinds = set()
    for layer in dag.layers[1:]:
        kinds.add(layer.kind)
        for mode in ("weight", "contribution"):
            got = edge_scale(dag, layer, w, acts.flat, mode, "layer")
            want = brute_scale(dag, layer, w, acts.flat, mode)
            assert got == pytest.approx(want, rel=1e-5) or (want == 0 and got == 1.0), (layer.name, mode)
        for n in sample_nodes(layer, rng, 4):
            e = incoming(dag, n, w)
            v = edge_values(e, w, acts.flat, "contribution")
            if layer.kind in ("add", "concat") or (layer.kind == "pool" and layer.inputs[0].pool != "max"):
                # the terms add up to the op's own result: the layer's value where its chain is empty
                pre = float(v.astype(np.float64).sum())
                if not layer.chain:
                    assert pre == pytest.approx(float(acts.flat[n]), rel=1e-4, abs=1e-5), (layer.name, n)
    assert {"conv", "dense", "pool"} <= kinds


def test_traced_conv_terms_equal_torch():
    """Sum of weight x input over a traced conv node's edges (stride 2, groups, 1x1 shortcuts) is torch's
    convolution at that position."""
    model, t, acts, x = _traced("separable.py", "Separable", (3, 16, 16), 7)
    dag = t.dag
    with torch.no_grad():
        stem = F.relu(model.stem(x))
        ref = {"depthwise": model.depthwise(stem)[0], "pointwise": None}
        dw = model.act1(model.bn1(ref["depthwise"][None]))
        ref["pointwise"] = model.pointwise(dw)[0]
    rng = np.random.default_rng(8)
    for name in ("depthwise", "pointwise"):
        layer = dag.layer(name)
        bias = t.weights[name].get("bias")
        for n in sample_nodes(layer, rng, 8):
            e = incoming(dag, n, t.weights)
            z = float(edge_values(e, t.weights, acts.flat, "contribution").astype(np.float64).sum())
            c, y, xx = np.unravel_index(n - layer.start, layer.shape)
            z += float(bias[c]) if bias is not None else 0.0
            assert z == pytest.approx(float(ref[name][c, y, xx]), rel=1e-4, abs=1e-5), (name, n)
