"""Tracing real PyTorch CNNs (models.trace): every layer's activations equal a hand-written torch
forward pass, node counts, edge counts of sample nodes of every op kind by receptive-field
arithmetic (padding borders included), and the explained numbers of sample nodes equal torch.

The models live in tests/nets/ and load through models.loader, as a user's file would.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from convscope.engine.graph.dag import Dag, incoming, layer_edge_count
from convscope.engine.graph.dag_explain import explain_node
from convscope.models.loader import load_model
from convscope.models.trace import TraceError, activations, trace

NETS = Path(__file__).resolve().parent / "nets"


def rf(o: int, k: int, s: int, p: int, n: int, d: int = 1) -> int:
    """How many taps of a window of k (stride s, padding p, dilation d) at output o fall inside n."""
    return sum(0 <= o * s - p + i * d < n for i in range(k))


def node(dag: Dag, layer: str, *index: int) -> int:
    """Node id of `index` ((c, y, x) or (unit,)) in `layer`."""
    lay = dag.layer(layer)
    return lay.start + int(np.ravel_multi_index(index, lay.shape))


def _input(shape, seed=0):
    return torch.rand((1, *shape), generator=torch.Generator().manual_seed(seed))


def check_against_reference(model, traced, x) -> None:
    """Every Dag layer equals the model's own hand-written per-layer forward within 1e-5."""
    acts = activations(traced, x)
    with torch.no_grad():
        ref = model.reference(x)
    assert sorted(ref) == sorted(acts.layers), "layers differ from the reference's"
    for name, want in ref.items():
        layer = traced.dag.layer(name)
        got = acts.layers[name]
        want = want[0].numpy().reshape(layer.shape)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=name)
        np.testing.assert_array_equal(acts.flat[layer.start : layer.stop], got.reshape(-1))
    np.testing.assert_array_equal(acts.input, x[0].numpy())


def check_explain(traced, x, per_layer: int = 4, seed: int = 0) -> int:
    """Explain a few nodes of every layer: the calculation redone in numpy equals torch's value,
    its inputs are the source nodes' activations, its weights the applied weights."""
    acts = activations(traced, x)
    rng = np.random.default_rng(seed)
    checked = 0
    for layer in traced.dag.layers:
        picks = {layer.start, layer.stop - 1, *rng.integers(layer.start, layer.stop, per_layer).tolist()}
        for n in sorted(picks):
            e = explain_node(traced.dag, n, acts.flat, traced.weights)
            assert e.value == acts.flat[n]
            np.testing.assert_allclose(
                e.result, e.value, atol=1e-5, rtol=1e-5, err_msg=f"{layer.name} node {n}"
            )
            np.testing.assert_array_equal(e.inputs, acts.flat[e.sources])
            if e.weights is not None:
                w = traced.weights[layer.name]["weight"].reshape(-1)
                np.testing.assert_array_equal(
                    e.weights, w[incoming(traced.dag, n, traced.weights).weight_index]
                )
            checked += 1
    return checked


def test_edge_arithmetic_helper():
    assert rf(0, 3, 1, 1, 10) == 2 and rf(5, 3, 1, 1, 10) == 3 and rf(9, 3, 1, 1, 10) == 2
    assert rf(0, 7, 2, 3, 224) == 4 and rf(111, 7, 2, 3, 224) == 5
    assert rf(0, 3, 1, 2, 8, d=2) == 2


# -- LeNet-5: C3 mask, scaled tanh everywhere, transpose before flatten ----------------------------------


@pytest.fixture(scope="module")
def lenet5():
    torch.manual_seed(0)
    model = load_model(f"{NETS / 'lenet5.py'}:LeNet5")
    return model, trace(model, (1, 32, 32))


def test_lenet5_layers_and_activations(lenet5):
    model, t = lenet5
    dag = t.dag
    assert [(x.name, x.kind, x.shape) for x in dag.layers] == [
        ("input", "input", (1, 32, 32)),
        ("conv1", "conv", (6, 28, 28)),
        ("avg_pool2d", "pool", (6, 14, 14)),
        ("conv2d", "conv", (16, 10, 10)),
        ("avg_pool2d_1", "pool", (16, 5, 5)),
        ("fc1", "dense", (120,)),
        ("fc2", "dense", (84,)),
        ("fc3", "dense", (10,)),
    ]
    assert dag.total_nodes == 1024 + 4704 + 1176 + 1600 + 400 + 120 + 84 + 10
    # the scaled tanh is folded into every layer, the last included
    for name in ("conv1", "conv2d", "fc1", "fc2", "fc3"):
        assert [s["op"] for s in dag.layer(name).chain] == ["mul", "div", "tanh", "mul"], name
    assert dag.output == "fc3" and dag.output_kind == "logits"
    check_against_reference(model, t, _input((1, 32, 32)))


