"""Incoming edges of one node, generated from its layer's regular pattern (pure numpy, no GL, no torch).

Harley 2015 (sec. 3.2): a CNN's edges "can be implied by their regular pattern", so the diagram
shows the edges of one node at a time, on request.  Nothing here holds an edge list for the whole
network: `incoming(spec, node)` builds the edges of one node when it is hovered, from the layer's
kind, shape, kernel, stride and padding, using a per-layer *template* (the offsets of one window,
C_in x k x k entries at most) that is shifted to the node's position.

Edges by layer kind (the layer below is always `spec.layers[i - 1]`, in network order):
  input   none
  conv    the C_in x k x k patch of the layer below at (y * stride - padding, x * stride - padding);
          taps that fall into zero padding are left out (they add nothing).  LeNet: conv1 25
          edges (5x5 of the 32x32 padded input), conv2 6 x 5 x 5 = 150.
  pool    its k x k window in the same channel of the layer below (LeNet: 2x2 = 4).
  fc      every node of the layer below, flattened in C order (= node-id order): LeNet fc1 has 400
          edges from pool2, fc2 120; the MLP's fc1 784 from the input.
  output  like fc (LeNet / MLP: 100).

Each edge also carries `weight_index`: the flat (C order) index of its weight in the layer's weight
array as torch stores it — conv (C_out, C_in, k, k), fc / output (N_out, N_in) — so
`weights[layer]["weight"].reshape(-1)[edges.weight_index]` are the edge weights.  Pool edges have
no weights (-1).  LeNet's largest case, fc1, costs about 10 us.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from convscope.engine.graph.spec import LayerSpec, NetSpec


@dataclass(frozen=True)
class Edges:
    node: int  # the node the edges lead into
    layer: LayerSpec  # its layer
    source_layer: LayerSpec | None  # the layer the edges come from (None for the input layer)
    sources: np.ndarray  # (E,) int64 node ids the edges come from
    weight_index: np.ndarray  # (E,) int64 flat index into the layer's weight array; -1 where none (pool)
    tap: np.ndarray  # (E,) int64 index in the window block (C_in, k, k) (conv, pool) or the input (fc)

    @property
    def count(self) -> int:
        return len(self.sources)


@dataclass(frozen=True)
class NodeIndex:
    """Where a node sits inside its layer: channel / row / column for grid layers, unit for vectors."""

    layer: LayerSpec
    layer_index: int  # position of the layer in spec.layers
    offset: int  # node id - layer.start
    channel: int | None
    y: int | None
    x: int | None
    unit: int | None


def locate(spec: NetSpec, node: int) -> NodeIndex:
    """The layer of `node` and its (channel, y, x) or unit index there (IndexError outside the spec)."""
    layer = spec.layer_of(int(node))
    i = spec.layers.index(layer)
    off = int(node) - layer.start
    if layer.is_grid:
        c, h, w = layer.shape
        ch, rest = divmod(off, h * w)
        y, x = divmod(rest, w)
        return NodeIndex(layer, i, off, ch, y, x, None)
    return NodeIndex(layer, i, off, None, None, None, off)


def conv_geometry(layer: LayerSpec, below: LayerSpec) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a conv layer, the kernel inferred from the shapes when the spec
    leaves it 0 (no padding, stride 1)."""
    k, s, p = layer.kernel, max(layer.stride, 1), layer.padding
    if k <= 0:
        k = below.shape[1] + 2 * p - (layer.shape[1] - 1) * s
    return k, s, p


