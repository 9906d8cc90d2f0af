"""The traced-graph data (engine.graph.dag): node ids, index maps and per-node edge patterns, numpy only.

Edge counts are checked against receptive-field arithmetic, index maps against numpy's own
reshape / transpose / pad, and every layer's total against the sum over its nodes.
"""

import json

import numpy as np
import pytest
from convscope.engine.graph.dag import Dag, DagLayer, EdgeSet, MapStep, incoming, layer_edge_count, map_back


def _small_dag() -> Dag:
    conv = EdgeSet("conv", "input", (2, 6, 6), kernel=(3, 3), padding=(1, 1))
    dw = EdgeSet("conv", "conv", (4, 6, 6), kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=4)
    pool = EdgeSet("pool", "conv", (4, 6, 6), kernel=(2, 2), stride=(2, 2), pool="max")
    cat = (
        EdgeSet("concat", "dw", (4, 3, 3), dim=0, offset=0),
        EdgeSet("concat", "pool", (4, 3, 3), dim=0, offset=4),
    )
    add = (EdgeSet("add", "dw", (4, 3, 3)), EdgeSet("add", "pool", (4, 3, 3), coef=-1.0))
    # fc reads cat through a transpose of H and W and a flatten
    steps = (
        MapStep("permute", (8, 3, 3), (8, 3, 3), dims=(0, 2, 1)),
        MapStep("reshape", (8, 3, 3), (72,)),
    )
    fc = EdgeSet("dense", "cat", (72,), steps=steps)
    adapt = EdgeSet("pool", "conv", (4, 6, 6), pool="avg", adaptive=True)
    return Dag.build(
        "small",
        [
            DagLayer("input", "input", (2, 6, 6)),
            DagLayer("conv", "conv", (4, 6, 6), inputs=(conv,), chain=({"op": "relu"},)),
            DagLayer("dw", "conv", (4, 3, 3), inputs=(dw,)),
            DagLayer("pool", "pool", (4, 3, 3), inputs=(pool,)),
            DagLayer("cat", "concat", (8, 3, 3), inputs=cat),
            DagLayer("add", "add", (4, 3, 3), inputs=add),
            DagLayer("fc", "dense", (5,), inputs=(fc,)),
            DagLayer("adapt", "pool", (4, 4, 4), inputs=(adapt,)),
        ],
        output="fc",
    )


def test_node_ids_are_contiguous_and_json_round_trips():
    dag = _small_dag()
    assert [x.start for x in dag.layers] == [0, 72, 216, 252, 288, 360, 396, 401]
    assert dag.total_nodes == 401 + 64
    assert dag.layer_of(72).name == "conv" and dag.layer_of(71).name == "input"
    back = Dag.from_dict(json.loads(json.dumps(dag.to_dict())))
    assert back.to_dict() == dag.to_dict()
    assert back.layer("conv").activation == "relu"


def test_conv_edges_follow_receptive_field_with_padding_borders():
    dag = _small_dag()
    conv = dag.layer("conv")
    corner, edge, centre = conv.start, conv.start + 2, conv.start + 2 * 6 + 2
    assert incoming(dag, corner).count == 2 * 2 * 2  # 2 channels x (2 x 2 inside the map)
    assert incoming(dag, edge).count == 2 * 2 * 3
    assert incoming(dag, centre).count == 2 * 3 * 3
    e = incoming(dag, centre)
    # channel 0 at (1..3, 1..3) and channel 1 likewise; weight index (c_out=0, ci, ky, kx)
    want = sorted((c * 36 + y * 6 + x) for c in range(2) for y in range(1, 4) for x in range(1, 4))
    assert sorted(e.sources.tolist()) == want
    assert sorted(e.weight_index.tolist()) == list(range(18))


