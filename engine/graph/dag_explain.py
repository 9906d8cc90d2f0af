"""What one node of a traced network (Dag) computes, with the real numbers (pure numpy).

`explain_node(dag, node, activations, weights)` rebuilds a node's calculation from the weights the
worker sent once per model and the flat activations of the newest result:

  conv / dense   z = sum_i w_i x_i + b  (edges of exactly-zero masked weights are not there)
  pool           max(window), or sum(window) / divisor for average pooling
  add            sum_k coef_k x_k  (one input per incoming edge set)
  mul            prod_k x_k
  concat / elementwise   the one input it copies
  input / opaque the value only (no calculation to show)

then the layer's folded chain (batch norm as a per-channel affine, activations, scalar arithmetic,
a final softmax / log_softmax) step by step: `steps` holds (op, value after it).  Sums run in
float64 from the float32 inputs, so `result` differs from the network's own `value` by rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from convscope.engine.graph.dag import Dag, DagLayer, Weights, incoming, map_back

VECTOR_OPS = ("softmax", "log_softmax")  # chain steps that need the whole layer, not one node


@dataclass(frozen=True)
class NodeExplanation:
    node: int
    layer: DagLayer
    kind: str
    value: float  # what the network computed (the flat activations)
    sources: np.ndarray  # (E,) source node ids
    edge_set: np.ndarray  # (E,) which of layer.inputs each edge belongs to
    inputs: np.ndarray  # (E,) float32 source values
    weights: np.ndarray | None = None  # (E,) conv / dense edge weights
    weighted_sum: float | None = None  # sum of w*x (conv, dense), of the window (pool), of the inputs (add)
    bias: float | None = None
    pre_activation: float | None = None  # the layer op's own result, before the chain
    steps: tuple[tuple[str, float], ...] = ()  # the chain: (op, value after it)
    result: float | None = None  # after the chain: equals `value` up to rounding

    @property
    def activation(self) -> str:
        return self.layer.activation

    def to_dict(self) -> dict:
        """JSON-able, for --explain-json."""
        f = lambda v: None if v is None else float(v)  # noqa: E731
        return {
            "node": self.node,
            "layer": self.layer.name,
            "kind": self.kind,
            "value": self.value,
            "sources": self.sources.tolist(),
            "edge_set": self.edge_set.tolist(),
            "inputs": self.inputs.astype(float).tolist(),
            "weights": None if self.weights is None else self.weights.astype(float).tolist(),
            "sum": f(self.weighted_sum),
            "bias": f(self.bias),
            "pre_activation": f(self.pre_activation),
            "activation": self.activation,
            "steps": [[op, v] for op, v in self.steps],
            "result": f(self.result),
        }


def _unit(layer: DagLayer, off: int) -> int:
    """The channel of a grid node, or the unit of a vector node: what per-channel parameters index."""
    return off // (layer.shape[1] * layer.shape[2]) if layer.is_grid else off


def apply_step(step: dict, z: np.ndarray, unit, weights: Weights | None, layer: str) -> np.ndarray:
    """One folded chain step on z (float64), `unit` the channel / unit index (scalar or array)."""
    op, v = step["op"], step.get("value", 0.0)
    if "key" in step and op != "affine":  # a per-channel / per-unit constant
        v = (weights or {})[layer][step["key"] + ".value"].astype(np.float64)[unit]
    if op == "identity":
        return z
    if op == "relu":
        return np.maximum(z, 0.0)
    if op == "leaky_relu":
        return np.where(z >= 0, z, z * v)
    if op == "clamp":
        lo, hi = step.get("min"), step.get("max")
        return np.clip(z, -np.inf if lo is None else lo, np.inf if hi is None else hi)
    if op == "tanh":
        return np.tanh(z)
    if op == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if op == "silu":
        return z / (1 + np.exp(-z))
    if op == "elu":
        return np.where(z > 0, z, v * np.expm1(z))
    if op == "selu":
        a, s = 1.6732632423543772, 1.0507009873554805
        return s * np.where(z > 0, z, a * np.expm1(z))
    if op == "softplus":
        beta, thr = step.get("beta", 1.0), step.get("threshold", 20.0)
        return np.where(z * beta > thr, z, np.log1p(np.exp(z * beta)) / beta)
    if op == "gelu":
        if step.get("approximate", "none") == "tanh":
            return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))
        from math import erf

        return 0.5 * z * (1 + np.vectorize(erf)(z / np.sqrt(2)))
    if op == "hardswish":
        return z * np.clip(z + 3, 0, 6) / 6
    if op == "hardsigmoid":
        return np.clip(z + 3, 0, 6) / 6
    if op == "mish":
        return z * np.tanh(np.log1p(np.exp(z)))
    if op == "neg":
        return -z
    if op == "add":
        return z + v
    if op == "sub":
        return z - v
    if op == "rsub":
        return v - z
    if op == "mul":
        return z * v
    if op == "div":
        return z / v
    if op == "rdiv":
        return v / z
    if op == "pow":
        return z**v
    if op == "affine":
        entry = (weights or {})[layer]
        scale = entry[step["key"] + ".scale"].astype(np.float64)
        shift = entry[step["key"] + ".shift"].astype(np.float64)
        return z * scale[unit] + shift[unit]
    if op == "softmax":
        e = np.exp(z - z.max())
        return e / e.sum()
    if op == "log_softmax":
        m = z.max()
        return z - m - np.log(np.exp(z - m).sum())
    raise ValueError(f"unknown chain step {op!r}")


def _op_value(dag: Dag, layer: DagLayer, off: int, acts: np.ndarray, weights: Weights | None):
    """(edges, inputs, weights, weighted sum, bias, pre-activation) of node `off` of `layer`."""
    node = layer.start + off
    edges = incoming(dag, node, weights)
    x = acts[edges.sources].astype(np.float32)
    w = bias = total = None
    kind = layer.kind
    if kind in ("conv", "dense"):
        entry = (weights or {}).get(layer.name)
        if entry is None or "weight" not in entry:
            raise ValueError(f"no weights for layer {layer.name!r} of {dag.model}")
        w = entry["weight"].reshape(-1)[edges.weight_index].astype(np.float32)
        b = entry.get("bias")
        bias = float(b.reshape(-1)[_unit(layer, off)]) if b is not None else 0.0
        total = float((w.astype(np.float64) * x).sum())
        pre = total + bias
    elif kind == "pool":
        e = layer.inputs[0]
        if e.pool == "max":
            total = pre = float(x.max())
        else:
            total = float(x.astype(np.float64).sum())
            if e.adaptive or not e.count_include_pad:
                divisor = len(x)
            else:
                # torch divides by the window clipped to the padded map, taps in padding included
                _, ho, wo = layer.shape
                oy, ox = divmod(off % (ho * wo), wo)
                divisor = 1
                axes = zip((oy, ox), e.in_shape[1:], e.kernel, e.stride, e.padding, strict=True)
                for o, n, k, st, p in axes:
                    divisor *= min(o * st - p + k, n + p) - (o * st - p)
            pre = total / divisor
    elif kind == "add":
        coefs = np.array([layer.inputs[k].coef for k in edges.edge_set], np.float64)
        total = pre = float((coefs * x).sum())
    elif kind == "mul":
        total = pre = float(np.prod(x.astype(np.float64)))
    elif kind in ("concat", "elementwise"):
        total = pre = float(x[0]) if len(x) else 0.0
    else:
        pre = None
    return edges, x, w, total, bias, pre


def _layer_pre(dag: Dag, layer: DagLayer, acts: np.ndarray, weights: Weights | None) -> np.ndarray:
    """Every unit's pre-activation of a dense layer (float64), for chains that end in a softmax."""
    e = layer.inputs[0]
    src = dag.layer(e.source)
    n_in = int(np.prod(e.in_shape))
    idx = map_back(e.steps, np.arange(n_in)) if e.steps else np.arange(n_in)
    x = np.where(idx >= 0, acts[src.start + np.maximum(idx, 0)], 0.0).astype(np.float64)
    entry = weights[layer.name]
    z = entry["weight"].astype(np.float64).reshape(layer.count, n_in) @ x
    if entry.get("bias") is not None:
        z = z + entry["bias"].astype(np.float64)
    return z


