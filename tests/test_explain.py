"""A node's calculation (engine/graph/explain.py, on a Dag) against torch: weighted sums, bias,
pre-activation, activation, pool winners and the softmax, for several nodes of every kind of the LeNet
and the MLP (their NetSpecs through to_dag), and of traced networks (batch norm, residual adds,
depthwise convs, concat, dilation, average and adaptive pooling, masked weights, log_softmax).
Also: a blank drawing gives finite numbers and no 'nan' in the text.
Run: python -m pytest tests/test_explain.py -q
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convscope.engine.graph.explain import explain, fmt, formula_lines, node_label, position_text
from convscope.engine.graph.spec import NetSpec
from convscope.models.nets import build

torch.set_num_threads(1)
TOL = dict(rel=1e-5, abs=2e-5)  # float64 sums of float32 numbers vs torch's float32 kernels


def setup(name: str, seed: int, image: np.ndarray):
    torch.manual_seed(seed)
    model = build(name).eval()
    spec = NetSpec.build(name, model.describe()).to_dag()
    with torch.no_grad():
        acts = model.forward_all(torch.from_numpy(image)[None, None])
    flat = np.concatenate([acts[layer.name].reshape(-1).numpy() for layer in spec.layers]).astype(np.float32)
    weights = {
        layer.name: {k: getattr(getattr(model, layer.name), k).detach().numpy() for k in ("weight", "bias")}
        for layer in spec.layers
        if layer.kind in ("conv", "dense")
    }
    return model, spec, acts, flat, weights


def digit(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), np.float32)
    img[5:23, 12:17] = rng.random((18, 5), dtype=np.float32)
    img[8:11, 6:22] = 1.0
    return img


def nodes_of(layer, rng, n=5) -> list[int]:
    return sorted({layer.start, layer.stop - 1, *rng.integers(layer.start, layer.stop, n).tolist()})


@pytest.mark.parametrize("seed", [0, 1])
def test_lenet_nodes_match_torch(seed):
    model, spec, acts, flat, weights = setup("lenet", seed, digit(seed))
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        pre_conv1 = F.conv2d(acts["input"], model.conv1.weight, model.conv1.bias)[0]
        pre_conv2 = F.conv2d(acts["pool1"], model.conv2.weight, model.conv2.bias)[0]
        pre_fc1 = model.fc1(acts["pool2"].flatten(1))[0]
        pre_fc2 = model.fc2(acts["fc1"])[0]
        logits = acts["output"][0]
        probs = torch.softmax(logits, 0)
        _, idx1 = F.max_pool2d(acts["conv1"], 2, return_indices=True)
        _, idx2 = F.max_pool2d(acts["conv2"], 2, return_indices=True)
    checked = set()
    for name, pre in (("conv1", pre_conv1), ("conv2", pre_conv2)):
        layer = spec.layer(name)
        below = spec.layers[spec.index(name) - 1]
        conv = getattr(model, name)
        for node in nodes_of(layer, rng):
            e = explain(spec, node, flat, weights)
            c, y, x = e.channel, e.y, e.x
            assert e.kind == "conv" and len(e.terms) == below.shape[0] * 25
            assert e.pre_activation == pytest.approx(float(pre[c, y, x]), **TOL)
            assert e.bias == pytest.approx(float(conv.bias[c].detach()))
            assert e.weighted_sum + e.bias == pytest.approx(e.pre_activation)
            assert e.result == pytest.approx(max(0.0, float(pre[c, y, x])), **TOL)
            assert e.value == float(acts[name][0, c, y, x])
            # The patch, the filter and their product, as torch indexes them.
            patch = acts[below.name][0, :, y : y + 5, x : x + 5].numpy()
            np.testing.assert_array_equal(e.patch, patch)
            np.testing.assert_array_equal(e.filter, conv.weight[c].detach().numpy())
            np.testing.assert_allclose(e.product, patch * conv.weight[c].detach().numpy(), rtol=1e-6)
            assert float(e.product.astype(np.float64).sum()) == pytest.approx(e.weighted_sum, **TOL)
            checked.add(name)
    for name, pre in (("fc1", pre_fc1), ("fc2", pre_fc2), ("output", logits)):
        layer = spec.layer(name)
        for node in nodes_of(layer, rng):
            e = explain(spec, node, flat, weights)
            u = e.unit
            assert e.pre_activation == pytest.approx(float(pre[u]), **TOL)
            if name == "output":
                assert e.activation == "softmax" and e.label == str(u)
                assert e.result == pytest.approx(float(probs[u]), rel=1e-5, abs=1e-7)
                np.testing.assert_allclose(e.probabilities, probs.numpy(), rtol=1e-4, atol=1e-7)
                assert e.probabilities.sum() == pytest.approx(1.0)
                assert e.probability == pytest.approx(e.result)
                assert e.output_kind == "logits" and e.value == float(logits[u])
            else:
                assert e.result == pytest.approx(max(0.0, float(pre[u])), **TOL)
            top = e.top_terms(5)
            assert list(np.abs(e.terms[top])) == sorted(np.abs(e.terms), reverse=True)[:5]
            checked.add(name)
    for name, idx in (("pool1", idx1), ("pool2", idx2)):
        layer = spec.layer(name)
        below = spec.layers[spec.index(name) - 1]
        for node in nodes_of(layer, rng):
            e = explain(spec, node, flat, weights)
            c, y, x = e.channel, e.y, e.x
            assert e.result == float(acts[name][0, c, y, x]) and e.pool == "max"
            win = int(idx[0, c, y, x])  # flat index in torch's (H, W) map of the layer below
            if e.ties == 0:
                assert e.winner_node == below.start + c * below.shape[1] * below.shape[2] + win
            assert e.window.max() == e.result and e.window.reshape(-1)[e.winner] == e.result
            checked.add(name)
    e = explain(spec, spec.layer("input").start + 5 * 32 + 17, flat, weights)
    assert e.kind == "input" and e.value == float(acts["input"][0, 0, 5, 17]) and formula_lines(e)
    assert checked == {x.name for x in spec.layers[1:]}


def test_mlp_nodes_match_torch():
    model, spec, acts, flat, weights = setup("mlp", 3, digit(3))
    rng = np.random.default_rng(3)
    with torch.no_grad():
        pre = {
            "fc1": model.fc1(acts["input"].flatten(1))[0],
            "fc2": model.fc2(acts["fc1"])[0],
            "output": acts["output"][0],
        }
        probs = torch.softmax(acts["output"][0], 0)
    for name in ("fc1", "fc2", "output"):
        for node in nodes_of(spec.layer(name), rng):
            e = explain(spec, node, flat, weights)
            assert len(e.terms) == spec.layers[spec.index(name) - 1].count
            assert e.pre_activation == pytest.approx(float(pre[name][e.unit]), **TOL)
            if name == "output":
                assert e.result == pytest.approx(float(probs[e.unit]), rel=1e-5, abs=1e-7)


def test_blank_drawing_is_finite_and_text_has_no_nan():
    model, spec, acts, flat, weights = setup("lenet", 0, np.zeros((28, 28), np.float32))
    rng = np.random.default_rng(4)
    for layer in spec.layers:
        for node in nodes_of(layer, rng, 3):
            e = explain(spec, node, flat, weights)
            numbers = [e.value, e.result, e.pre_activation, e.bias, e.weighted_sum]
            assert all(v is None or np.isfinite(v) for v in numbers), (layer.name, numbers)
            for a in (e.terms, e.patch, e.product, e.window, e.probabilities, e.outputs):
                assert a is None or np.isfinite(a).all()
            text = " ".join(formula_lines(e)) + position_text(e)
            assert "nan" not in text.lower() and "inf" not in text.lower(), text
            if layer.name == "conv1":
                assert (e.patch == 0).all() and e.pre_activation == e.bias  # blank input: zeros in, bias out
            if layer.kind == "pool":
                assert e.ties == 3 or e.result > 0  # all-equal window: the first wins, the text says so
    assert fmt(float("nan")) == "-" and fmt(None) == "-" and fmt(0.0) == "0"


def test_missing_weights_are_an_error_not_a_crash():
    _, spec, _, flat, _ = setup("lenet", 0, digit(0))
    with pytest.raises(ValueError, match="no weights"):
        explain(spec, spec.layer("fc1").start, flat, None)
    # Pool and input nodes need no weights.
    assert explain(spec, spec.layer("pool1").start, flat, None).kind == "pool"
    assert node_label(spec, spec.layer("pool2").start + 25 + 5 + 2) == "pool2 c1 (2, 1)"
    assert node_label(spec, spec.layer("fc1").start + 41) == "fc1 #41"


# -- traced networks: every op kind the tracer makes, against torch's own layers --------------------------

NETS = Path(__file__).parent / "nets"
TRACED = [
    ("small_resnet.py", "SmallResNet", (3, 32, 32)),  # batch norm, residual adds, stride-2 1x1, adaptive avg
    ("separable.py", "Separable", (3, 16, 16)),  # depthwise (groups), ReLU6 as clamp, a mean as a pool
    ("inception.py", "Inception", (3, 12, 12)),  # concat, dilation, 1x3 kernel, padded max pool, permute
    ("lenet5.py", "LeNet5", (1, 32, 32)),  # masked (computed) conv weights, avg pool, transpose + flatten
    ("mnist_net.py", "Net", (1, 28, 28)),  # dropout as identity, log_softmax output
]


@pytest.mark.parametrize(("file", "cls", "shape"), TRACED)
def test_traced_nodes_match_torch(file, cls, shape):
    """Sample nodes of every layer: the explained result equals torch's value for that layer (the
    model's own `reference`), a conv node's pre-activation equals F.conv2d with the layer's applied
    weight, stride, padding, dilation and groups, its patch x filter sums to its weighted sum, and the
    output layer's probabilities are those of the network."""
    import sys

    from convscope.models.loader import load_model
    from convscope.models.trace import activations, trace

    torch.manual_seed(11)
    model = load_model(f"{NETS / file}:{cls}")
    module = sys.modules[type(model).__module__]
    if hasattr(module, "randomize_batch_norm"):
        module.randomize_batch_norm(model, 3)
    t = trace(model, shape)
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(12))
    acts = activations(t, x)
    dag, w = t.dag, t.weights
    with torch.no_grad():
        ref = {k: v.reshape(-1).numpy() for k, v in model.reference(x).items()}
    rng = np.random.default_rng(13)
    kinds = set()
    for layer in dag.layers:
        for node in nodes_of(layer, rng, 4):
            e = explain(dag, node, acts.flat, w)
            kinds.add(e.kind)
            want = float(ref[layer.name][node - layer.start])
            assert e.value == pytest.approx(want, rel=1e-5, abs=1e-5), (layer.name, node)
            assert e.result == pytest.approx(want, rel=1e-4, abs=2e-5), (layer.name, node, formula_lines(e))
            text = " ".join(formula_lines(e)) + position_text(e)
            assert "nan" not in text.lower(), text
            assert len(e.source_names) == len(e.sources)
            if e.kind == "conv" and not layer.inputs[0].steps:
                es = layer.inputs[0]
                src = torch.from_numpy(acts.layers[es.source].copy())[None]
                weight = torch.from_numpy(np.ascontiguousarray(w[layer.name]["weight"]))
                bias = w[layer.name].get("bias")
                z = F.conv2d(
                    src,
                    weight,
                    None if bias is None else torch.from_numpy(np.ascontiguousarray(bias)),
                    es.stride,
                    es.padding,
                    es.dilation,
                    es.groups,
                )[0]
                want_z = float(z[e.channel, e.y, e.x])
                assert e.pre_activation == pytest.approx(want_z, **TOL), (layer.name, node)
                cin = es.in_shape[0] // es.groups
                assert e.patch.shape == e.filter.shape == (min(cin, 64), *es.kernel)
                np.testing.assert_array_equal(e.filter, w[layer.name]["weight"][e.channel][: len(e.filter)])
                if cin <= 64:
                    assert float(e.product.astype(np.float64).sum()) == pytest.approx(e.weighted_sum, **TOL)
            if e.kind in ("conv", "dense"):
                assert float(e.terms.sum()) == pytest.approx(e.weighted_sum, **TOL)
            if layer.name == dag.output:
                np.testing.assert_allclose(e.probabilities, acts.probabilities, rtol=1e-4, atol=1e-7)
                assert e.label == str(e.unit)
    assert {"input", "conv", "dense"} <= kinds


def test_node_labels_of_many_nodes_equal_one_by_one():
    from convscope.engine.graph.explain import node_labels
    from gl_helpers import lenet_spec

    dag = lenet_spec().to_dag()
    nodes = np.random.default_rng(0).integers(0, dag.total_nodes, 300)
    assert node_labels(dag, nodes) == tuple(node_label(dag, int(n)) for n in nodes)
