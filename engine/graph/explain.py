"""What one node computes, written out with the real numbers of the current input (pure numpy).

Harley 2015 (sec. 3.1, 3.2): clicking a node shows "the numerical input and output of the node, as
well as the calculation being performed", and for a convolutional node the image patch and the
filter.  `explain(spec, node, activations, weights)` rebuilds that calculation from the weights
the worker sent once per model (features.inference.handle: `handle.weights`) and the activations of the
newest result; the details panel only formats the `Explanation`.

  conv / fc   z = sum_i w_i x_i + b  (every term kept), then the activation function: result = f(z)
              conv also: the input patch, the filter and their elementwise product, (C_in, k, k)
  pool        the k x k window and which input won: result = max(window)
  output      the logit z = sum_i w_i x_i + b, then the softmax over all logits:
              p = exp(z - max z) / sum_j exp(z_j - max z)  (max subtracted: no overflow)
  input       the pixel value

Sums are taken in float64 from the float32 inputs and weights; they differ from torch's float32
result by rounding only (about 1e-6), and `value` keeps what the network itself computed.  A blank
drawing gives finite numbers throughout (all zeros in, biases out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from convscope.engine.graph.edges import Weights, conv_geometry, incoming, locate, pool_geometry
from convscope.engine.graph.spec import LayerSpec, NetSpec


@dataclass(frozen=True)
class Explanation:
    node: int
    layer: LayerSpec
    kind: str  # the layer's kind
    channel: int | None  # grid layers: feature map, row, column
    y: int | None
    x: int | None
    unit: int | None  # vector layers: position in the layer
    value: float  # the node's output as the network computed it (output layer: the logit)
    activation: str  # "relu", "identity", "max" (pool), "softmax" (output), "input"
    source_layer: LayerSpec | None  # the layer the inputs come from (None for the input layer)
    sources: np.ndarray  # (E,) node ids of the inputs
    inputs: np.ndarray  # (E,) float32 their activations
    weights: np.ndarray | None = None  # (E,) float32 edge weights (conv, fc, output)
    terms: np.ndarray | None = None  # (E,) float64 w_i * x_i
    bias: float | None = None
    weighted_sum: float | None = None  # sum of the terms
    pre_activation: float | None = None  # weighted_sum + bias
    result: float | None = None  # f(pre_activation) (conv, fc), max (pool), probability (output)
    # conv: (C_in, k, k) blocks; taps in zero padding hold 0
    patch: np.ndarray | None = None
    filter: np.ndarray | None = None
    product: np.ndarray | None = None
    # pool
    window: np.ndarray | None = None  # (k, k) input values
    winner: int | None = None  # flat index into window of the first largest input
    winner_node: int | None = None
    ties: int = 0  # how many other inputs equal the winner
    # output
    logits: np.ndarray | None = None  # (classes,) float64
    probabilities: np.ndarray | None = None  # (classes,) float64 softmax of logits
    label: str | None = None  # class name of this output unit
    exp_shifted: float | None = None  # exp(z - max z) of this unit
    exp_sum: float | None = None  # sum_j exp(z_j - max z)

    def top_terms(self, n: int = 12) -> np.ndarray:
        """Indices into `terms` of the `n` largest |w x|, largest first (empty without terms)."""
        if self.terms is None:
            return np.zeros(0, np.int64)
        n = min(n, len(self.terms))
        idx = np.argpartition(-np.abs(self.terms), n - 1)[:n] if n else np.zeros(0, np.int64)
        return idx[np.argsort(-np.abs(self.terms[idx]), kind="stable")]


def apply_activation(name: str, z: float) -> float:
    if name == "relu":
        return max(0.0, z)
    if name in ("identity", "softmax"):  # softmax is taken over the layer, see explain()
        return z
    raise ValueError(f"unknown activation {name!r}")


def softmax(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(probabilities, exp(z - max z), their sum), in float64."""
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    total = float(e.sum())
    return e / total, e, total


