"""Layout of any network (engine/graph/layout.py, pure numpy): the shipped LeNet / MLP placed exactly as
before, traced models of tests/nets/ and a synthetic 80-layer residual Dag laid out with no two layers
overlapping, branches side by side on one level, skip connections as arcs that clear every layer they
pass, deep networks folded into columns, wide layers wrapped, opaque layers framed."""

from pathlib import Path

import numpy as np
import pytest
from convscope.engine.camera import OrbitCamera
from convscope.engine.graph.layout import LayoutStyle, build_layout
from convscope.models.specs import lenet_spec, mlp_spec
from layout_nets import deep_dag, wide_dag, wide_maps_dag

DATA = Path(__file__).resolve().parent / "data"
NETS = Path(__file__).resolve().parent / "nets"
TRACED = {
    "lenet5": ("lenet5.py:LeNet5", (1, 32, 32)),
    "mnist_net": ("mnist_net.py:Net", (1, 28, 28)),
    "small_resnet": ("small_resnet.py:SmallResNet", (3, 32, 32)),
    "inception": ("inception.py:Inception", (3, 16, 16)),
    "separable": ("separable.py:Separable", (3, 16, 16)),
    "with_roll": ("odd.py:WithRoll", (1, 8, 8)),
}


@pytest.fixture(scope="module")
def traced() -> dict:
    pytest.importorskip("torch")
    from convscope.models.loader import load_model
    from convscope.models.trace import trace

    return {name: trace(load_model(str(NETS / spec)), shape).dag for name, (spec, shape) in TRACED.items()}


def overlapping(layout, shown=None) -> list[tuple[str, str]]:
    """Pairs of shown layers whose boxes (node extents included) intersect."""
    b = layout.layer_bounds
    idx = range(len(b)) if shown is None else shown
    names = [x.name for x in layout.spec.layers]
    bad = []
    for i in idx:
        for j in idx:
            if i < j and np.all(b[i, 0] < b[j, 1] - 1e-3) and np.all(b[j, 0] < b[i, 1] - 1e-3):
                bad.append((names[i], names[j]))
    return bad


def check_sane(layout) -> None:
    spec = layout.spec
    assert layout.positions.shape == (spec.total_nodes, 3) and layout.positions.dtype == np.float32
    assert np.isfinite(layout.positions).all()
    assert np.array_equal(
        np.bincount(layout.layer_index, minlength=len(spec.layers)), [x.count for x in spec.layers]
    )
    for i, x in enumerate(spec.layers):
        pos = layout.positions[x.start : x.stop]
        assert np.ptp(pos[:, 1]) == 0, f"{x.name} is not one horizontal sheet"
        half = layout.sizes[x.start : x.stop, None] / 2
        np.testing.assert_allclose(layout.layer_bounds[i, 0], (pos - half).min(0), atol=1e-3, err_msg=x.name)
        np.testing.assert_allclose(layout.layer_bounds[i, 1], (pos + half).max(0), atol=1e-3, err_msg=x.name)
    assert overlapping(layout) == []


def check_arcs_clear_layers(layout) -> None:
    """Each arc starts on its source's side, ends on its target's, and where it passes a level in
    between it is outside every layer of that level."""
    b = layout.layer_bounds
    for arc in layout.arcs:
        p = arc.points
        for end, layer in ((p[0], arc.source), (p[-1], arc.target)):
            side = b[layer, 1 if arc.side > 0 else 0, 0]
            assert abs(end[0] - side) < 1e-3 and b[layer, 0, 1] - 1e-3 <= end[1] <= b[layer, 1, 1] + 1e-3
        y0, y1 = b[arc.source, 0, 1], b[arc.target, 0, 1]
        for i in range(len(b)):
            yi = b[i, 0, 1]
            if i in (arc.source, arc.target) or not y0 < yi < y1:
                continue
            # the arc's x where it crosses the height of layer i (the band is monotone in y)
            k = np.searchsorted(p[:, 1], yi)
            x = p[min(k, len(p) - 1), 0]
            assert not b[i, 0, 0] <= x <= b[i, 1, 0], (
                f"arc {arc.source}->{arc.target} runs through {layout.spec.layers[i].name}"
            )


# -- the shipped networks look as before -----------------------------------------------------------------


