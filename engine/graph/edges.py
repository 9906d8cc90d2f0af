"""The hovered node's incoming edges on the render side: what each edge's colour stands for, the colour
range, and which of many edges to draw (pure numpy, no GL, no torch).

Harley 2015 (sec. 3.2): a CNN's edges "can be implied by their regular pattern", so the diagram shows
the edges of one node at a time, on request.  `incoming(dag, node, weights)` (engine/graph/dag.py)
builds them from the node's layer: a conv window of any kernel, stride, padding, dilation and groups,
every input of a dense layer (through the flatten / reshape / transpose maps before it), a pool window,
one input per set of an add / mul / concat / elementwise layer, none for input and opaque layers.
Each edge carries `weight_index` into the layer's weight as torch stores it (conv (C_out, C_in / g,
kh, kw), dense (N_out, N_in)), -1 where the op has no weights.

Here: `edge_values` (the weight, or weight x input: the term the edge adds), `edge_scale` (the
symmetric range [-m, m] of a layer's edges, or of the whole network's, without building them) and
`sample_edges` (above EXACT_EDGES a node's edges are sampled by |weight x input|; the same rule serves
the training scene's paths).  LeNet's largest node (fc1, 400 edges) costs about 10 us.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from convscope.engine.graph.dag import Dag, DagEdges, DagLayer, EdgeSet, Weights, incoming, map_back

Edges = DagEdges  # one node's incoming edges (sources, weight_index, edge_set, tap)
__all__ = [
    "EDGE_MODES",
    "EXACT_EDGES",
    "EdgeSample",
    "Edges",
    "NodeIndex",
    "Weights",
    "edge_scale",
    "edge_values",
    "edge_weights",
    "incoming",
    "locate",
    "pool_divisor",
    "sample_edges",
]


@dataclass(frozen=True)
class NodeIndex:
    """Where a node sits inside its layer: channel / row / column for grid layers, unit for vectors."""

    layer: DagLayer
    layer_index: int  # position of the layer in dag.layers
    offset: int  # node id - layer.start
    channel: int | None
    y: int | None
    x: int | None
    unit: int | None


def locate(dag: Dag, node: int) -> NodeIndex:
    """The layer of `node` and its (channel, y, x) or unit index there (IndexError outside the Dag)."""
    layer = dag.layer_of(int(node))
    i = dag.index(layer.name)
    off = int(node) - layer.start
    if layer.is_grid:
        _, h, w = layer.shape
        ch, rest = divmod(off, h * w)
        y, x = divmod(rest, w)
        return NodeIndex(layer, i, off, ch, y, x, None)
    return NodeIndex(layer, i, off, None, None, None, off)


def edge_weights(edges: Edges, weights: Weights | None) -> np.ndarray | None:
    """The weight of every edge (float32 (E,)), or None where the layer has none (pool, add, input ...)
    or `weights` lack it."""
    if weights is None or edges.count == 0 or edges.layer.kind not in WEIGHTED:
        return None
    entry = weights.get(edges.layer.name)
    if entry is None or "weight" not in entry:
        return None
    return entry["weight"].reshape(-1)[edges.weight_index]


# -- what an edge's colour stands for ----------------------------------------------------------------

EDGE_MODES = ("weight", "contribution")  # colour by the weight, or by weight x input (the term it adds)
WEIGHTED = ("conv", "dense")  # layer kinds whose edges carry learned weights


def _pool_divisors(e: EdgeSet, out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Average pooling's divisor per output row and per column (their outer product is the divisor of
    a node), torch's rule: the window clipped to the padded map with `count_include_pad`, else the
    taps inside the map (adaptive windows: their size)."""
    out = []
    for o_n, i_n, k, s, p in zip(out_hw, e.in_shape[1:], e.kernel, e.stride, e.padding, strict=True):
        o = np.arange(o_n)
        if e.adaptive:
            out.append(-(-((o + 1) * i_n) // o_n) - (o * i_n) // o_n)
        elif e.count_include_pad:
            out.append(np.minimum(o * s - p + k, i_n + p) - (o * s - p))
        else:
            out.append(np.minimum(o * s - p + k, i_n) - np.maximum(o * s - p, 0))
    return out[0], out[1]


def pool_divisor(layer: DagLayer, off: int) -> float:
    dy, dx = _pool_divisors(layer.inputs[0], layer.shape[1:])
    oy, ox = divmod(off % (layer.shape[1] * layer.shape[2]), layer.shape[2])
    return float(dy[oy] * dx[ox])


def edge_values(
    edges: Edges, weights: Weights | None, activations: np.ndarray | None, mode: str = "weight"
) -> np.ndarray:
    """The value each edge is coloured by, float32 (E,).

    "weight": the edge's weight.  "contribution": weight x the source's value, the term the edge adds
    to the node's sum.  Ops without learned weights get the factor they apply: max pooling acts as a
    selector (1 for the winning input, 0 for the others), average pooling 1 / divisor, add its +1 / -1,
    mul / concat / elementwise 1.  NaN (drawn grey) where the numbers are not there yet (no weights,
    no activations)."""
    if mode not in EDGE_MODES:
        raise ValueError(f"unknown edge mode {mode!r} (expected one of {EDGE_MODES})")
    n = edges.count
    layer = edges.layer
    x = None if activations is None else np.asarray(activations[edges.sources], np.float32)
    if layer.kind in WEIGHTED:
        w = edge_weights(edges, weights)
        if w is None or (mode == "contribution" and x is None):
            return np.full(n, np.nan, np.float32)
        return np.asarray(w if mode == "weight" else w * x, np.float32)
    if n == 0:
        return np.zeros(0, np.float32)
    if layer.kind == "pool" and layer.inputs[0].pool == "max":
        if x is None:
            return np.full(n, np.nan, np.float32)
        out = np.zeros(n, np.float32)
        win = int(np.argmax(x))
        out[win] = 1.0 if mode == "weight" else x[win]
        return out
    if layer.kind == "pool":
        factor = np.full(n, 1.0 / pool_divisor(layer, edges.node - layer.start))
    elif layer.kind == "add":
        factor = np.array([layer.inputs[k].coef for k in edges.edge_set], np.float64)
    else:
        factor = np.ones(n)
    if mode == "weight":
        return factor.astype(np.float32)
    if x is None:
        return np.full(n, np.nan, np.float32)
    return (factor * x).astype(np.float32)


def weight_scale(layer: DagLayer, weights: Weights | None) -> float:
    """Largest |weight| of `layer`'s edges (the factor the op applies where it learns none)."""
    if layer.kind in WEIGHTED:
        entry = (weights or {}).get(layer.name)
        if entry is None or "weight" not in entry or entry["weight"].size == 0:
            return 0.0
        return float(np.abs(entry["weight"]).max())
    if layer.kind == "pool" and layer.inputs and layer.inputs[0].pool != "max":
        dy, dx = _pool_divisors(layer.inputs[0], layer.shape[1:])
        return 1.0 / float(dy.min() * dx.min())
    if layer.kind == "add":
        return max((abs(e.coef) for e in layer.inputs), default=0.0)
    return 1.0 if layer.inputs else 0.0


def _read(dag: Dag, e: EdgeSet, acts: np.ndarray) -> np.ndarray:
    """What a layer reads through edge set `e`: the source's values through its index map, shaped
    `e.in_shape` (zeros where the map pads)."""
    src = dag.layer(e.source)
    x = np.asarray(acts[src.start : src.stop], np.float32)
    if e.steps:
        idx = map_back(e.steps, np.arange(math.prod(e.in_shape)))
        x = np.where(idx >= 0, x[np.maximum(idx, 0)], np.float32(0.0))
    return x.reshape(e.in_shape)


def _taps(x: np.ndarray, e: EdgeSet, out_hw: tuple[int, int], fill: float):
    """Per window tap (ky, kx): the (C, ho, wo) inputs it reads for every output position, `fill` where
    it falls into the op's own padding.  Adaptive windows differ in size: their taps are read per output
    position instead (see _window_max)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = e.kernel, e.stride, e.padding, e.dilation
    ho, wo = out_hw
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, xp[:, y0 : y0 + sh * (ho - 1) + 1 : sh, x0 : x0 + sw * (wo - 1) + 1 : sw]


def _window_max(x: np.ndarray, e: EdgeSet, out_hw: tuple[int, int], fill: float) -> np.ndarray:
    """(C, ho, wo): the largest input of every pooling window."""
    ho, wo = out_hw
    if e.adaptive:
        _, h, w = x.shape
        best = np.empty((x.shape[0], ho, wo), np.float32)
        for oy in range(ho):
            y0, y1 = (oy * h) // ho, -(-((oy + 1) * h) // ho)
            for ox in range(wo):
                x0, x1 = (ox * w) // wo, -(-((ox + 1) * w) // wo)
                best[:, oy, ox] = x[:, y0:y1, x0:x1].max(axis=(1, 2))
        return best
    best = np.full((x.shape[0], ho, wo), -np.inf, np.float32)
    for _, _, tap in _taps(x, e, out_hw, fill):
        np.maximum(best, tap, out=best)
    return best


def contribution_scale(
    dag: Dag, layer: DagLayer, weights: Weights | None, activations: np.ndarray | None
) -> float:
    """Largest |edge value| in "contribution" mode over every edge of every node of `layer`, for the
    current activations, without building those edges: for a conv layer it is max over (c, ci, ky, kx)
    of |W[c, ci, ky, kx]| x (the largest |input| that tap ever sees); for pooling the window maxima
    (average: the window's largest |input| over its divisor)."""
    if activations is None or not layer.inputs:
        return 0.0
    best = 0.0
    for e in layer.inputs:
        if e.kind == "opaque":
            continue
        x = _read(dag, e, activations)
        if e.kind in WEIGHTED:
            entry = (weights or {}).get(layer.name)
            if entry is None or "weight" not in entry:
                return 0.0
            w = np.abs(entry["weight"])
        if e.kind == "dense":
            m = (w.reshape(layer.count, -1).max(axis=0) * np.abs(x).reshape(-1)).max()
        elif e.kind == "conv":
            kh, kw = e.kernel
            seen = np.zeros((e.in_shape[0], kh, kw), np.float32)  # per tap: the largest |input| it sees
            for ky, kx, tap in _taps(np.abs(x), e, layer.shape[1:], 0.0):
                seen[:, ky, kx] = tap.max(axis=(1, 2))
            g = e.groups
            per = w.reshape(g, layer.shape[0] // g, e.in_shape[0] // g, kh, kw)
            m = (per * seen.reshape(g, 1, e.in_shape[0] // g, kh, kw)).max()
        elif e.kind == "pool" and e.pool == "max":
            m = np.abs(_window_max(x, e, layer.shape[1:], -np.inf)).max()
        elif e.kind == "pool":
            dy, dx = _pool_divisors(e, layer.shape[1:])
            m = (_window_max(np.abs(x), e, layer.shape[1:], 0.0) / np.outer(dy, dx)[None]).max()
        else:  # add, mul, concat, elementwise: every value read, times +-1
            m = np.abs(x).max() * abs(e.coef if e.kind == "add" else 1.0)
        best = max(best, float(m))
    return best


def edge_scale(
    dag: Dag,
    layer: DagLayer,
    weights: Weights | None,
    activations: np.ndarray | None,
    mode: str = "weight",
    normalize: str = "layer",
) -> float:
    """The m of the symmetric colour range [-m, m] for edges into `layer`: over that layer's edges
    ("layer") or every edge of the network ("global"), like the nodes' normalisation.  Edge values
    are signed, so 0 always sits mid-colormap.  Never 0 (1 when there is nothing to scale by)."""
    if normalize not in ("layer", "global"):
        raise ValueError(f"unknown normalisation {normalize!r} (expected 'layer' or 'global')")
    if mode not in EDGE_MODES:
        raise ValueError(f"unknown edge mode {mode!r} (expected one of {EDGE_MODES})")
    layers = [layer] if normalize == "layer" else [x for x in dag.layers if x.inputs]
    if mode == "weight":
        if normalize == "global":
            # The factors of unweighted ops (a selector's 1, an average's 1 / n) say nothing about the
            # learned weights' scale; their edges simply show the top colour.
            layers = [x for x in layers if x.kind in WEIGHTED] or layers
        m = max((weight_scale(x, weights) for x in layers), default=0.0)
    else:
        m = max((contribution_scale(dag, x, weights, activations) for x in layers), default=0.0)
    return m if np.isfinite(m) and m > 0 else 1.0


# -- many edges: a sample that keeps the ones that matter ---------------------------------------------

EXACT_EDGES = 5_000  # up to this many incoming edges are all drawn; above, a sample of this size


@dataclass(frozen=True)
class EdgeSample:
    """Which of a node's incoming edges to draw: `keep` indexes into the Edges arrays."""

    keep: np.ndarray  # (K,) int64 edge indices, ascending
    total: int  # how many edges the node has
    sampled: bool  # True when keep is a subset (show "K of total")

    @property
    def note(self) -> str:
        """What the explorer says about a sample: "showing 5,000 of 73,728 edges" ("" when all are drawn)."""
        return f"showing {len(self.keep):,} of {self.total:,} edges" if self.sampled else ""


def sample_edges(
    edges: Edges | int,
    contribution: np.ndarray | None,
    limit: int = EXACT_EDGES,
    show_all: bool = False,
    seed: int = 0,
) -> EdgeSample:
    """All edges when there are at most `limit` (or `show_all`); else `limit` of them, chosen by
    |weight x input|: the larger half of the budget goes to the edges with the largest |contribution|
    (so the strongest edges are always there), the rest is drawn at random with probability in
    proportion to |contribution| (a picture of the spread, stable for a given seed).  Without
    contributions (NaN, or None) the pick is uniform.  The same rule serves hover edges and the
    training scene's paths (`edges` may be just the number of candidates)."""
    n = int(edges) if isinstance(edges, (int, np.integer)) else edges.count
    if show_all or n <= limit:
        return EdgeSample(np.arange(n, dtype=np.int64), n, False)
    if contribution is None:
        mag = np.ones(n)
    else:
        mag = np.abs(np.asarray(contribution, np.float64).reshape(-1))
        mag = np.where(np.isfinite(mag), mag, 0.0)
    top_n = (limit + 1) // 2
    order = np.argpartition(-mag, top_n - 1)[:top_n]
    rest = np.setdiff1d(np.arange(n), order, assume_unique=True)
    need = limit - top_n
    p = mag[rest]
    # Weighted by |contribution| while enough edges have some; else uniform over the rest.
    p = p / p.sum() if np.count_nonzero(p) >= need else None
    extra = np.random.default_rng(seed).choice(rest, need, replace=False, p=p)
    return EdgeSample(np.sort(np.concatenate([order, extra])).astype(np.int64), n, True)