def pool_geometry(layer: LayerSpec, below: LayerSpec) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a pooling layer; kernel 0 in the spec means stride = kernel =
    the ratio of the map sizes."""
    k, s, p = layer.kernel, layer.stride, layer.padding
    if k <= 0:
        k = s = max(below.shape[1] // layer.shape[1], 1)
    return k, max(s, 1), p


@functools.lru_cache(maxsize=64)
def _window_template(below_shape: tuple[int, ...], k: int, channels: bool) -> tuple[np.ndarray, ...]:
    """Offsets of one k x k window (over every input channel when `channels`): per tap its channel,
    row and column offset, its node-id offset from the window's top-left in channel 0, and its
    index in a (C_in, k, k) block."""
    cin, h, w = below_shape
    cs = np.arange(cin) if channels else np.zeros(1, np.int64)
    ci, ky, kx = np.meshgrid(cs, np.arange(k), np.arange(k), indexing="ij")
    ci, ky, kx = ci.ravel(), ky.ravel(), kx.ravel()
    id_off = (ci * h + ky) * w + kx
    tap = (ci * k + ky) * k + kx
    for a in (ci, ky, kx, id_off, tap):
        a.setflags(write=False)
    return ci, ky, kx, id_off, tap


def _window(
    layer: LayerSpec, below: LayerSpec, y: int, x: int, k: int, s: int, p: int, channel: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Node ids under one window of `below` and each tap's index in a (C_in, k, k) block."""
    _, h, w = below.shape
    ci, ky, kx, id_off, tap = _window_template(below.shape, k, channel is None)
    y0, x0 = y * s - p, x * s - p
    base = below.start + (0 if channel is None else channel * h * w) + y0 * w + x0
    if 0 <= y0 and y0 + k <= h and 0 <= x0 and x0 + k <= w:
        return base + id_off, tap  # the common case: the window lies inside the map
    iy, ix = y0 + ky, x0 + kx
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    return (base + id_off)[ok], tap[ok]


def incoming(spec: NetSpec, node: int) -> Edges:
    """All edges leading into `node`, generated from its layer's pattern (see the module docstring)."""
    where = locate(spec, node)
    layer = where.layer
    if where.layer_index == 0 or layer.kind == "input":
        empty = np.zeros(0, np.int64)
        return Edges(int(node), layer, None, empty, empty, empty)
    below = spec.layers[where.layer_index - 1]
    if layer.kind == "conv":
        if not (layer.is_grid and below.is_grid):
            raise ValueError(f"conv layer {layer.name!r} needs grid layers, below is {below.shape}")
        k, s, p = conv_geometry(layer, below)
        sources, tap = _window(layer, below, where.y, where.x, k, s, p, None)
        cin = below.shape[0]
        weight_index = where.channel * cin * k * k + tap
    elif layer.kind == "pool":
        if not (layer.is_grid and below.is_grid):
            raise ValueError(f"pool layer {layer.name!r} needs grid layers, below is {below.shape}")
        k, s, p = pool_geometry(layer, below)
        sources, tap = _window(layer, below, where.y, where.x, k, s, p, where.channel)
        weight_index = np.full(len(sources), -1, np.int64)
    elif layer.kind in ("fc", "output"):
        n_in = below.count
        sources = np.arange(below.start, below.stop, dtype=np.int64)
        tap = np.arange(n_in, dtype=np.int64)
        weight_index = where.offset * n_in + tap
    else:
        raise ValueError(f"layer {layer.name!r}: no edge pattern for kind {layer.kind!r}")
    return Edges(
        int(node),
        layer,
        below,
        np.asarray(sources, np.int64),
        np.asarray(weight_index, np.int64),
        np.asarray(tap, np.int64),
    )


def edge_weights(edges: Edges, weights: dict[str, dict[str, np.ndarray]] | None) -> np.ndarray | None:
    """The weight of every edge (float32 (E,)), or None where the layer has none (pool, input) or
    `weights` lacks it."""
    if weights is None or edges.count == 0 or edges.weight_index[0] < 0:
        return None
    entry = weights.get(edges.layer.name)
    if entry is None or "weight" not in entry:
        return None
    return entry["weight"].reshape(-1)[edges.weight_index]


# -- what an edge's colour stands for ----------------------------------------------------------------

EDGE_MODES = ("weight", "contribution")  # colour by the weight, or by weight x input (the term it adds)

Weights = dict[str, dict[str, np.ndarray]]  # layer name -> {"weight": ..., "bias": ...}


def edge_values(
    edges: Edges, weights: Weights | None, activations: np.ndarray | None, mode: str = "weight"
) -> np.ndarray:
    """The value each edge is coloured by, float32 (E,).

    "weight": the edge's weight.  "contribution": weight x the source's activation, the term the
    edge adds to the node's weighted sum.  Max pooling has no weights; it acts as a selector, so
    its edges are 1 (weight) or the input (contribution) for the winning input and 0 for the
    others.  NaN (drawn grey) where the numbers are not there yet (no weights, no activations).
    """
    if mode not in EDGE_MODES:
        raise ValueError(f"unknown edge mode {mode!r} (expected one of {EDGE_MODES})")
    n = edges.count
    if edges.layer.kind == "pool":
        if activations is None or n == 0:
            return np.full(n, np.nan, np.float32)
        x = activations[edges.sources]
        out = np.zeros(n, np.float32)
        win = int(np.argmax(x))
        out[win] = 1.0 if mode == "weight" else x[win]
        return out
    w = edge_weights(edges, weights)
    if w is None:
        return np.full(n, np.nan, np.float32)
    if mode == "weight":
        return np.asarray(w, np.float32)
    if activations is None:
        return np.full(n, np.nan, np.float32)
    return (w * activations[edges.sources]).astype(np.float32)