@pytest.mark.parametrize("name, make", [("lenet", lenet_spec), ("mlp", mlp_spec)])
def test_harley_networks_are_placed_exactly_as_before(name, make):
    """Positions stored from the chain-only layout this one replaces."""
    ref = np.load(DATA / "harley_layouts.npz")
    spec = make()
    lay = build_layout(spec)
    np.testing.assert_allclose(lay.positions, ref[f"{name}_positions"], atol=1e-4)
    np.testing.assert_array_equal(lay.sizes, ref[f"{name}_sizes"])
    np.testing.assert_allclose(lay.layer_bounds, ref[f"{name}_layer_bounds"], atol=1e-4)
    hidden = build_layout(spec, visible=[i != 1 for i in range(len(spec.layers))])
    np.testing.assert_allclose(hidden.positions, ref[f"{name}_hidden1_positions"], atol=1e-4)
    assert lay.arcs == () and lay.links == () and lay.frames == ()


def chain_dag(spec):
    """The NetSpec as a Dag (each layer reads the one before; fc / output layers are dense), as the
    render side's NetSpec -> Dag conversion makes it."""
    from convscope.engine.graph.dag import Dag, DagLayer, EdgeSet

    kinds = {"fc": "dense", "output": "dense"}
    layers = []
    for x in spec.layers:
        inputs = (EdgeSet("dense", layers[-1].name, layers[-1].shape),) if layers else ()
        layers.append(DagLayer(x.name, kinds.get(x.kind, x.kind), x.shape, inputs=inputs))
    return Dag.build(spec.model, layers, output=spec.layers[-1].name)


@pytest.mark.parametrize("name, make", [("lenet", lenet_spec), ("mlp", mlp_spec)])
def test_harley_networks_as_dags_are_placed_as_before_too(name, make):
    ref = np.load(DATA / "harley_layouts.npz")
    lay = build_layout(chain_dag(make()))
    np.testing.assert_allclose(lay.positions, ref[f"{name}_positions"], atol=1e-4)
    np.testing.assert_array_equal(lay.sizes, ref[f"{name}_sizes"])


# -- traced models ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TRACED))
def test_traced_models_are_laid_out_without_overlaps(traced, name):
    lay = build_layout(traced[name])
    check_sane(lay)
    check_arcs_clear_layers(lay)
    if lay.levels.max() + 1 < 2 * LayoutStyle().min_column_levels:
        assert lay.links == (), "a short network stays one column"
    lo, hi = lay.bounds
    assert np.all(lo <= lay.layer_bounds[:, 0].min(0)) and np.all(hi >= lay.layer_bounds[:, 1].max(0))


def test_lenet5_is_a_straight_stack(traced):
    lay = build_layout(traced["lenet5"])
    centres = lay.layer_bounds.mean(axis=1)
    np.testing.assert_allclose(centres[:, 0], 0, atol=1e-3)
    assert np.all(np.diff(centres[:, 1]) > 0)
    assert lay.arcs == () and lay.links == ()


def test_inception_towers_stand_side_by_side_and_join_by_arcs(traced):
    dag = traced["inception"]
    lay = build_layout(dag)
    idx = {x.name: i for i, x in enumerate(dag.layers)}
    first = ["b1", "b2_reduce", "b3_dilated", "b3_wide", "b4_pool"]
    rows = lay.layer_bounds[[idx[n] for n in first]]
    assert len({float(y) for y in rows[:, 0, 1]}) == 1, "the five branches share one level"
    assert np.all(rows[1:, 0, 0] > rows[:-1, 1, 0]), "left to right in network order, apart"
    # Each second stage stands over its own first stage.
    for top, bottom in (("b2", "b2_reduce"), ("b4", "b4_pool")):
        assert lay.layer_center(idx[top])[0] == pytest.approx(lay.layer_center(idx[bottom])[0], abs=1e-3)
        assert lay.levels[idx[top]] == lay.levels[idx[bottom]] + 1
    arcs = {(dag.layers[a.source].name, dag.layers[a.target].name, a.kind) for a in lay.arcs}
    assert arcs == {("b1", "cat", "concat"), ("b3_dilated", "cat", "concat"), ("b3_wide", "cat", "concat")}