def explain_node(dag: Dag, node: int, activations: np.ndarray, weights: Weights | None) -> NodeExplanation:
    """The calculation of `node` for flat `activations` ((N,) by node id) and the model's `weights`."""
    acts = np.asarray(activations, np.float32).reshape(-1)
    if len(acts) != dag.total_nodes:
        raise ValueError(f"{len(acts)} activations for {dag.total_nodes} nodes of {dag.model}")
    layer = dag.layer_of(int(node))
    off = int(node) - layer.start
    edges, x, w, total, bias, pre = _op_value(dag, layer, off, acts, weights)
    steps: list[tuple[str, float]] = []
    result = float(acts[node]) if pre is None else pre
    if pre is not None and layer.chain:
        if any(s["op"] in VECTOR_OPS for s in layer.chain):
            if layer.kind != "dense":
                raise ValueError(f"layer {layer.name!r}: softmax chains are explained on dense layers only")
            z = _layer_pre(dag, layer, acts, weights)
            z[off] = pre  # this node's own sum, as computed above
            units = np.arange(layer.count)
            for s in layer.chain:
                z = apply_step(s, z, units, weights, layer.name)
                steps.append((s["op"], float(z[off])))
        else:
            z = np.float64(pre)
            unit = _unit(layer, off)
            for s in layer.chain:
                z = apply_step(s, z, unit, weights, layer.name)
                steps.append((s["op"], float(z)))
        result = steps[-1][1]
    return NodeExplanation(
        node=int(node),
        layer=layer,
        kind=layer.kind,
        value=float(acts[node]),
        sources=edges.sources,
        edge_set=edges.edge_set,
        inputs=x,
        weights=w,
        weighted_sum=total,
        bias=bias,
        pre_activation=pre,
        steps=tuple(steps),
        result=result,
    )
