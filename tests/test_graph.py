"""NetSpec and layout: node counts, id ranges, round trips and geometry (pure numpy, no GL, no torch)."""

import numpy as np
import pytest
from convscope.engine.graph.layout import build_layout
from convscope.engine.graph.spec import LayerSpec, NetSpec, synthetic_spec
from convscope.models.specs import LENET_LAYERS as LENET
from convscope.models.specs import MLP_LAYERS as MLP


def test_lenet_and_mlp_node_counts_and_ranges():
    lenet = NetSpec.build("lenet", LENET)
    assert lenet.total_nodes == 9134
    assert [(x.start, x.stop) for x in lenet.layers] == [
        (0, 1024),
        (1024, 5728),
        (5728, 6904),
        (6904, 8504),
        (8504, 8904),
        (8904, 9024),
        (9024, 9124),
        (9124, 9134),
    ]
    assert NetSpec.build("mlp", MLP).total_nodes == 1194


def test_layer_of_finds_the_owner_of_every_boundary_id():
    spec = NetSpec.build("lenet", LENET)
    for layer in spec.layers:
        assert spec.layer_of(layer.start).name == layer.name
        assert spec.layer_of(layer.stop - 1).name == layer.name
    with pytest.raises(IndexError):
        spec.layer_of(spec.total_nodes)


def test_spec_round_trips_through_a_plain_dict():
    spec = NetSpec.build("lenet", LENET)
    assert NetSpec.from_dict(spec.to_dict()) == spec


def test_bad_specs_are_refused_with_the_layer_named():
    with pytest.raises(ValueError, match="conv9"):
        LayerSpec("conv9", "deconv", (1, 2, 2))
    with pytest.raises(ValueError, match="expected 0"):
        NetSpec("x", (LayerSpec("a", "fc", (3,), start=5),))


def test_layout_places_every_node_once_and_keeps_layers_apart():
    spec = NetSpec.build("lenet", LENET)
    lay = build_layout(spec)
    assert lay.positions.shape == (9134, 3) and lay.positions.dtype == np.float32
    assert len(np.unique(lay.positions.round(3), axis=0)) == 9134  # no two nodes on one spot
    heights = [np.unique(lay.positions[x.start : x.stop, 1]) for x in spec.layers]
    assert all(len(h) == 1 for h in heights)  # each layer is one horizontal sheet
    assert np.all(np.diff([h[0] for h in heights]) > 0)  # stacked upward in network order
    assert np.array_equal(np.bincount(lay.layer_index), [x.count for x in spec.layers])


def test_feature_maps_are_square_grids_side_by_side_and_upright():
    spec = NetSpec.build("lenet", LENET)
    lay = build_layout(spec)
    conv1 = lay.positions[spec.layer("conv1").start : spec.layer("conv1").stop].reshape(6, 28, 28, 3)
    # Within a map: columns along +X, rows along +Z with unit pitch.
    assert np.allclose(np.diff(conv1[0, 0, :, 0]), 1.0)
    assert np.allclose(np.diff(conv1[0, :, 0, 2]), 1.0)
    # Maps of one layer side by side along X, not overlapping.
    assert np.all(conv1[1:, :, :, 0].min(axis=(1, 2)) > conv1[:-1, :, :, 0].max(axis=(1, 2)))


def test_hiding_a_layer_closes_the_gap():
    spec = NetSpec.build("mlp", MLP)
    full = build_layout(spec)
    hidden = build_layout(spec, visible=[True, False, True, True])
    h_full = full.layer_bounds[:, 0, 1]
    h_hidden = hidden.layer_bounds[:, 0, 1]
    assert np.ptp(h_hidden) < np.ptp(h_full)


@pytest.mark.parametrize("n", [100_000, 1_000_000])
def test_synthetic_specs_have_about_the_asked_size(n):
    spec = synthetic_spec(n)
    assert 0.8 * n <= spec.total_nodes <= n
    lay = build_layout(spec)
    assert lay.positions.shape == (spec.total_nodes, 3)