def test_resnet_shortcuts_sit_beside_the_spine_and_skips_are_arcs(traced):
    dag = traced["small_resnet"]
    lay = build_layout(dag)
    idx = {x.name: i for i, x in enumerate(dag.layers)}
    spine = [x.name for x in dag.layers if "shortcut" not in x.name]
    np.testing.assert_allclose([lay.layer_center(idx[n])[0] for n in spine], 0, atol=1e-3)
    for b in ("block2", "block3"):
        conv1, short = idx[f"{b}.conv1"], idx[f"{b}.shortcut.0"]
        assert lay.levels[conv1] == lay.levels[short]
        assert lay.layer_bounds[short, 0, 0] > lay.layer_bounds[conv1, 1, 0]  # to its right
    arcs = {(dag.layers[a.source].name, dag.layers[a.target].name) for a in lay.arcs}
    assert arcs == {
        ("conv", "block1.add"),
        ("block2.shortcut.0", "block2.add"),
        ("block3.shortcut.0", "block3.add"),
    }


def test_an_opaque_layer_is_framed(traced):
    dag = traced["with_roll"]
    lay = build_layout(dag)
    (i, frame), *rest = lay.frames
    assert rest == [] and dag.layers[i].kind == "opaque"
    lo, hi = lay.layer_bounds[i]
    assert np.all(frame[:, [0, 2]].min(0) < lo[[0, 2]]) and np.all(frame[:, [0, 2]].max(0) > hi[[0, 2]])
    assert np.allclose(frame[0], frame[-1])  # closed


def test_hidden_layers_take_no_level_and_no_arc(traced):
    dag = traced["small_resnet"]
    idx = {x.name: i for i, x in enumerate(dag.layers)}
    vis = [True] * len(dag.layers)
    vis[idx["block2.shortcut.0"]] = False
    vis[idx["block3.conv1"]] = False
    full, hid = build_layout(dag), build_layout(dag, visible=vis)
    assert np.ptp(hid.layer_bounds[:, :, 1]) < np.ptp(full.layer_bounds[:, :, 1])
    assert not any(idx["block2.shortcut.0"] in (a.source, a.target) for a in hid.arcs)
    assert overlapping(hid, [i for i, v in enumerate(vis) if v]) == []


# -- deep and wide ---------------------------------------------------------------------------------------


def test_eighty_layers_fold_into_columns_that_fit_a_window():
    dag = deep_dag(80)
    assert len(dag.layers) == 80
    lay = build_layout(dag)
    check_sane(lay)
    check_arcs_clear_layers(lay)
    # One column would be a needle; folded, the whole is near the target aspect.
    lo, hi = lay.bounds
    w, h = hi[0] - lo[0], hi[1] - lo[1]
    assert 0.6 <= w / h <= 3.0, (w, h)
    assert len(lay.links) >= 1
    columns = len(lay.links) + 1
    # Every skip arc stays in one column: both ends' spines within the arc's own column.
    for arc in lay.arcs:
        assert abs(lay.layer_center(arc.source)[0] - lay.layer_center(arc.target)[0]) < w / columns / 2
    # A link leaves the top of one column and enters the bottom of the next.
    for link in lay.links:
        assert lay.levels[link.target] == lay.levels[link.source] + 1
        assert lay.layer_center(link.target)[0] > lay.layer_center(link.source)[0]
        assert lay.layer_center(link.target)[1] < lay.layer_center(link.source)[1]
    # Every block's identity skip is an arc.
    adds = [i for i, x in enumerate(dag.layers) if x.kind == "add"]
    assert {a.target for a in lay.arcs} == set(adds)


@pytest.mark.parametrize("n_layers", [8, 20, 80])
def test_fitted_layers_stay_apart_on_screen(n_layers):
    """Fit all, 1280 x 720: every layer's centre is on screen and consecutive levels of one column are
    at least 10 px apart (so their names do not run into each other)."""
    dag = deep_dag(n_layers)
    lay = build_layout(dag)
    cam = OrbitCamera()
    cam.fit(*lay.bounds, 1280 / 720)
    centres = np.array([lay.layer_center(i) for i in range(len(dag.layers))])
    px = cam.project(centres, 1280, 720)
    assert np.all((px >= 0) & (px < [1280, 720])), "a layer is off screen when fitted"
    order = np.argsort(lay.levels, kind="stable")
    for a, b in zip(order[:-1], order[1:], strict=True):
        if lay.levels[b] == lay.levels[a] + 1 and abs(centres[a, 0] - centres[b, 0]) < 1e-3:
            assert abs(px[a, 1] - px[b, 1]) >= 10, (dag.layers[a].name, dag.layers[b].name, px[a], px[b])