def test_lenet5_c3_mask_edges_and_transposed_flatten(lenet5):
    model, t = lenet5
    dag, w = t.dag, t.weights
    table = sys.modules[type(model).__module__].C3_TABLE
    # the applied weight is conv2.weight * mask; its zeros are edges not drawn
    np.testing.assert_array_equal(w["conv2d"]["weight"], (model.conv2.weight * model.mask).detach().numpy())
    assert dag.layer("conv2d").inputs[0].drop_zero
    for out, ins in enumerate(table):
        e = incoming(dag, node(dag, "conv2d", out, 3, 4), w)
        assert e.count == len(ins) * 25, out
        src = dag.layer("avg_pool2d")
        assert set(((e.sources - src.start) // (14 * 14)).tolist()) == set(ins)
    assert sum(len(x) for x in table) == 60
    assert incoming(dag, node(dag, "conv1", 0, 0, 0)).count == 25  # no padding: every tap inside
    assert incoming(dag, node(dag, "avg_pool2d", 5, 13, 13)).count == 4
    # fc1 reads pool2 transposed in H and W: its input i is pool2[c, x, y] flattened (c, x, y)
    e = incoming(dag, node(dag, "fc1", 7), w)
    assert e.count == 400
    pool2 = dag.layer("avg_pool2d_1")
    want = np.arange(400).reshape(16, 5, 5).transpose(0, 2, 1).reshape(-1) + pool2.start
    np.testing.assert_array_equal(e.sources, want)
    np.testing.assert_array_equal(e.weight_index, 7 * 400 + np.arange(400))
    assert incoming(dag, node(dag, "fc3", 9)).count == 84


def test_lenet5_explain(lenet5):
    model, t = lenet5
    x = _input((1, 32, 32), seed=3)
    assert check_explain(t, x) >= 8 * 3
    # one conv2 node written out against torch: the weighted sum is conv2d without its activation
    acts = activations(t, x)
    e = explain_node(t.dag, node(t.dag, "conv2d", 6, 2, 7), acts.flat, t.weights)
    with torch.no_grad():
        p1 = torch.nn.functional.avg_pool2d(model.reference(x)["conv1"], 2)
        z = torch.nn.functional.conv2d(p1, model.conv2.weight * model.mask, model.conv2.bias)[0, 6, 2, 7]
    assert abs(e.pre_activation - float(z)) < 1e-5
    assert abs(e.bias - float(model.conv2.bias[6].detach())) < 1e-7
    assert len(e.inputs) == 4 * 25 and [op for op, _ in e.steps] == ["mul", "div", "tanh", "mul"]


# -- the classic MNIST net: dropout, log_softmax, weights from torch.save(state_dict) --------------------


@pytest.fixture(scope="module")
def mnist_net(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("w") / "mnist.pt"
    src = load_model(f"{NETS / 'mnist_net.py'}:Net")
    torch.save(src.state_dict(), path)
    model = load_model(f"{NETS / 'mnist_net.py'}:build", weights=path)  # a function returning a module
    for a, b in zip(model.state_dict().values(), src.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    return model, trace(model, (1, 28, 28))


def test_mnist_net(mnist_net):
    model, t = mnist_net
    dag = t.dag
    assert [(x.name, x.shape) for x in dag.layers] == [
        ("input", (1, 28, 28)),
        ("conv1", (32, 26, 26)),
        ("conv2", (64, 24, 24)),
        ("max_pool2d", (64, 12, 12)),
        ("fc1", (128,)),
        ("fc2", (10,)),
    ]
    assert dag.total_nodes == 784 + 21632 + 36864 + 9216 + 128 + 10
    assert dag.output_kind == "log_probabilities"
    assert [s["op"] for s in dag.layer("fc2").chain] == ["log_softmax"]
    x = _input((1, 28, 28))
    check_against_reference(model, t, x)
    acts = activations(t, x)
    with torch.no_grad():
        want = model(x).exp()[0].numpy()
    np.testing.assert_allclose(acts.probabilities, want, atol=1e-6)
    assert abs(acts.probabilities.sum() - 1) < 1e-5
    assert incoming(dag, node(dag, "conv1", 3, 0, 0)).count == 9
    assert incoming(dag, node(dag, "conv2", 3, 23, 23)).count == 32 * 9
    assert incoming(dag, node(dag, "max_pool2d", 63, 11, 11)).count == 4
    assert incoming(dag, node(dag, "fc1", 0)).count == 9216
    assert incoming(dag, node(dag, "fc2", 0)).count == 128
    check_explain(t, x)


# -- a small ResNet: batch norm, residual adds, stride-2 1x1 shortcuts ----------------------------------


@pytest.fixture(scope="module")
def small_resnet():
    torch.manual_seed(2)
    model = load_model(f"{NETS / 'small_resnet.py'}:SmallResNet")
    sys.modules[type(model).__module__].randomize_batch_norm(model)
    return model, trace(model, (3, 32, 32))


def test_small_resnet(small_resnet):
    model, t = small_resnet
    dag = t.dag
    names = [x.name for x in dag.layers]
    assert names == [
        "input", "conv", "block1.conv1", "block1.conv2", "block1.add",
        "block2.conv1", "block2.conv2", "block2.shortcut.0", "block2.add",
        "block3.conv1", "block3.conv2", "block3.shortcut.0", "block3.add", "pool", "fc",
    ]  # fmt: skip
    assert dag.layer("block1.conv1").activation == "affine -> relu"
    assert dag.layer("block1.conv2").activation == "affine"
    assert dag.layer("block2.add").activation == "relu"
    assert dag.total_nodes == 3072 + 4 * 16384 + 4 * 8192 + 4 * 4096 + 64 + 10
    add = dag.layer("block2.add")
    assert [(e.kind, e.source) for e in add.inputs] == [("add", "block2.conv2"), ("add", "block2.shortcut.0")]
    e = incoming(dag, node(dag, "block2.add", 5, 3, 4))
    assert e.count == 2 and e.edge_set.tolist() == [0, 1]
    # block1 adds its input itself: the identity shortcut reads the stem
    assert dag.layer("block1.add").inputs[1].source == "conv"
    # stride-2 1x1 shortcut: one tap per input channel at (2y, 2x)
    e = incoming(dag, node(dag, "block2.shortcut.0", 0, 15, 15))
    assert e.count == 16
    src = dag.layer("block1.add")
    assert set(((e.sources - src.start) % 1024).tolist()) == {30 * 32 + 30}
    # stride-2 3x3 with padding 1 at the borders of 32 -> 16
    for y, x in ((0, 0), (0, 7), (15, 15)):
        want = 16 * rf(y, 3, 2, 1, 32) * rf(x, 3, 2, 1, 32)
        assert incoming(dag, node(dag, "block2.conv1", 1, y, x)).count == want
    assert incoming(dag, node(dag, "pool", 63, 0, 0)).count == 64  # global average of 8x8
    x = _input((3, 32, 32))
    check_against_reference(model, t, x)
    check_explain(t, x)


# -- depthwise-separable block -------------------------------------------------------------------------


def test_depthwise_separable():
    torch.manual_seed(3)
    model = load_model(f"{NETS / 'separable.py'}:Separable")
    t = trace(model, (3, 16, 16))
    dag = t.dag
    assert [(x.name, x.kind, x.shape) for x in dag.layers] == [
        ("input", "input", (3, 16, 16)),
        ("stem", "conv", (8, 16, 16)),
        ("depthwise", "conv", (8, 8, 8)),
        ("pointwise", "conv", (16, 8, 8)),
        ("mean", "pool", (16, 1, 1)),
        ("fc", "dense", (10,)),
    ]
    assert dag.layer("depthwise").inputs[0].groups == 8
    assert dag.layer("depthwise").activation == "affine -> clamp"
    for y, x in ((0, 0), (3, 5), (7, 7)):
        e = incoming(dag, node(dag, "depthwise", 5, y, x))
        assert e.count == rf(y, 3, 2, 1, 16) * rf(x, 3, 2, 1, 16)
        assert set(((e.sources - dag.layer("stem").start) // 256).tolist()) == {5}  # its own channel only
    assert incoming(dag, node(dag, "pointwise", 9, 4, 4)).count == 8
    assert incoming(dag, node(dag, "mean", 3, 0, 0)).count == 64
    assert incoming(dag, node(dag, "fc", 0)).count == 16
    x = _input((3, 16, 16))
    ref = dict(model.reference(x))
    ref["mean"] = ref["mean"].reshape(1, 16, 1, 1)
    acts = activations(t, x)
    for name, want in ref.items():
        np.testing.assert_allclose(
            acts.layers[name].reshape(-1), want.detach().reshape(-1), atol=1e-5, err_msg=name
        )
    check_explain(t, x)


# -- Inception-style concat, dilation, a 1x3 kernel, permute + reshape before fc -------------------------


def test_inception_concat():
    torch.manual_seed(4)
    model = load_model(f"{NETS / 'inception.py'}:Inception")
    t = trace(model, (3, 12, 12))
    dag = t.dag
    cat = dag.layer("cat")
    assert cat.shape == (17, 12, 12)
    assert [(e.source, e.offset) for e in cat.inputs] == [
        ("b1", 0), ("b2", 4), ("b3_dilated", 10), ("b3_wide", 13), ("b4", 15),
    ]  # fmt: skip
    for c, src, sc in ((0, "b1", 0), (5, "b2", 1), (12, "b3_dilated", 2), (14, "b3_wide", 1), (16, "b4", 1)):
        e = incoming(dag, node(dag, "cat", c, 2, 9))
        assert e.count == 1 and e.sources[0] == node(dag, src, sc, 2, 9), c
    # dilated 3x3 (dilation 2, padding 2) and 1x3 (padding 0, 1) at the borders
    for y, x in ((0, 0), (1, 11), (6, 6)):
        want = 8 * rf(y, 3, 1, 2, 12, d=2) * rf(x, 3, 1, 2, 12, d=2)
        assert incoming(dag, node(dag, "b3_dilated", 0, y, x)).count == want
        assert incoming(dag, node(dag, "b3_wide", 1, y, x)).count == 8 * rf(x, 3, 1, 1, 12)
    assert incoming(dag, node(dag, "b4_pool", 2, 0, 0)).count == 4  # 3x3 window, padding 1, corner
    assert incoming(dag, node(dag, "b4_pool", 2, 5, 5)).count == 9
    assert incoming(dag, node(dag, "pool", 16, 1, 0)).count == 36  # adaptive 12 -> 2: 6x6
    # fc reads pool (17, 2, 2) permuted to (2, 2, 17) and flattened
    e = incoming(dag, node(dag, "fc", 3))
    pool = dag.layer("pool")
    want = np.arange(68).reshape(17, 2, 2).transpose(1, 2, 0).reshape(-1) + pool.start
    np.testing.assert_array_equal(e.sources, want)
    assert dag.total_nodes == 432 + 1152 + 576 + 576 + 864 + 432 + 288 + 1152 + 288 + 2448 + 68 + 10
    assert layer_edge_count(dag, cat) == cat.count
    x = _input((3, 12, 12))
    check_against_reference(model, t, x)
    check_explain(t, x)


# -- torchvision resnet18 at 224 -----------------------------------------------------------------------


def _resnet18_reference(m, x):
    a = {"input": x}
    a["conv1"] = x = m.relu(m.bn1(m.conv1(x)))
    a["maxpool"] = x = m.maxpool(x)
    for li in range(1, 5):
        for bi, b in enumerate(getattr(m, f"layer{li}")):
            p = f"layer{li}.{bi}"
            a[f"{p}.conv1"] = h = torch.relu(b.bn1(b.conv1(x)))
            a[f"{p}.conv2"] = h = b.bn2(b.conv2(h))
            s = x
            if b.downsample is not None:
                a[f"{p}.downsample.0"] = s = b.downsample(x)
            a[f"{p}.add"] = x = torch.relu(h + s)
    a["avgpool"] = x = m.avgpool(x)
    a["fc"] = m.fc(x.flatten(1))
    return a


@pytest.mark.slow
def test_torchvision_resnet18():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    t = trace(model, (3, 224, 224))
    dag = t.dag
    assert dag.total_nodes == 3_588_106
    assert len(dag.layers) == 32
    assert dag.layer("layer1.0.conv1").activation == "affine -> relu"
    x = _input((3, 224, 224))
    acts = activations(t, x)
    with torch.no_grad():
        ref = _resnet18_reference(model.eval(), x)
    assert sorted(ref) == sorted(acts.layers)
    for name, want in ref.items():
        np.testing.assert_allclose(
            acts.layers[name], want[0].numpy().reshape(dag.layer(name).shape), atol=1e-5, err_msg=name
        )
    # stem 7x7 stride 2 padding 3 on 224; maxpool 3x3 stride 2 padding 1 on 112
    for y, xx in ((0, 0), (0, 50), (111, 111)):
        want = 3 * rf(y, 7, 2, 3, 224) * rf(xx, 7, 2, 3, 224)
        assert incoming(dag, node(dag, "conv1", 7, y, xx)).count == want
        want = rf(y // 2, 3, 2, 1, 112) * rf(xx // 2, 3, 2, 1, 112)
        assert incoming(dag, node(dag, "maxpool", 7, y // 2, xx // 2)).count == want
    assert incoming(dag, node(dag, "layer2.0.downsample.0", 0, 27, 27)).count == 64
    assert incoming(dag, node(dag, "layer4.1.conv2", 0, 3, 3)).count == 512 * 9
    assert incoming(dag, node(dag, "layer4.1.add", 0, 3, 3)).count == 2
    assert incoming(dag, node(dag, "avgpool", 511, 0, 0)).count == 49
    assert incoming(dag, node(dag, "fc", 9)).count == 512
    check_explain(t, x, per_layer=2)


# -- the shipped networks trace like their hand-written NetSpecs ----------------------------------------


def test_shipped_nets_match_their_netspecs():
    from convscope.models.specs import lenet_spec, mlp_spec

    mlp = trace(load_model("convscope.models.nets:MLP"), (1, 28, 28))
    spec = mlp_spec()
    assert [x.count for x in mlp.dag.layers] == [x.count for x in spec.layers]
    assert mlp.dag.total_nodes == spec.total_nodes == 1194
    lenet = trace(load_model("convscope.models.nets:LeNet"), (1, 28, 28))
    spec = lenet_spec()
    # the NetSpec shows the 32x32 padded image as its input; the trace shows the 28x28 image handed
    # to the model and reads it through a zero-pad index map (conv1's border taps are not drawn)
    assert [x.count for x in lenet.dag.layers][1:] == [x.count for x in spec.layers][1:]
    assert lenet.dag.layers[0].shape == (1, 28, 28) and spec.layers[0].shape == (1, 32, 32)
    assert lenet.dag.total_nodes == spec.total_nodes - (1024 - 784)
    assert [s.op for s in lenet.dag.layer("conv1").inputs[0].steps] == ["pad"]
    assert incoming(lenet.dag, node(lenet.dag, "conv1", 0, 0, 0)).count == 9  # rows / cols 2..4 of 28


# -- what cannot be drawn, and what cannot be traced -----------------------------------------------------


def test_unknown_ops_become_labelled_pass_through():
    torch.manual_seed(5)
    model = load_model(f"{NETS / 'odd.py'}:WithRoll")
    t = trace(model, (1, 8, 8))
    dag = t.dag
    kinds = [(x.name, x.kind, x.shape) for x in dag.layers]
    assert kinds == [
        ("input", "input", (1, 8, 8)),
        ("conv", "conv", (4, 6, 6)),
        ("roll", "opaque", (4, 6, 6)),
        ("mul", "mul", (4, 6, 6)),
        ("fc", "dense", (3,)),
    ]
    assert "roll" in dag.layer("roll").label and "mul" in dag.layer("mul").label
    assert dag.layer("roll").inputs[0].source == "conv"
    assert incoming(dag, dag.layer("roll").start).count == 0
    mul = incoming(dag, node(dag, "mul", 3, 2, 5))  # x * x: the same roll node, once per input
    assert mul.sources.tolist() == [node(dag, "roll", 3, 2, 5)] * 2
    x = _input((1, 8, 8))
    acts = activations(t, x)
    with torch.no_grad():
        c = torch.relu(model.conv(x))
        r = torch.roll(c, 1, dims=3)
        np.testing.assert_allclose(acts.layers["roll"], r[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(acts.output, model(x)[0].numpy(), atol=1e-6)
    check_explain(t, x)


def test_data_dependent_control_flow_names_the_line():
    model = load_model(f"{NETS / 'odd.py'}:Branchy")
    with pytest.raises(TraceError) as err:
        trace(model, (1, 2, 2))
    msg = str(err.value)
    lines = (NETS / "odd.py").read_text().splitlines()
    lineno = next(i + 1 for i, s in enumerate(lines) if "if x.sum() > 0:" in s)
    assert "\n" not in msg
    assert "data-dependent control flow" in msg and "`if`" in msg
    assert f"odd.py:{lineno}" in msg and "if x.sum() > 0:" in msg, msg


def test_input_shape_that_does_not_fit_names_the_layer():
    model = load_model(f"{NETS / 'mnist_net.py'}:Net")
    with pytest.raises(TraceError) as err:
        trace(model, (1, 32, 32))
    msg = str(err.value)
    assert "\n" not in msg
    assert "'fc1'" in msg and "9216" in msg and "12544" in msg, msg
    with pytest.raises(TraceError, match="'conv1'.*1, H, W.*1x3x28x28"):
        trace(model, (3, 28, 28))


def test_values_read_twice_keep_their_own_layers():
    torch.manual_seed(6)
    model = load_model(f"{NETS / 'odd.py'}:Shared")
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    t = trace(model, (2, 4, 4))
    dag = t.dag
    assert [(x.name, x.kind, x.activation) for x in dag.layers] == [
        ("input", "input", "identity"),
        ("conv", "conv", "identity"),
        ("relu", "elementwise", "relu"),
        ("add", "add", "identity"),
        ("fc", "dense", "affine -> sigmoid"),  # BatchNorm1d folds per unit
    ]
    assert incoming(dag, node(dag, "relu", 2, 3, 3)).sources.tolist() == [node(dag, "conv", 2, 3, 3)]
    x = _input((2, 4, 4))
    acts = activations(t, x)
    with torch.no_grad():
        want = model(x)
        y = model.conv(x)
    np.testing.assert_allclose(acts.layers["conv"], y[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(acts.layers["add"], want["features"][0].numpy(), atol=1e-6)
    np.testing.assert_allclose(acts.output, want["logits"][0].numpy(), atol=1e-6)
    check_explain(t, x)


def test_chunk_shuffle_and_slices_are_index_maps():
    torch.manual_seed(7)
    model = load_model(f"{NETS / 'odd.py'}:Pieces")
    t = trace(model, (2, 6, 6))
    dag = t.dag
    assert [(x.name, x.kind) for x in dag.layers] == [
        ("input", "input"), ("conv", "conv"), ("left", "conv"),
        ("cat", "concat"), ("cat_1", "concat"), ("fc", "dense"),
    ]  # fmt: skip
    # left reads conv's channels 0..3 (chunk 0); cat's second input is conv's channels 4..7 (chunk 1)
    e = incoming(dag, node(dag, "left", 2, 3, 3))
    assert sorted(e.sources.tolist()) == [node(dag, "conv", c, 3, 3) for c in range(4)]
    e = incoming(dag, node(dag, "cat", 6, 1, 2))
    assert e.sources.tolist() == [node(dag, "conv", 6, 1, 2)]
    # after the shuffle (2 groups of 4), channel c of y is channel (c % 2) * 4 + c // 2 of cat
    e = incoming(dag, node(dag, "cat_1", 3 * 9 + 2 * 3 + 1))  # corner[3, 2, 1] = y[3, 4, 3]
    assert e.sources.tolist() == [node(dag, "cat", 1 * 4 + 1, 4, 3)]
    e = incoming(dag, node(dag, "cat_1", 72 + 7))  # first[1, 1] = y[0, 1, 1] = cat[0, 1, 1]
    assert e.sources.tolist() == [node(dag, "cat", 0, 1, 1)]
    x = _input((2, 6, 6))
    acts = activations(t, x)
    with torch.no_grad():
        np.testing.assert_allclose(acts.output, model(x)[0].numpy(), atol=1e-6)
    check_explain(t, x)


def test_shape_branches_fall_back_to_torch_export():
    torch.manual_seed(8)
    model = load_model(f"{NETS / 'odd.py'}:ShapeBranch")
    with pytest.raises(TraceError, match="odd.py:.*if x.shape"):
        trace(model, (3, 32, 32), backend="fx")
    t = trace(model, (3, 32, 32))
    dag = t.dag
    assert [(x.name, x.kind, x.shape, x.activation) for x in dag.layers] == [
        ("input", "input", (3, 32, 32), "identity"),
        ("max_pool2d", "pool", (3, 16, 16), "identity"),
        ("conv", "conv", (4, 16, 16), "affine -> relu"),
        ("fc", "dense", (5,), "identity"),
    ]
    # fc reads every other row and column of conv (aten.slice steps as an index map)
    e = incoming(dag, node(dag, "fc", 0))
    want = np.arange(4 * 16 * 16).reshape(4, 16, 16)[:, ::2, ::2].reshape(-1) + dag.layer("conv").start
    np.testing.assert_array_equal(e.sources, want)
    x = _input((3, 32, 32))
    acts = activations(t, x)
    with torch.no_grad():
        np.testing.assert_allclose(acts.output, model(x)[0].numpy(), atol=1e-6)
    check_explain(t, x)


@pytest.mark.parametrize(
    "spec, shape",
    [
        ("lenet5.py:LeNet5", (1, 32, 32)),
        ("mnist_net.py:Net", (1, 28, 28)),
        ("small_resnet.py:SmallResNet", (3, 32, 32)),
        ("separable.py:Separable", (3, 16, 16)),
        ("inception.py:Inception", (3, 12, 12)),
        ("odd.py:Pieces", (2, 6, 6)),
    ],
)
def test_torch_export_gives_the_same_graph_as_fx(spec, shape):
    torch.manual_seed(9)
    model = load_model(f"{NETS / spec}")
    a, b = trace(model, shape, backend="fx"), trace(model, shape, backend="export")
    da, db = a.dag.to_dict(), b.dag.to_dict()
    for d in (da, db):  # labels name what the code called: F.avg_pool2d for fx, aten.avg_pool2d for export
        for layer in d["layers"]:
            layer["label"] = ""
            for e in layer["inputs"]:
                e["label"] = ""
    assert da == db
    assert a.weights.keys() == b.weights.keys()
    for name, entry in a.weights.items():
        for key, value in entry.items():
            np.testing.assert_array_equal(value, b.weights[name][key], err_msg=f"{name} {key}")
    x = _input(shape)
    np.testing.assert_array_equal(activations(a, x).flat, activations(b, x).flat)


@pytest.mark.parametrize("spec, shape", [("odd.py:Pools", (1, 12, 12)), ("shipped", (1, 28, 28))])
def test_pool_borders_and_layer_edge_counts(spec, shape):
    torch.manual_seed(10)
    model = load_model("convscope.models.nets:LeNet" if spec == "shipped" else f"{NETS / spec}")
    t = trace(model, shape)
    x = _input(shape)
    acts = activations(t, x)
    with torch.no_grad():
        np.testing.assert_allclose(acts.output, model(x)[0].numpy().reshape(-1), atol=1e-6)
    check_explain(t, x, per_layer=12)
    for layer in t.dag.layers:  # the per-axis count agrees with counting node by node
        by_node = sum(incoming(t.dag, n).count for n in range(layer.start, layer.stop))
        assert layer_edge_count(t.dag, layer) == by_node, layer.name
    if spec != "shipped":
        avg_in, avg_out = t.dag.layer("avg_in"), t.dag.layer("avg_out")
        assert avg_in.shape == (2, 5, 5) and avg_out.shape == (2, 6, 6)  # ceil mode: one more window
        assert incoming(t.dag, avg_in.start).count == 4 and incoming(t.dag, avg_out.stop - 1).count == 1


def test_per_channel_constants_fold():
    torch.manual_seed(11)
    model = load_model(f"{NETS / 'odd.py'}:Normalized")
    t = trace(model, (3, 6, 6))
    dag = t.dag
    assert [(x.name, x.kind, x.activation) for x in dag.layers] == [
        ("input", "input", "identity"),
        ("sub", "elementwise", "sub -> div"),
        ("conv", "conv", "mul -> relu -> add"),
        ("fc", "dense", "identity"),
    ]
    np.testing.assert_array_equal(t.weights["sub"]["c0.value"], model.mean.reshape(-1).numpy())
    x = _input((3, 6, 6))
    acts = activations(t, x)
    with torch.no_grad():
        norm = (x - model.mean) / model.std
        np.testing.assert_allclose(acts.layers["sub"], norm[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(acts.output, model(x)[0].numpy(), atol=1e-6)
    np.testing.assert_array_equal(acts.input, x[0].numpy())
    check_explain(t, x, per_layer=10)
