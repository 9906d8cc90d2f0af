"""Sampled edges for nodes with more than EXACT_EDGES inputs: all of them up to the limit, else a
sample that always holds the strongest |weight x input| edges (hover edges and training paths)."""

import numpy as np
from convscope.engine.graph.dag import Dag
from convscope.engine.graph.edges import EXACT_EDGES, incoming, sample_edges
from convscope.engine.graph.spec import LayerSpec, NetSpec


def wide_spec() -> Dag:
    return NetSpec.build(
        "wide", [LayerSpec("input", "input", (1, 120, 120)), LayerSpec("output", "output", (10,))]
    ).to_dag()


def test_few_edges_are_all_drawn():
    spec = wide_spec()
    edges = incoming(spec, spec.layer("output").start)
    assert edges.count == 14_400
    s = sample_edges(edges, None, limit=20_000)
    assert not s.sampled and s.total == 14_400 and len(s.keep) == 14_400
    s = sample_edges(edges, None, show_all=True)
    assert not s.sampled and len(s.keep) == 14_400


def test_the_sample_holds_the_top_contributions():
    spec = wide_spec()
    edges = incoming(spec, spec.layer("output").start + 3)
    rng = np.random.default_rng(4)
    contribution = rng.normal(0, 1, edges.count) * rng.random(edges.count) ** 4
    contribution[rng.integers(edges.count, size=50)] = np.nan  # not there yet: never chosen first
    s = sample_edges(edges, contribution)
    assert s.sampled and s.total == edges.count and len(s.keep) == EXACT_EDGES
    assert len(np.unique(s.keep)) == EXACT_EDGES
    mag = np.nan_to_num(np.abs(contribution))
    top = np.argsort(-mag)[: EXACT_EDGES // 2]
    assert np.isin(top, s.keep).all(), "a top-|weight x input| edge is missing from the sample"
    # The random half leans toward large contributions: its mean |c| beats the unsampled edges'.
    rest = np.setdiff1d(np.arange(edges.count), s.keep)
    picked = np.setdiff1d(s.keep, top)
    assert mag[picked].mean() > 2 * mag[rest].mean()
    # Same seed, same sample (a steady picture while the pointer rests).
    assert np.array_equal(sample_edges(edges, contribution).keep, s.keep)


def test_sampled_hover_edges_of_a_dense_node_keep_its_largest_terms():
    """The explorer's rule on real numbers: contributions are edge_values' weight x input of a Dag node."""
    from convscope.engine.graph.edges import edge_values

    dag = wide_spec()
    rng = np.random.default_rng(5)
    weights = {"output": {"weight": rng.normal(0, 1, (10, 14_400)).astype(np.float32)}}
    acts = rng.random(dag.total_nodes, dtype=np.float32)
    edges = incoming(dag, dag.layer("output").start + 7, weights)
    contribution = edge_values(edges, weights, acts, "contribution")
    s = sample_edges(edges, contribution)
    assert s.sampled and len(s.keep) == EXACT_EDGES and s.total == 14_400
    terms = weights["output"]["weight"][7].astype(np.float64) * acts[edges.sources]
    top = np.argsort(-np.abs(terms))[:100]
    assert np.isin(top, s.keep).all()
    assert s.note == "showing 5,000 of 14,400 edges"
    assert sample_edges(edges, contribution, show_all=True).note == ""