def test_a_layer_of_thousands_of_units_wraps_into_a_near_square_grid():
    dag = wide_dag((4096, 300))
    lay = build_layout(dag)
    check_sane(lay)
    lo, hi = lay.layer_bounds[1]
    assert 0.8 <= (hi[0] - lo[0]) / (hi[2] - lo[2]) <= 1.25
    assert len(np.unique(lay.positions[dag.layers[1].start : dag.layers[1].stop, 2])) == 64
    # Below square_from a layer keeps Harley's long rows (the MLP's 300 units: two rows of 150).
    fc1 = dag.layers[2]
    assert len(np.unique(lay.positions[fc1.start : fc1.stop, 2])) == 2


def test_a_layer_wider_than_the_network_is_tall_wraps_its_maps():
    dag = wide_maps_dag(16, 224)
    style = LayoutStyle()
    lay = build_layout(dag, style)
    check_sane(lay)
    conv = lay.layer_bounds[1]
    rows = len(np.unique(lay.positions[dag.layers[1].start : dag.layers[1].stop : 224 * 224, 2]))
    assert rows > 1, "16 maps of 224 x 224 in one row would leave the fitted sheets slivers"
    lo, hi = lay.bounds
    assert (conv[1, 0] - conv[0, 0]) <= style.max_aspect * (hi[1] - lo[1])


def test_fly_to_a_layer_frames_it():
    lay = build_layout(deep_dag(40))
    cam = OrbitCamera()
    for i in (0, 17, 39):
        lo, hi = lay.layer_bounds[i]
        cam.fit(lo, hi, 16 / 9)
        assert np.allclose(cam.target, lay.layer_center(i))
        px = cam.project(np.array([lo, hi]), 1280, 720)
        assert np.all((px >= 0) & (px <= [1280, 720]))


def test_torchvision_resnet18_folds_at_its_downsampling_blocks():
    """The real thing (at 64 x 64 to keep the test quick; the layout does not depend on the map size
    beyond the spacing): 32 layers, 29 levels, 8 arcs, columns that start at a downsampling block."""
    torchvision = pytest.importorskip("torchvision")
    from convscope.models.trace import trace

    dag = trace(torchvision.models.resnet18(num_classes=10), (3, 64, 64)).dag
    lay = build_layout(dag)
    check_sane(lay)
    check_arcs_clear_layers(lay)
    names = [x.name for x in dag.layers]
    assert lay.levels.max() + 1 == 29 and len(lay.arcs) == 8
    assert {names[a.target] for a in lay.arcs} == {x for x in names if x.endswith(".add")}
    assert len(lay.links) >= 1
    for link in lay.links:  # a new column starts with a block's first conv (its shortcut beside it)
        assert names[link.target].endswith(".0.conv1"), names[link.target]
    for stage in ("layer2", "layer3", "layer4"):
        conv1, down = names.index(f"{stage}.0.conv1"), names.index(f"{stage}.0.downsample.0")
        assert lay.levels[conv1] == lay.levels[down]
        assert lay.layer_bounds[down, 0, 0] > lay.layer_bounds[conv1, 1, 0]


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_small_resnet_levels_are_all_readable_when_fitted(traced, size):
    """The four 16-map 32 x 32 layers at the bottom are no smear: wrapped into two even rows, and from
    the home camera every sheet on the spine is clear of the next one, each level step at least 40 % of
    the largest (before, the bottom ones were 14 px apart with sheets 13 px deep, the upper 60 px)."""
    dag = traced["small_resnet"]
    lay = build_layout(dag)
    conv = dag.layers[1]
    assert conv.name == "conv" and conv.shape == (16, 32, 32)
    rows = np.unique(lay.positions[conv.start : conv.stop : 32 * 32, 2])
    assert len(rows) == 2, rows
    w, h = size
    cam = OrbitCamera()
    cam.fit(*lay.bounds, w / h)
    spine = [i for i, x in enumerate(dag.layers) if "shortcut" not in x.name]
    near, far = [], []
    for i in spine:
        (x0, y0, z0), (x1, _, z1) = lay.layer_bounds[i]
        c = [(x0 + x1) / 2, y0, 0]
        px = cam.project(np.array([[c[0], y0, z1], [c[0], y0, z0]]), w, h)
        near.append(px[0, 1])
        far.append(px[1, 1])
    near, far = np.array(near), np.array(far)
    names = [dag.layers[i].name for i in spine]
    clear = far[:-1] - near[1:]  # screen y grows downward: the lower sheet's far edge below the next's near
    assert np.all(clear >= 3), dict(zip(names[1:], clear.round(1), strict=True))
    step = near[:-1] - near[1:]
    assert np.all(step >= 0.4 * step.max()), dict(zip(names[1:], step.round(1), strict=True))