def weight_scale(layer: LayerSpec, weights: Weights | None) -> float:
    """Largest |weight| of `layer` (1 for pooling, whose selector weights are 0 / 1)."""
    if layer.kind == "pool":
        return 1.0
    entry = (weights or {}).get(layer.name)
    if entry is None or "weight" not in entry or entry["weight"].size == 0:
        return 0.0
    return float(np.abs(entry["weight"]).max())


def contribution_scale(
    spec: NetSpec, layer: LayerSpec, weights: Weights | None, activations: np.ndarray | None
) -> float:
    """Largest |weight x input| over every edge of every node of `layer`, for the current
    activations, without building those edges: for a conv layer it is
    max over (c, ci, ky, kx) of |W[c, ci, ky, kx]| x (largest |input| that tap ever sees)."""
    i = spec.layers.index(layer)
    if i == 0 or activations is None or layer.kind == "input":
        return 0.0
    below = spec.layers[i - 1]
    if layer.kind == "pool":
        # Each window's winner is its largest input: the window maxima, from the layer below.
        k, s, p = pool_geometry(layer, below)
        _, ho, wo = layer.shape
        xb = np.asarray(activations[below.start : below.stop], np.float32).reshape(below.shape)
        xp = np.pad(xb, ((0, 0), (p, p), (p, p)), constant_values=-np.inf)
        best = np.full((below.shape[0], ho, wo), -np.inf, np.float32)
        for ky in range(k):
            for kx in range(k):
                np.maximum(
                    best, xp[:, ky : ky + s * (ho - 1) + 1 : s, kx : kx + s * (wo - 1) + 1 : s], out=best
                )
        return float(np.abs(best).max())
    x = np.abs(np.asarray(activations[below.start : below.stop], np.float32))
    entry = (weights or {}).get(layer.name)
    if entry is None or "weight" not in entry:
        return 0.0
    w = np.abs(entry["weight"])
    if layer.kind == "conv":
        k, s, p = conv_geometry(layer, below)
        _, ho, wo = layer.shape
        xp = np.pad(x.reshape(below.shape), ((0, 0), (p, p), (p, p)))
        seen = np.empty((below.shape[0], k, k), np.float32)  # per tap: the largest input it sees
        for ky in range(k):
            for kx in range(k):
                seen[:, ky, kx] = xp[:, ky : ky + s * (ho - 1) + 1 : s, kx : kx + s * (wo - 1) + 1 : s].max(
                    axis=(1, 2)
                )
        return float((w.reshape(layer.shape[0], *seen.shape) * seen[None]).max())
    return float((w.max(axis=0) * x).max())  # fc / output: (N_out, N_in) x (N_in,)


def edge_scale(
    spec: NetSpec,
    layer: LayerSpec,
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
    layers = [layer] if normalize == "layer" else [x for x in spec.layers[1:] if x.kind != "input"]
    if mode == "weight":
        if normalize == "global":
            # Pooling's selector weight 1 says nothing about the learned weights' scale; its
            # winning edge simply shows the top colour.
            layers = [x for x in layers if x.kind != "pool"] or layers
        m = max((weight_scale(x, weights) for x in layers), default=0.0)
    else:
        m = max((contribution_scale(spec, x, weights, activations) for x in layers), default=0.0)
    return m if np.isfinite(m) and m > 0 else 1.0


# -- many edges: a sample that keeps the ones that matter ---------------------------------------------

EXACT_EDGES = 5_000  # up to this many incoming edges are all drawn; above, a sample of this size


@dataclass(frozen=True)
class EdgeSample:
    """Which of a node's incoming edges to draw: `keep` indexes into the Edges arrays."""

    keep: np.ndarray  # (K,) int64 edge indices, ascending
    total: int  # how many edges the node has
    sampled: bool  # True when keep is a subset (show "K of total")


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