def explain(
    spec: NetSpec,
    node: int,
    activations: np.ndarray,
    weights: Weights | None,
) -> Explanation:
    """The calculation of `node` for the flat activations `activations` ((N,) by node id, the output
    layer holding logits, as the worker sends them) and the model's `weights`.

    Raises ValueError when `weights` lack the node's layer (a conv / fc / output node)."""
    acts = np.asarray(activations, np.float32).reshape(-1)
    if len(acts) != spec.total_nodes:
        raise ValueError(f"{len(acts)} activations for {spec.total_nodes} nodes of {spec.model}")
    where = locate(spec, node)
    layer = where.layer
    edges = incoming(spec, node)
    x = acts[edges.sources]
    base = dict(
        node=int(node),
        layer=layer,
        kind=layer.kind,
        channel=where.channel,
        y=where.y,
        x=where.x,
        unit=where.unit,
        value=float(acts[node]),
        source_layer=edges.source_layer,
        sources=edges.sources,
        inputs=x,
    )
    if layer.kind == "input" or edges.source_layer is None:
        return Explanation(**base, activation="input", result=float(acts[node]))

    if layer.kind == "pool":
        below = edges.source_layer
        k, _, _ = pool_geometry(layer, below)
        window = np.zeros(k * k, np.float32)
        window[edges.tap] = x
        # Taps that fall into padding never win: max pooling pads with -inf.
        valid = np.zeros(k * k, bool)
        valid[edges.tap] = True
        best = float(window[valid].max())
        winner = int(np.flatnonzero(valid & (window == best))[0])
        ties = int((valid & (window == best)).sum()) - 1
        return Explanation(
            **base,
            activation="max",
            result=best,
            window=window.reshape(k, k),
            winner=winner,
            winner_node=int(edges.sources[list(edges.tap).index(winner)]),
            ties=ties,
        )

    entry = (weights or {}).get(layer.name)
    if entry is None or "weight" not in entry:
        raise ValueError(f"no weights for layer {layer.name!r} of {spec.model}")
    w = entry["weight"].reshape(-1)[edges.weight_index].astype(np.float32)
    out_index = where.channel if layer.is_grid else where.unit
    b = entry.get("bias")
    bias = float(b.reshape(-1)[out_index]) if b is not None else 0.0
    terms = w.astype(np.float64) * x.astype(np.float64)
    total = float(terms.sum())
    z = total + bias
    fields = dict(base, weights=w, terms=terms, bias=bias, weighted_sum=total, pre_activation=z)

    if layer.kind == "conv":
        below = edges.source_layer
        cin = below.shape[0]
        k, _, _ = conv_geometry(layer, below)
        patch = np.zeros(cin * k * k, np.float32)
        filt = entry["weight"].reshape(layer.shape[0], cin * k * k)[out_index].astype(np.float32)
        patch[edges.tap] = x
        patch = patch.reshape(cin, k, k)
        filt = filt.reshape(cin, k, k)
        return Explanation(
            **fields,
            activation=layer.activation,
            result=apply_activation(layer.activation, z),
            patch=patch,
            filter=filt,
            product=(patch.astype(np.float64) * filt).astype(np.float32),
        )

    if layer.kind == "output":
        logits = acts[layer.start : layer.stop].astype(np.float64)
        logits[where.unit] = z  # this node's logit as computed here; the others as the network sent them
        probs, e, total_e = softmax(logits)
        label = spec.classes[where.unit] if where.unit < len(spec.classes) else str(where.unit)
        return Explanation(
            **fields,
            activation="softmax" if layer.activation == "softmax" else layer.activation,
            result=float(probs[where.unit])
            if layer.activation == "softmax"
            else apply_activation(layer.activation, z),
            logits=logits,
            probabilities=probs,
            label=label,
            exp_shifted=float(e[where.unit]),
            exp_sum=total_e,
        )

    return Explanation(**fields, activation=layer.activation, result=apply_activation(layer.activation, z))


# -- text ----------------------------------------------------------------------------------------------


def fmt(v: float | None, digits: int = 5) -> str:
    """A number for the panel: significant digits, '-' for missing or non-finite values (never 'nan')."""
    if v is None or not np.isfinite(v):
        return "-"
    if v == 0:
        return "0"
    return f"{v:.{digits}g}"


def node_label(layer: LayerSpec, node: int) -> str:
    """Short name of node `node` of `layer`: 'pool2 c3 (1, 4)' (x, y) or 'fc1 #41'."""
    off = int(node) - layer.start
    if layer.is_grid:
        _, h, w = layer.shape
        ch, rest = divmod(off, h * w)
        y, x = divmod(rest, w)
        return f"{layer.name} c{ch} ({x}, {y})"
    return f"{layer.name} #{off}"


def position_text(e: Explanation) -> str:
    """'channel 3, (x 12, y 7)' or 'unit 41'."""
    if e.channel is not None:
        return f"channel {e.channel}, (x {e.x}, y {e.y})"
    return f"unit {e.unit}" + (f"  (class {e.label})" if e.label is not None else "")


def formula_lines(e: Explanation) -> list[str]:
    """The calculation as a few lines of text with the real numbers."""
    if e.kind == "input" or e.activation == "input":
        return [f"input pixel = {fmt(e.value)}"]
    if e.kind == "pool":
        vals = ", ".join(fmt(v, 4) for v in e.window.reshape(-1))
        k = e.window.shape[0]
        wy, wx = divmod(e.winner, k)
        lines = [f"max({vals}) = {fmt(e.result)}", f"winner: window (x {wx}, y {wy}), node {e.winner_node}"]
        if e.ties:
            lines.append(f"({e.ties} other input{'s' if e.ties > 1 else ''} tie with it; the first wins)")
        return lines
    n = len(e.terms)
    lines = [
        f"z = sum of {n} terms w*x + b",
        f"  = {fmt(e.weighted_sum)} + ({fmt(e.bias)})",
        f"  = {fmt(e.pre_activation)}   (pre-activation)",
    ]
    if e.kind == "output" and e.activation == "softmax":
        lines += [
            "p = exp(z - max z) / sum_j exp(z_j - max z)",
            f"  = {fmt(e.exp_shifted)} / {fmt(e.exp_sum)} = {fmt(e.result)}",
        ]
    elif e.activation == "relu":
        lines.append(f"relu(z) = max(0, {fmt(e.pre_activation)}) = {fmt(e.result)}")
    else:
        lines.append(f"{e.activation}(z) = {fmt(e.result)}")
    return lines