def test_depthwise_conv_reads_only_its_own_channel():
    dag = _small_dag()
    dw, src = dag.layer("dw"), dag.layer("conv")
    node = dw.start + 3 * 9 + 4  # channel 3, (1, 1): window rows / cols 1..3 of a 6x6 map
    e = incoming(dag, node)
    assert e.count == 9
    assert set(((e.sources - src.start) // 36).tolist()) == {3}
    assert sorted(e.weight_index.tolist()) == list(range(27, 36))  # weight (4, 1, 3, 3)
    assert incoming(dag, dw.start + 3 * 9).count == 4  # top-left: (-1..1) x (-1..1) -> 2 x 2


def test_concat_add_and_dense_through_index_maps():
    dag = _small_dag()
    cat, add, fc = dag.layer("cat"), dag.layer("add"), dag.layer("fc")
    e = incoming(dag, cat.start + 5 * 9 + 7)  # channel 5 comes from pool's channel 1
    assert e.sources.tolist() == [dag.layer("pool").start + 9 + 7]
    e = incoming(dag, add.start + 10)
    assert e.sources.tolist() == [dag.layer("dw").start + 10, dag.layer("pool").start + 10]
    assert e.edge_set.tolist() == [0, 1]
    e = incoming(dag, fc.start + 2)
    assert e.count == 72
    # input i of fc is element i of cat transposed in H/W, flattened
    ref = np.arange(72).reshape(8, 3, 3).transpose(0, 2, 1).reshape(-1)
    np.testing.assert_array_equal(e.sources - cat.start, ref)
    np.testing.assert_array_equal(e.weight_index, 2 * 72 + np.arange(72))


def test_map_steps_match_numpy():
    rng = np.random.default_rng(0)
    shape = (3, 4, 5)
    a = np.arange(60).reshape(shape)
    steps = (
        MapStep("permute", shape, (5, 3, 4), dims=(2, 0, 1)),
        MapStep("pad", (5, 3, 4), (5, 5, 7), pad=((0, 0), (1, 1), (2, 1))),
        MapStep("reshape", (5, 5, 7), (175,)),
    )
    ref = np.pad(a.transpose(2, 0, 1) + 1, ((0, 0), (1, 1), (2, 1))).reshape(-1) - 1  # -1 where padded
    got = map_back(steps, np.arange(175))
    np.testing.assert_array_equal(got, ref)
    idx = rng.integers(0, 175, 20)
    np.testing.assert_array_equal(map_back(steps, idx), ref[idx])


def test_slice_step_matches_numpy():
    a = np.arange(4 * 6 * 5).reshape(4, 6, 5)
    step = MapStep("slice", (4, 6, 5), (2, 3, 5), start=(1, 0, 0), step=(2, 2, 1))
    np.testing.assert_array_equal(map_back((step,), np.arange(30)), a[1::2, ::2, :].reshape(-1))
    back = MapStep.from_dict(json.loads(json.dumps(step.to_dict())))
    assert back == step


def test_pool_windows_regular_and_adaptive():
    dag = _small_dag()
    pool, adapt = dag.layer("pool"), dag.layer("adapt")
    assert incoming(dag, pool.start).count == 4
    # adaptive 6 -> 4: windows [0,2) [1,3) [3,5) [4,6): 2 x 2 each
    for o in range(16):
        assert incoming(dag, adapt.start + o).count == 4
    e = incoming(dag, adapt.start + 5)  # (1, 1): rows 1..2, cols 1..2 of channel 0
    assert sorted((e.sources - dag.layer("conv").start).tolist()) == [7, 8, 13, 14]


@pytest.mark.parametrize("name", ["conv", "dw", "pool", "cat", "add", "fc", "adapt"])
def test_layer_edge_count_is_the_sum_over_nodes(name):
    dag = _small_dag()
    layer = dag.layer(name)
    assert layer_edge_count(dag, layer) == sum(incoming(dag, n).count for n in range(layer.start, layer.stop))


def test_broadcasting_mul_reads_the_gate_of_its_channel():
    gate = EdgeSet("mul", "gate", (3, 1, 1))
    dag = Dag.build(
        "se",
        [
            DagLayer("input", "input", (3, 4, 4)),
            DagLayer("gate", "opaque", (3, 1, 1), inputs=(EdgeSet("opaque", "input", (3, 4, 4)),)),
            DagLayer("scaled", "mul", (3, 4, 4), inputs=(EdgeSet("mul", "input", (3, 4, 4)), gate)),
        ],
    )
    e = incoming(dag, dag.layer("scaled").start + 2 * 16 + 7)
    assert e.sources.tolist() == [2 * 16 + 7, 48 + 2]
    assert layer_edge_count(dag, dag.layer("scaled")) == 2 * 48


def test_zero_masked_weights_drop_edges():
    e = EdgeSet("dense", "input", (4,), drop_zero=True)
    dag = Dag.build("m", [DagLayer("input", "input", (4,)), DagLayer("fc", "dense", (2,), inputs=(e,))])
    w = {"fc": {"weight": np.array([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 3.0]], np.float32)}}
    assert incoming(dag, 4, w).sources.tolist() == [0, 2]
    assert incoming(dag, 5, w).sources.tolist() == [3]
    assert incoming(dag, 5).count == 4  # without weights every edge is there


def test_bad_layers_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        DagLayer("x", "conv", (2, 3))
    with pytest.raises(ValueError, match="unknown layer"):
        Dag.build("m", [DagLayer("a", "dense", (2,), inputs=(EdgeSet("dense", "nope", (3,)),))])
