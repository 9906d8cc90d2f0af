"""Dag: any traced CNN as render-side data — node layers, shapes, node-id ranges and edge patterns.

The tracer (models/trace.py, torch side) builds a Dag once per model and sends it as a plain dict
(`to_dict`) over the worker pipe; the render process rebuilds it with `from_dict`.  Like NetSpec,
node ids are contiguous per layer in network (topological) order, and C order inside a layer, so
`acts[layer.start:layer.stop].reshape(layer.shape)` is that layer's value.

A layer (`DagLayer`) has one or more incoming edge sets (`EdgeSet`), each naming its source layer,
an index map (the flatten / reshape / transpose / permute / zero-pad / slice steps between the source's
value and what this layer reads, which own no nodes) and its pattern: conv, dense, pool, add,
mul (elementwise sum / product of two or more inputs, broadcasting), concat, elementwise (one
edge from the same place) or opaque (a pass-through block; no per-node
edges).  A layer's value is what comes out of its `chain` of folded elementwise steps (batch norm,
activations, scalar arithmetic).  Edges are generated per node on request (`incoming`); nothing
holds an edge list for the whole network.  Pure numpy: no GL, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LAYER_KINDS = ("input", "conv", "dense", "pool", "add", "mul", "concat", "elementwise", "opaque")
EDGE_KINDS = ("conv", "dense", "pool", "add", "mul", "concat", "elementwise", "opaque")
MAP_OPS = ("reshape", "permute", "pad", "slice")


# -- index maps ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapStep:
    """One node-free view between two tensors (batch dim left out): reading element i of the output
    reads element `back(i)` of the input, or a zero (-1) where it falls into padding.

    reshape: C-order flat index unchanged.  permute: `dims` as torch's permute of the non-batch dims.
    pad: `pad` = ((before, after) per dim of in_shape), zeros outside.  slice: output index o of
    dim d reads input index start[d] + o * step[d] (chunk, split, basic indexing)."""

    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    dims: tuple[int, ...] = ()
    pad: tuple[tuple[int, int], ...] = ()
    start: tuple[int, ...] = ()  # slice: first input index per dim
    step: tuple[int, ...] = ()  # slice: stride per dim (positive)

    def back(self, flat: np.ndarray) -> np.ndarray:
        flat = np.asarray(flat, np.int64)
        if self.op == "reshape":
            return flat
        valid = flat >= 0
        out_idx = np.unravel_index(np.where(valid, flat, 0), self.out_shape)
        if self.op == "permute":
            in_idx = [None] * len(self.dims)
            for k, d in enumerate(self.dims):
                in_idx[d] = out_idx[k]
            res = np.ravel_multi_index(tuple(in_idx), self.in_shape)
        elif self.op == "slice":
            in_idx = [s + o * k for o, s, k in zip(out_idx, self.start, self.step, strict=True)]
            res = np.ravel_multi_index(tuple(in_idx), self.in_shape)
        elif self.op == "pad":
            in_idx = [o - p[0] for o, p in zip(out_idx, self.pad, strict=True)]
            for i, n in zip(in_idx, self.in_shape, strict=True):
                valid = valid & (i >= 0) & (i < n)
            clipped = [np.clip(i, 0, n - 1) for i, n in zip(in_idx, self.in_shape, strict=True)]
            res = np.ravel_multi_index(tuple(clipped), self.in_shape)
        else:
            raise ValueError(f"unknown index-map op {self.op!r}")
        return np.where(valid, res, -1)

    def to_dict(self) -> dict:
        return {
            "op": self.op,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
            "dims": list(self.dims),
            "pad": [list(p) for p in self.pad],
            "start": list(self.start),
            "step": list(self.step),
        }

    @classmethod
    def from_dict(cls, d: dict) -> MapStep:
        return cls(
            op=str(d["op"]),
            in_shape=tuple(int(s) for s in d["in_shape"]),
            out_shape=tuple(int(s) for s in d["out_shape"]),
            dims=tuple(int(s) for s in d.get("dims", ())),
            pad=tuple((int(a), int(b)) for a, b in d.get("pad", ())),
            start=tuple(int(s) for s in d.get("start", ())),
            step=tuple(int(s) for s in d.get("step", ())),
        )


def map_back(steps: tuple[MapStep, ...], flat: np.ndarray) -> np.ndarray:
    """Flat indices into the last step's output -> flat indices into the first step's input (-1: zero)."""
    flat = np.asarray(flat, np.int64)
    for step in reversed(steps):
        flat = step.back(flat)
    return flat


# -- edge sets and layers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeSet:
    """One incoming pattern of a layer.  `in_shape` is what the layer reads: the source layer's shape
    after `steps`.  Weighted kinds (conv, dense) index the layer's weight as torch stores it:
    conv (C_out, C_in / groups, kh, kw), dense (N_out, N_in)."""

    kind: str
    source: str  # name of the source layer
    in_shape: tuple[int, ...]
    steps: tuple[MapStep, ...] = ()
    kernel: tuple[int, int] = (1, 1)  # conv / pool window (kh, kw)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    pool: str = ""  # "max" or "avg"
    adaptive: bool = False  # adaptive pooling: windows from the map sizes, not kernel / stride
    count_include_pad: bool = True  # avg pooling's divisor
    coef: float = 1.0  # add: +1, or -1 for a subtraction
    dim: int = 0  # concat: the layer dim the inputs are stacked along
    offset: int = 0  # concat: where this input starts along `dim`
    drop_zero: bool = False  # weights are computed (masked): edges whose weight is exactly 0 are not drawn
    label: str = ""  # opaque: the op it stands for

    def __post_init__(self) -> None:
        if self.kind not in EDGE_KINDS:
            raise ValueError(f"unknown edge-set kind {self.kind!r} (expected one of {EDGE_KINDS})")

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "source": self.source,
            "in_shape": list(self.in_shape),
            "steps": [s.to_dict() for s in self.steps],
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "pool": self.pool,
            "adaptive": self.adaptive,
            "count_include_pad": self.count_include_pad,
            "coef": self.coef,
            "dim": self.dim,
            "offset": self.offset,
            "drop_zero": self.drop_zero,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, d: dict) -> EdgeSet:
        pair = lambda k, default: tuple(int(v) for v in d.get(k, default))  # noqa: E731
        return cls(
            kind=str(d["kind"]),
            source=str(d["source"]),
            in_shape=tuple(int(s) for s in d["in_shape"]),
            steps=tuple(MapStep.from_dict(s) for s in d.get("steps", ())),
            kernel=pair("kernel", (1, 1)),
            stride=pair("stride", (1, 1)),
            padding=pair("padding", (0, 0)),
            dilation=pair("dilation", (1, 1)),
            groups=int(d.get("groups", 1)),
            pool=str(d.get("pool", "")),
            adaptive=bool(d.get("adaptive", False)),
            count_include_pad=bool(d.get("count_include_pad", True)),
            coef=float(d.get("coef", 1.0)),
            dim=int(d.get("dim", 0)),
            offset=int(d.get("offset", 0)),
            drop_zero=bool(d.get("drop_zero", False)),
            label=str(d.get("label", "")),
        )


@dataclass(frozen=True)
class DagLayer:
    name: str  # module path ("layer1.0.conv2") or fx node name; the array name in activation dumps
    kind: str  # one of LAYER_KINDS
    shape: tuple[int, ...]  # (C, H, W) or (N,)
    start: int = 0  # first node id
    inputs: tuple[EdgeSet, ...] = ()
    # Folded elementwise steps after the layer's own op, in order; each a dict: {"op": "relu"},
    # {"op": "mul", "value": 2.0}, {"op": "affine", "key": "bn0"} (per-channel scale / shift kept in
    # the weights under "<key>.scale" / "<key>.shift"), {"op": "sub", "key": "c0"} (a per-channel
    # constant, in the weights under "<key>.value"), {"op": "log_softmax"} ...
    chain: tuple[dict, ...] = ()
    label: str = ""  # what the user's code called (e.g. "Conv2d", "F.conv2d", "torch.roll")

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"layer {self.name!r}: unknown kind {self.kind!r}")
        if not self.shape or any(int(s) <= 0 for s in self.shape) or len(self.shape) not in (1, 3):
            raise ValueError(f"layer {self.name!r}: shape must be (N,) or (C, H, W), got {self.shape}")

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def stop(self) -> int:
        return self.start + self.count

    @property
    def is_grid(self) -> bool:
        return len(self.shape) == 3

    @property
    def activation(self) -> str:
        """The folded chain as one readable name, e.g. 'affine -> relu' ('identity' when empty)."""
        return " -> ".join(s["op"] for s in self.chain) or "identity"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "start": self.start,
            "inputs": [e.to_dict() for e in self.inputs],
            "chain": [dict(s) for s in self.chain],
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, d: dict) -> DagLayer:
        return cls(
            name=str(d["name"]),
            kind=str(d["kind"]),
            shape=tuple(int(s) for s in d["shape"]),
            start=int(d.get("start", 0)),
            inputs=tuple(EdgeSet.from_dict(e) for e in d.get("inputs", ())),
            chain=tuple(dict(s) for s in d.get("chain", ())),
            label=str(d.get("label", "")),
        )


@dataclass(frozen=True)
class Dag:
    model: str
    layers: tuple[DagLayer, ...]
    output: str = ""  # name of the layer holding the model's output
    output_kind: str = "logits"  # "logits", "log_probabilities" or "probabilities"
    classes: tuple[str, ...] = ()
    _by_name: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        expect = 0
        for layer in self.layers:
            if layer.name in self._by_name:
                raise ValueError(f"duplicate layer name {layer.name!r}")
            if layer.start != expect:
                raise ValueError(f"layer {layer.name!r} starts at {layer.start}, expected {expect}")
            self._by_name[layer.name] = layer
            expect = layer.stop
        for layer in self.layers:
            for e in layer.inputs:
                if e.source not in self._by_name:
                    raise ValueError(f"layer {layer.name!r} reads unknown layer {e.source!r}")
        object.__setattr__(self, "_starts", np.array([x.start for x in self.layers], np.int64))

    @classmethod
    def build(cls, model: str, layers: list[DagLayer], **kw) -> Dag:
        """Assign contiguous node ids to `layers` (their `start` is ignored)."""
        placed, start = [], 0
        for layer in layers:
            placed.append(DagLayer.from_dict({**layer.to_dict(), "start": start}))
            start += layer.count
        return cls(model=model, layers=tuple(placed), **kw)

    @property
    def total_nodes(self) -> int:
        return self.layers[-1].stop if self.layers else 0

    def layer(self, name: str) -> DagLayer:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no layer {name!r} in {self.model}") from None

    def index(self, name: str) -> int:
        return self.layers.index(self.layer(name))

    def layer_of(self, node: int) -> DagLayer:
        if not 0 <= node < self.total_nodes:
            raise IndexError(f"node id {node} outside 0..{self.total_nodes - 1}")
        return self.layers[int(np.searchsorted(self._starts, node, side="right")) - 1]

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "output": self.output,
            "output_kind": self.output_kind,
            "classes": list(self.classes),
            "layers": [x.to_dict() for x in self.layers],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Dag:
        return cls(
            model=str(d["model"]),
            layers=tuple(DagLayer.from_dict(x) for x in d["layers"]),
            output=str(d.get("output", "")),
            output_kind=str(d.get("output_kind", "logits")),
            classes=tuple(str(c) for c in d.get("classes", ())),
        )


# -- edges of one node ---------------------------------------------------------------------------------

Weights = dict[str, dict[str, np.ndarray]]  # layer name -> {"weight": ..., "bias": ..., "<key>.scale": ...}


@dataclass(frozen=True)
class DagEdges:
    node: int
    layer: DagLayer
    sources: np.ndarray  # (E,) int64 source node ids
    weight_index: np.ndarray  # (E,) int64 flat index into the layer's weight (-1: unweighted)
    edge_set: np.ndarray  # (E,) int64 index into layer.inputs
    tap: np.ndarray  # (E,) int64 position in the node's window (conv: (C_in/g, kh, kw) C order; pool:
    # (kh, kw); dense: input index; add / concat / elementwise: 0)

    @property
    def count(self) -> int:
        return len(self.sources)


def _pool_range(o: int, n_in: int, n_out: int) -> tuple[int, int]:
    """Adaptive pooling's window [start, end) along one axis for output index o (torch's rule)."""
    return (o * n_in) // n_out, -(-((o + 1) * n_in) // n_out)


def _window(e: EdgeSet, c_in: np.ndarray, oy: int, ox: int, h: int, w: int, out_hw: tuple[int, int]):
    """Input positions (channel, y, x) and tap index of one conv / pool window, padding taps left out."""
    if e.adaptive:
        y0, y1 = _pool_range(oy, h, out_hw[0])
        x0, x1 = _pool_range(ox, w, out_hw[1])
        ky, kx = np.arange(y1 - y0), np.arange(x1 - x0)
        iy, ix = y0 + ky, x0 + kx
        kw = x1 - x0
    else:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = e.kernel, e.stride, e.padding, e.dilation
        ky, kx = np.arange(kh), np.arange(kw)
        iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
    oky, okx = (iy >= 0) & (iy < h), (ix >= 0) & (ix < w)
    ky, kx, iy, ix = ky[oky], kx[okx], iy[oky], ix[okx]
    ci, yy, xx = np.meshgrid(c_in, iy, ix, indexing="ij")
    cl, tky, tkx = np.meshgrid(np.arange(len(c_in)), ky, kx, indexing="ij")
    return ci.ravel(), yy.ravel(), xx.ravel(), cl.ravel(), tky.ravel(), tkx.ravel(), kw


def _edges_of_set(layer: DagLayer, e: EdgeSet, off: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat index into e.in_shape (-1: none), weight index, tap) of node `off` of `layer` via edge set e."""
    empty = np.zeros(0, np.int64)
    if e.kind == "opaque":
        return empty, empty, empty
    if e.kind in ("add", "mul", "elementwise"):
        if e.in_shape == layer.shape:
            return np.array([off], np.int64), np.array([-1], np.int64), np.zeros(1, np.int64)
        # broadcasting (a squeeze-and-excitation gate (C, 1, 1) times a (C, H, W) map): right-aligned,
        # size-1 dims of the input read index 0
        idx = np.unravel_index(off, layer.shape)[len(layer.shape) - len(e.in_shape) :]
        idx = tuple(0 if n == 1 else int(i) for i, n in zip(idx, e.in_shape, strict=True))
        flat = np.ravel_multi_index(idx, e.in_shape) if e.in_shape else 0
        return np.array([flat], np.int64), np.array([-1], np.int64), np.zeros(1, np.int64)
    if e.kind == "concat":
        idx = list(np.unravel_index(off, layer.shape))
        idx[e.dim] -= e.offset
        if not 0 <= idx[e.dim] < e.in_shape[e.dim]:
            return empty, empty, empty
        return np.array([np.ravel_multi_index(tuple(idx), e.in_shape)], np.int64), np.array([-1]), np.zeros(1)
    if e.kind == "dense":
        n_in = math.prod(e.in_shape)
        i = np.arange(n_in, dtype=np.int64)
        return i, off * n_in + i, i
    # conv / pool on (C, H, W)
    c_out, ho, wo = layer.shape
    c_in, h, w = e.in_shape
    ch, rest = divmod(off, ho * wo)
    oy, ox = divmod(rest, wo)
    if e.kind == "conv":
        cin_g, cout_g = c_in // e.groups, c_out // e.groups
        g = ch // cout_g
        chans = np.arange(g * cin_g, (g + 1) * cin_g)
    else:
        chans = np.array([ch])
    ci, yy, xx, cl, tky, tkx, kw = _window(e, chans, oy, ox, h, w, (ho, wo))
    flat = (ci * h + yy) * w + xx
    if e.kind == "conv":
        kh, kw = e.kernel
        tap = (cl * kh + tky) * kw + tkx
        return flat, ch * (c_in // e.groups) * kh * kw + tap, tap
    return flat, np.full(len(flat), -1, np.int64), tky * kw + tkx


def incoming(dag: Dag, node: int, weights: Weights | None = None) -> DagEdges:
    """Every edge into `node`, across all its layer's edge sets.  Taps in zero padding (conv / pool
    padding, or zero-pad steps of an index map) are left out; so are edges of `drop_zero` sets whose
    weight is exactly 0, when `weights` are given."""
    layer = dag.layer_of(int(node))
    off = int(node) - layer.start
    parts = []
    for k, e in enumerate(layer.inputs):
        flat, widx, tap = _edges_of_set(layer, e, off)
        src = map_back(e.steps, flat) if e.steps else np.asarray(flat, np.int64)
        keep = src >= 0
        if e.drop_zero and weights is not None and len(widx):
            keep &= weights[layer.name]["weight"].reshape(-1)[widx] != 0
        source = dag.layer(e.source)
        widx = np.asarray(widx, np.int64)
        parts.append((src[keep] + source.start, widx[keep], np.full(int(keep.sum()), k), tap[keep]))
    if not parts:
        z = np.zeros(0, np.int64)
        return DagEdges(int(node), layer, z, z, z, z)
    cat = [np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(4)]
    return DagEdges(int(node), layer, *cat)


def edge_count(dag: Dag, node: int, weights: Weights | None = None) -> int:
    return incoming(dag, node, weights).count


def layer_edge_count(dag: Dag, layer: DagLayer) -> int:
    """Edges into every node of `layer` (padding taps left out, zero weights counted), computed per
    axis rather than per node, so it is cheap for million-node layers."""
    total = 0
    for e in layer.inputs:
        # A lone zero-pad step of H / W in the index map (F.pad before a conv or pool) narrows the
        # taps that land on real nodes to [before, size - after) of the padded map.
        pad = e.steps[0].pad if len(e.steps) == 1 and e.steps[0].op == "pad" else None
        windowed = e.kind in ("conv", "pool") and (pad is None or pad[0] == (0, 0))
        if e.kind == "opaque":
            continue
        if any(s.op == "pad" for s in e.steps) and not windowed:
            total += _edge_count_by_node(layer, e)
        elif e.kind in ("add", "mul", "elementwise"):
            total += layer.count
        elif e.kind == "concat":
            total += math.prod(e.in_shape)
        elif e.kind == "dense":
            total += layer.count * math.prod(e.in_shape)
        else:
            c_out, ho, wo = layer.shape
            c_in, h, w = e.in_shape
            bounds = [(0, h), (0, w)]
            if pad is not None:
                bounds = [(pad[1][0], h - pad[1][1]), (pad[2][0], w - pad[2][1])]
            per = []
            axes = zip((ho, wo), (h, w), e.kernel, e.stride, e.padding, e.dilation, bounds, strict=True)
            for o_n, i_n, k, s, p, d, (lo_ok, hi_ok) in axes:
                o = np.arange(o_n)
                if e.adaptive:
                    lo, hi = (o * i_n) // o_n, -(-((o + 1) * i_n) // o_n)
                    taps = lo[:, None] + np.arange(int((hi - lo).max()))[None, :]
                    inside = taps < hi[:, None]
                else:
                    taps = o[:, None] * s - p + np.arange(k)[None, :] * d
                    inside = (taps >= 0) & (taps < i_n)
                per.append((inside & (taps >= lo_ok) & (taps < hi_ok)).sum(axis=1))
            depth = c_in // e.groups if e.kind == "conv" else 1
            total += int(np.outer(per[0], per[1]).sum()) * depth * c_out
    return total


def _edge_count_by_node(layer: DagLayer, e: EdgeSet) -> int:
    """Edges of set `e` into every node of `layer`, counted node by node (index maps with pads that
    the per-axis count does not cover; slow for big layers)."""
    n = 0
    for off in range(layer.count):
        flat = _edges_of_set(layer, e, off)[0]
        n += int((map_back(e.steps, flat) >= 0).sum())
    return n


def total_edges(dag: Dag) -> int:
    return sum(layer_edge_count(dag, x) for x in dag.layers)
