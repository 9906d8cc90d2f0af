"""The training scene's paths follow the hover edges' rule: all of them up to EXACT_EDGES, past that
the strongest |weight x input| and a sample of the rest, with the count; and a path's |weight x input|
is its source map's sum times the pair's kernel sum, read from a real snapshot payload.  Pure numpy."""

import numpy as np
from convscope.engine.graph.edges import EXACT_EDGES
from convscope.engine.graph.layout import build_layout
from convscope.engine.graph.spec import NetSpec
from convscope.features.training.messages import SnapshotLayout, unpack
from convscope.models.revacnn import Arch, describe_arch
from convscope.scenes.train.scene import Geometry


def geometry_and_snapshot(widths: tuple[int, ...], seed: int = 0):
    spec = NetSpec.build("revacnn", describe_arch(Arch(in_channels=1, widths=widths)))
    layout = SnapshotLayout(spec)
    buf = np.random.default_rng(seed).normal(size=layout.count).astype(np.float32)
    return Geometry(build_layout(spec)), unpack(layout, buf, seq=1, version=1)


def test_contribution_is_source_sum_times_kernel_sum():
    g, snap = geometry_and_snapshot((16, 20, 20))
    sums = g.sums_vector(snap)
    c = g.path_contributions(sums, g.pairs_vector(snap))
    ia, ib = 7, 3  # pool1 map 7 -> conv2 filter 3
    k = np.flatnonzero((g.path_src == g.sum_at["pool1"] + ia) & (g.path_dst == g.sum_at["conv2"] + ib))
    assert len(k) == 1
    want = abs(float(snap.pair_weights["conv2"][ib, ia]) * float(snap.filter_sums["pool1"][ia]))
    assert np.isclose(c[k[0]], want, rtol=1e-6)
    # conv2 map 5 -> pool2 map 5: a pooling path weighs 1
    k = np.flatnonzero((g.path_src == g.sum_at["conv2"] + 5) & (g.path_dst == g.sum_at["pool2"] + 5))
    assert np.isclose(c[k[0]], abs(float(snap.filter_sums["conv2"][5])), rtol=1e-6)


def test_the_papers_net_draws_every_path():
    g, snap = geometry_and_snapshot((16, 20, 20))
    sums = g.sums_vector(snap)
    widths = g.path_widths(sums)
    out, drawn, total = g.sample_paths(widths, g.path_contributions(sums, g.pairs_vector(snap)))
    assert drawn == total == np.count_nonzero(widths) < EXACT_EDGES
    np.testing.assert_array_equal(out, widths)


def test_wide_layers_sample_paths_and_keep_the_strongest():
    g, snap = geometry_and_snapshot((96, 128, 128), seed=3)
    sums = g.sums_vector(snap)
    widths = g.path_widths(sums)
    contrib = g.path_contributions(sums, g.pairs_vector(snap))
    candidates = np.flatnonzero(widths > 0)
    assert len(candidates) > 2 * EXACT_EDGES, len(candidates)
    out, drawn, total = g.sample_paths(widths, contrib)
    kept = np.flatnonzero(out > 0)
    assert (drawn, total) == (EXACT_EDGES, len(candidates)) and len(kept) == EXACT_EDGES
    assert set(kept) <= set(candidates), "a path outside the top half of its layer's maps"
    np.testing.assert_array_equal(out[kept], widths[kept])  # widths themselves unchanged
    strongest = candidates[np.argsort(-contrib[candidates], kind="stable")[: EXACT_EDGES // 2]]
    missing = set(strongest) - set(kept)
    assert not missing, f"{len(missing)} of the {len(strongest)} strongest paths left out"
    # The rest leans toward strong paths: kept ones outweigh the candidates on average.
    assert contrib[kept].mean() > contrib[candidates].mean()
    # "all paths" draws every candidate.
    out_all, drawn_all, _ = g.sample_paths(widths, contrib, show_all=True)
    assert drawn_all == len(candidates)
    np.testing.assert_array_equal(out_all, widths)
