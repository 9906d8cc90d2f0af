"""NetSpec: what a network looks like to the renderer — layers, shapes and node-id ranges.

The worker describes its model with a NetSpec once per model load and sends it as a plain dict
(`to_dict`) over the command pipe; the render process rebuilds it with `from_dict`.  Node ids are
contiguous: layer by layer in network order, and inside a layer in C order of its shape
(channel, row, column).  The flat activation buffer in shared memory uses exactly these ids, so
`acts[layer.start:layer.stop].reshape(layer.shape)` is that layer's activation tensor.

A NetSpec is the hand-written chain of five kinds (input, conv, pool, fc, output) the training
scene's model still describes itself with; every render-side consumer works on a Dag
(engine/graph/dag.py), so `to_dag` turns a NetSpec into the equivalent Dag with the same node ids,
and `as_dag` is the one boundary call that accepts either.  Pure data: no GL, no torch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from convscope.engine.graph.dag import Dag, DagLayer, EdgeSet, MapStep

# Layer kinds the renderer knows how to lay out and explain.
KINDS = ("input", "conv", "pool", "fc", "output")


@dataclass(frozen=True)
class LayerSpec:
    name: str  # unique, e.g. "conv1"; also the array name in --dump-activations
    kind: str  # one of KINDS
    shape: tuple[int, ...]  # (C, H, W) for grid layers, (N,) for vector layers
    start: int = 0  # first node id of this layer
    activation: str = "identity"  # "relu", "identity" (pool/input) or "softmax" (output probabilities)
    kernel: int = 0  # conv / pool window size; 0 where it does not apply
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"layer {self.name!r}: unknown kind {self.kind!r} (expected one of {KINDS})")
        if not self.shape or any(int(s) <= 0 for s in self.shape) or len(self.shape) not in (1, 3):
            raise ValueError(
                f"layer {self.name!r}: shape must be (N,) or (C, H, W) of positives, got {self.shape}"
            )

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def stop(self) -> int:
        return self.start + self.count

    @property
    def is_grid(self) -> bool:
        return len(self.shape) == 3

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "start": self.start,
            "activation": self.activation,
            "kernel": self.kernel,
            "stride": self.stride,
            "padding": self.padding,
        }

    @classmethod
    def from_dict(cls, d: dict) -> LayerSpec:
        return cls(
            name=str(d["name"]),
            kind=str(d["kind"]),
            shape=tuple(int(s) for s in d["shape"]),
            start=int(d.get("start", 0)),
            activation=str(d.get("activation", "identity")),
            kernel=int(d.get("kernel", 0)),
            stride=int(d.get("stride", 1)),
            padding=int(d.get("padding", 0)),
        )


@dataclass(frozen=True)
class NetSpec:
    model: str  # "lenet", "mlp", or a synthetic name
    layers: tuple[LayerSpec, ...]
    classes: tuple[str, ...] = field(default_factory=lambda: tuple(str(i) for i in range(10)))

    def __post_init__(self) -> None:
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate layer names in {names}")
        expect = 0
        for layer in self.layers:
            if layer.start != expect:
                raise ValueError(f"layer {layer.name!r} starts at {layer.start}, expected {expect}")
            expect = layer.stop

    @classmethod
    def build(cls, model: str, layers: list[LayerSpec] | tuple[LayerSpec, ...], **kw) -> NetSpec:
        """Assign contiguous node ids to `layers` (their `start` is ignored) and return the spec."""
        placed, start = [], 0
        for layer in layers:
            placed.append(LayerSpec.from_dict({**layer.to_dict(), "start": start}))
            start += layer.count
        return cls(model=model, layers=tuple(placed), **kw)

    @property
    def total_nodes(self) -> int:
        return self.layers[-1].stop if self.layers else 0

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r} in {self.model} (layers: {[x.name for x in self.layers]})")

    def index(self, name: str) -> int:
        return [x.name for x in self.layers].index(name)

    def layer_of(self, node_id: int) -> LayerSpec:
        """The layer that owns `node_id` (binary search over the contiguous ranges)."""
        if not 0 <= node_id < self.total_nodes:
            raise IndexError(f"node id {node_id} outside 0..{self.total_nodes - 1}")
        lo, hi = 0, len(self.layers) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.layers[mid].start <= node_id:
                lo = mid
            else:
                hi = mid - 1
        return self.layers[lo]

    def to_dag(self) -> Dag:
        """The same network as a Dag: node ids, names and shapes unchanged (see `_to_dag`)."""
        return _to_dag(self)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "classes": list(self.classes),
            "layers": [x.to_dict() for x in self.layers],
        }

    @classmethod
    def from_dict(cls, d: dict) -> NetSpec:
        return cls(
            model=str(d["model"]),
            layers=tuple(LayerSpec.from_dict(x) for x in d["layers"]),
            classes=tuple(str(c) for c in d.get("classes", [str(i) for i in range(10)])),
        )


def _geometry(layer: LayerSpec, below: LayerSpec) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a conv or pool layer.  A kernel of 0 in the spec is inferred from
    the map sizes: a conv then has stride 1 and the given padding; a pool has stride = kernel = the
    ratio of the map sizes."""
    k, s, p = layer.kernel, max(layer.stride, 1), layer.padding
    if k <= 0 and layer.kind == "conv":
        k = below.shape[1] + 2 * p - (layer.shape[1] - 1) * s
    elif k <= 0:
        k = s = max(below.shape[1] // layer.shape[1], 1)
    return k, s, p


def _chain(activation: str) -> tuple[dict, ...]:
    return () if activation in ("identity", "") else ({"op": activation},)


@functools.lru_cache(maxsize=16)
def _to_dag(spec: NetSpec) -> Dag:
    """conv / pool read the layer below through a window (kernel, stride, padding); fc and output
    are dense layers reading the layer below flattened in C order (a reshape index map from a grid),
    and the output's chain is the softmax.  The activations a NetSpec worker writes keep the logits
    in the output layer (`output_kind` "logits"): they are the values before that last step, and the
    class probabilities travel beside them.  Cached: a spec is converted once."""
    layers: list[DagLayer] = []
    for i, layer in enumerate(spec.layers):
        inputs: tuple[EdgeSet, ...] = ()
        kind = {"fc": "dense", "output": "dense"}.get(layer.kind, layer.kind)
        if i > 0:
            below = spec.layers[i - 1]
            if layer.kind in ("conv", "pool"):
                k, s, p = _geometry(layer, below)
                pool = {"pool": "max"} if layer.kind == "pool" else {}
                edge = EdgeSet(
                    layer.kind, below.name, below.shape, kernel=(k, k), stride=(s, s), padding=(p, p), **pool
                )
            elif layer.kind in ("fc", "output"):
                flat = (below.count,)
                steps = (MapStep("reshape", below.shape, flat),) if below.shape != flat else ()
                edge = EdgeSet("dense", below.name, flat, steps=steps)
            else:
                raise ValueError(f"layer {layer.name!r}: a {layer.kind!r} layer can only come first")
            inputs = (edge,)
        layers.append(
            DagLayer(layer.name, kind, layer.shape, layer.start, inputs, _chain(layer.activation), layer.kind)
        )
    out = spec.layers[-1] if spec.layers else None
    return Dag(
        model=spec.model,
        layers=tuple(layers),
        output=out.name if out is not None and out.kind == "output" else "",
        output_kind="logits",
        classes=spec.classes,
    )


def as_dag(spec_or_dag: NetSpec | Dag) -> Dag:
    """The Dag of either form: render code calls this where a network arrives (a worker's spec, a
    training snapshot), and works on the Dag only."""
    if isinstance(spec_or_dag, Dag):
        return spec_or_dag
    if isinstance(spec_or_dag, NetSpec):
        return spec_or_dag.to_dag()
    raise TypeError(f"expected a NetSpec or a Dag, got {type(spec_or_dag).__name__}")


def synthetic_spec(n_nodes: int, n_layers: int = 8) -> NetSpec:
    """A made-up conv-net-shaped spec with about `n_nodes` nodes, for benchmarks of big layouts.

    Layers are square feature-map stacks that shrink upward, ending in a 10-unit output row.
    """
    if n_nodes < 1000:
        raise ValueError("synthetic layouts start at 1000 nodes")
    per_layer = (n_nodes - 10) / (n_layers - 1)
    layers, total = [], 0
    for i in range(n_layers - 1):
        channels = 4 * (i + 1)
        budget = per_layer if i < n_layers - 2 else (n_nodes - 10 - total)
        side = max(1, int(math.sqrt(max(budget, 1) / channels)))
        shape = (channels, side, side)
        kind = "input" if i == 0 else ("conv" if i % 2 else "pool")
        layers.append(LayerSpec(f"layer{i}", kind, shape))
        total += math.prod(shape)
    layers.append(LayerSpec("output", "output", (10,), activation="softmax"))
    return NetSpec.build(f"synthetic-{n_nodes}", layers)
