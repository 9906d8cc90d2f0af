"""What one node of a Dag computes, laid out for the Node details panel with the real numbers.

Harley 2015 (sec. 3.1, 3.2): clicking a node shows "the numerical input and output of the node, as
well as the calculation being performed", and for a convolutional node the image patch and the
filter.  The calculation itself is engine/graph/dag_explain.py's `explain_node` (the layer's op, then
its folded chain: batch norm, activations, a final softmax); `explain(dag, node, activations, weights)`
adds what the panel shows beside it, and the panel only formats the `Explanation`:

  conv          the terms w_i x_i, and the input patch, the filter and their product as
                (C_in / groups, kh, kw) blocks, whatever the kernel, stride, dilation or groups
  dense         the terms w_i x_i (a bar chart of the largest, a table of all)
  pool          the window and its winner (max), or its sum and divisor (average)
  add / mul     one term per input; concat / elementwise: the input copied
  input, opaque the value only
  the output    (the Dag's output layer) every class's value and probability, and this class's name

Sums are taken in float64 from the float32 inputs and weights; they differ from torch's float32
result by rounding only (about 1e-6), and `value` keeps what the network itself computed.  A blank
drawing gives finite numbers throughout (all zeros in, biases out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from convscope.engine.graph.dag import Dag, DagLayer, Weights, incoming
from convscope.engine.graph.dag_explain import explain_node
from convscope.engine.graph.edges import locate, pool_divisor

MAX_PATCH_CHANNELS = 64  # conv details: the first this many input channels of the patch are drawn
HEATMAP_BOX = (280.0, 88.0)  # panel units one conv heatmap may span: three share the panel with the text
STRIP_CHANNELS = 8  # up to this many input channels in one strip (LeNet's 1 and 6); more wrap into rows


@dataclass(frozen=True)
class Explanation:
    node: int
    layer: DagLayer
    kind: str  # the layer's kind
    channel: int | None  # grid layers: feature map, row, column
    y: int | None
    x: int | None
    unit: int | None  # vector layers: position in the layer
    value: float  # the node's value as the network computed it
    activation: str  # the folded chain, e.g. "affine -> relu" ("identity" when empty)
    sources: np.ndarray  # (E,) node ids of the inputs
    source_names: tuple[str, ...]  # per input: 'pool2 c3 (1, 4)' or 'fc1 #41'
    inputs: np.ndarray  # (E,) float32 their values
    weights: np.ndarray | None = None  # (E,) float32 edge weights (conv, dense)
    terms: np.ndarray | None = None  # (E,) float64 what each input adds: w x (conv, dense), +-x (add), x / n
    bias: float | None = None
    weighted_sum: float | None = None  # the layer op's sum (of the terms, of a window, of the inputs)
    pre_activation: float | None = None  # the op's result, before the chain
    chain: tuple[tuple[str, float], ...] = ()  # the folded steps as text, each with the value after it
    result: float | None = None  # after the chain: equals `value` up to rounding
    # conv: (C_in / groups, kh, kw) blocks; taps in zero padding hold 0
    patch: np.ndarray | None = None
    filter: np.ndarray | None = None
    product: np.ndarray | None = None
    # pool
    pool: str = ""  # "max" or "avg"
    window: np.ndarray | None = None  # (kh, kw) input values (padding taps 0)
    divisor: float | None = None  # average pooling: what the window's sum is divided by
    winner: int | None = None  # max pooling: flat index into window of the first largest input
    winner_node: int | None = None
    ties: int = 0  # how many other inputs equal the winner
    # the model's output layer
    classes: tuple[str, ...] = ()  # a name per unit of the output layer
    outputs: np.ndarray | None = None  # (classes,) float64 the layer's values (logits, log-probabilities ...)
    output_kind: str = ""  # what `outputs` are: "logits", "log_probabilities" or "probabilities"
    probabilities: np.ndarray | None = None  # (classes,) float64
    label: str | None = None  # class name of this output unit

    @property
    def probability(self) -> float | None:
        """This output unit's class probability (None off the output layer)."""
        return None if self.probabilities is None else float(self.probabilities[self.unit])

    def top_terms(self, n: int = 12) -> np.ndarray:
        """Indices into `terms` of the `n` largest |term|, largest first (empty without terms)."""
        if self.terms is None:
            return np.zeros(0, np.int64)
        n = min(n, len(self.terms))
        idx = np.argpartition(-np.abs(self.terms), n - 1)[:n] if n else np.zeros(0, np.int64)
        return idx[np.argsort(-np.abs(self.terms[idx]), kind="stable")]


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def class_names(dag: Dag, n: int, classes: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A name per output unit: `classes` (an InputSpec's), else the Dag's, else "0", "1", ..."""
    for names in (classes, dag.classes):
        if len(names) == n:
            return tuple(names)
    return tuple(str(i) for i in range(n))


def output_layer(dag: Dag) -> DagLayer | None:
    """The layer holding the model's output when it is a vector (the guesses' layer), else None."""
    if not dag.output:
        return None
    layer = dag.layer(dag.output)
    return None if layer.is_grid else layer


def probabilities_of(dag: Dag, values: np.ndarray) -> np.ndarray:
    """Class probabilities from the output layer's values (float64): the softmax of logits, the
    exponential of log-probabilities, probabilities as they are."""
    v = np.asarray(values, np.float64)
    if dag.output_kind == "probabilities":
        return v
    if dag.output_kind == "log_probabilities":
        return np.exp(v)
    return softmax(v)  # logits (a NetSpec's output layer keeps them, before its softmax step)


def node_label(dag: Dag, node: int) -> str:
    """Short name of node `node`: 'pool2 c3 (1, 4)' (x, y) or 'fc1 #41'."""
    layer = dag.layer_of(int(node))
    off = int(node) - layer.start
    if layer.is_grid:
        _, h, w = layer.shape
        ch, rest = divmod(off, h * w)
        y, x = divmod(rest, w)
        return f"{layer.name} c{ch} ({x}, {y})"
    return f"{layer.name} #{off}"


def node_labels(dag: Dag, nodes: np.ndarray) -> tuple[str, ...]:
    """`node_label` of many nodes at once (a conv node of a big net has thousands of inputs)."""
    nodes = np.asarray(nodes, np.int64)
    starts = np.array([x.start for x in dag.layers], np.int64)
    which = np.searchsorted(starts, nodes, side="right") - 1
    out = [""] * len(nodes)
    for i in np.unique(which):
        layer = dag.layers[int(i)]
        at = np.flatnonzero(which == i)
        off = nodes[at] - layer.start
        if layer.is_grid:
            _, h, w = layer.shape
            ch, rest = np.divmod(off, h * w)
            y, x = np.divmod(rest, w)
            for k, c, yy, xx in zip(at.tolist(), ch.tolist(), y.tolist(), x.tolist(), strict=True):
                out[k] = f"{layer.name} c{c} ({xx}, {yy})"
        else:
            for k, o in zip(at.tolist(), off.tolist(), strict=True):
                out[k] = f"{layer.name} #{o}"
    return tuple(out)


def _chain_text(layer: DagLayer, unit: int, weights: Weights | None) -> list[str]:
    """Each folded step as it applies to this node, e.g. 'batch norm: z x 0.97 + 0.12', 'relu'."""
    out = []
    for step in layer.chain:
        op = step["op"]
        if op == "affine":
            entry = (weights or {}).get(layer.name, {})
            scale, shift = entry.get(step["key"] + ".scale"), entry.get(step["key"] + ".shift")
            if scale is not None and shift is not None:
                out.append(f"batch norm: z x {fmt(float(scale[unit]), 4)} + ({fmt(float(shift[unit]), 4)})")
            else:
                out.append("batch norm")
        elif "key" in step:
            out.append(f"{op} a per-channel constant")
        elif "value" in step and op not in ("leaky_relu", "elu"):
            out.append(f"{op} {fmt(float(step['value']), 4)}")
        elif op in ("softmax", "log_softmax"):
            out.append(f"{op} over the layer")
        else:
            out.append(op)
    return out


def explain(dag: Dag, node: int, activations: np.ndarray, weights: Weights | None) -> Explanation:
    """The calculation of `node` for the flat `activations` ((N,) by node id) and the model's
    `weights` (the applied ones, as trace() records them).

    Raises ValueError when `weights` lack the node's layer (a conv / dense node)."""
    acts = np.asarray(activations, np.float32).reshape(-1)
    ne = explain_node(dag, node, acts, weights)  # checks the length and the weights
    where = locate(dag, node)
    layer = where.layer
    x = ne.inputs
    unit = where.channel if layer.is_grid else where.unit
    texts = _chain_text(layer, int(unit), weights)
    fields: dict = dict(
        node=int(node),
        layer=layer,
        kind=layer.kind,
        channel=where.channel,
        y=where.y,
        x=where.x,
        unit=where.unit,
        value=ne.value,
        activation=layer.activation,
        sources=ne.sources,
        source_names=node_labels(dag, ne.sources),
        inputs=x,
        weights=ne.weights,
        bias=ne.bias,
        weighted_sum=ne.weighted_sum,
        pre_activation=ne.pre_activation,
        chain=tuple((t, v) for t, (_, v) in zip(texts, ne.steps, strict=True)),
        result=ne.result,
    )
    x64 = x.astype(np.float64)
    if layer.kind in ("conv", "dense") and ne.weights is not None:
        fields["terms"] = ne.weights.astype(np.float64) * x64
    elif layer.kind == "add":
        fields["terms"] = np.array([layer.inputs[k].coef for k in ne.edge_set], np.float64) * x64
    if layer.kind == "conv":
        fields.update(_conv_blocks(dag, layer, int(node), x, weights))
    elif layer.kind == "pool":
        fields.update(_pool_window(dag, layer, int(node), x))
    out = output_layer(dag)
    if out is not None and layer.name == out.name:
        values = acts[layer.start : layer.stop].astype(np.float64)
        probs = probabilities_of(dag, values)
        names = class_names(dag, layer.count)
        fields.update(
            classes=names,
            outputs=values,
            output_kind=dag.output_kind,
            probabilities=probs,
            label=names[where.unit],
        )
    return Explanation(**fields)


def _conv_blocks(dag: Dag, layer: DagLayer, node: int, x: np.ndarray, weights: Weights | None) -> dict:
    """The input patch, the filter and their product as (C_in / groups, kh, kw) blocks (the first
    MAX_PATCH_CHANNELS channels), taps that fall into padding 0."""
    e = layer.inputs[0]
    kh, kw = e.kernel
    cin = e.in_shape[0] // e.groups
    edges = incoming(dag, node, weights)
    patch = np.zeros(cin * kh * kw, np.float32)
    patch[edges.tap] = x
    ch = (node - layer.start) // (layer.shape[1] * layer.shape[2])
    filt = weights[layer.name]["weight"].reshape(layer.shape[0], cin * kh * kw)[ch].astype(np.float32)
    keep = min(cin, MAX_PATCH_CHANNELS)
    patch = patch.reshape(cin, kh, kw)[:keep]
    filt = filt.reshape(cin, kh, kw)[:keep]
    return dict(patch=patch, filter=filt, product=(patch.astype(np.float64) * filt).astype(np.float32))


def _pool_window(dag: Dag, layer: DagLayer, node: int, x: np.ndarray) -> dict:
    """The pooling window's values (kh, kw), and its winner (max) or divisor (average)."""
    e = layer.inputs[0]
    edges = incoming(dag, node)
    if e.adaptive:
        kh, kw = _adaptive_window(layer, node, e.in_shape)
    else:
        kh, kw = e.kernel
    window = np.zeros(kh * kw, np.float32)
    valid = np.zeros(kh * kw, bool)
    window[edges.tap] = x
    valid[edges.tap] = True
    out: dict = dict(pool=e.pool or "max", window=window.reshape(kh, kw))
    if e.pool != "max":
        return {**out, "divisor": pool_divisor(layer, node - layer.start), "terms": None}
    if not valid.any():
        return out
    # Taps that fall into padding never win: max pooling pads with -inf.
    best = float(window[valid].max())
    at = valid & (window == best)
    winner = int(np.flatnonzero(at)[0])
    return {
        **out,
        "winner": winner,
        "winner_node": int(edges.sources[list(edges.tap).index(winner)]),
        "ties": int(at.sum()) - 1,
    }


def _adaptive_window(layer: DagLayer, node: int, in_shape: tuple[int, ...]) -> tuple[int, int]:
    _, ho, wo = layer.shape
    oy, ox = divmod((node - layer.start) % (ho * wo), wo)
    h, w = in_shape[1:]
    return (
        -(-((oy + 1) * h) // ho) - (oy * h) // ho,
        -(-((ox + 1) * w) // wo) - (ox * w) // wo,
    )


def heatmap_grid(channels: int, kh: int, kw: int) -> tuple[int, int, float]:
    """How a conv node's patch / filter / product heatmaps are laid out: (tiles per row, rows, panel
    units per tap).  A few channels make one strip, as wide as fits HEATMAP_BOX (between 4 and 16 units
    a tap); more wrap into rows of 8, 16, 32 ... (channel 8 r + k is easy to find), the count that draws
    the taps biggest inside the box."""
    if channels <= STRIP_CHANNELS:
        return channels, 1, max(4.0, min(16.0, HEATMAP_BOX[0] / (channels * (kw + 1))))
    best = (channels, 1, 0.0)
    per_row = STRIP_CHANNELS
    while True:
        per_row = min(per_row, channels)
        rows = -(-channels // per_row)
        px = min(16.0, HEATMAP_BOX[0] / (per_row * (kw + 1) - 1), HEATMAP_BOX[1] / (rows * (kh + 1) - 1))
        if px > best[2] + 1e-9:
            best = (per_row, rows, px)
        if per_row == channels:
            return best
        per_row *= 2


# -- text ----------------------------------------------------------------------------------------------


def fmt(v: float | None, digits: int = 5) -> str:
    """A number for the panel: significant digits, '-' for missing or non-finite values (never 'nan')."""
    if v is None or not np.isfinite(v):
        return "-"
    if v == 0:
        return "0"
    return f"{v:.{digits}g}"


def position_text(e: Explanation) -> str:
    """'channel 3, (x 12, y 7)' or 'unit 41  (class 7)'."""
    if e.channel is not None:
        return f"channel {e.channel}, (x {e.x}, y {e.y})"
    return f"unit {e.unit}" + (f"  (class {e.label})" if e.label is not None else "")


def _op_lines(e: Explanation) -> list[str]:
    """The layer op's own calculation (before the chain)."""
    if e.kind == "input":
        return [f"input value = {fmt(e.value)}"]
    if e.kind == "opaque":
        what = e.layer.label or "an op"
        return [f"{what}: not shown node by node (a pass-through block)", f"value = {fmt(e.value)}"]
    if e.kind in ("conv", "dense"):
        return [
            f"z = sum of {len(e.inputs)} terms w*x + b",
            f"  = {fmt(e.weighted_sum)} + ({fmt(e.bias)})",
            f"  = {fmt(e.pre_activation)}   (pre-activation)",
        ]
    if e.kind == "pool" and e.pool == "max":
        if e.window is None or e.winner is None:
            return [f"max over an empty window = {fmt(e.pre_activation)}"]
        vals = ", ".join(fmt(v, 4) for v in e.window.reshape(-1)[:16])
        more = ", ..." if e.window.size > 16 else ""
        kw = e.window.shape[1]
        wy, wx = divmod(e.winner, kw)
        lines = [
            f"max({vals}{more}) = {fmt(e.pre_activation)}",
            f"winner: window (x {wx}, y {wy}), node {e.winner_node}",
        ]
        if e.ties:
            lines.append(f"({e.ties} other input{'s' if e.ties > 1 else ''} tie with it; the first wins)")
        return lines
    if e.kind == "pool":
        return [
            f"average: sum of {len(e.inputs)} inputs / {fmt(e.divisor)}",
            f"  = {fmt(e.weighted_sum)} / {fmt(e.divisor)} = {fmt(e.pre_activation)}",
        ]
    if e.kind in ("add", "mul"):
        sign = " + " if e.kind == "add" else " * "
        parts = [fmt(float(t), 4) for t in (e.terms if e.terms is not None else e.inputs)]
        return [f"{sign.join(parts)} = {fmt(e.pre_activation)}"]
    src = e.source_names[0] if e.source_names else "-"
    return [f"copies {src}: {fmt(e.pre_activation)}"]  # concat, elementwise


def formula_lines(e: Explanation) -> list[str]:
    """The calculation as a few lines of text with the real numbers."""
    lines = _op_lines(e)
    for text, v in e.chain:
        if text == "relu":
            lines.append(f"relu: max(0, z) = {fmt(v)}")
        else:
            lines.append(f"{text} = {fmt(v)}")
    last = e.layer.chain[-1]["op"] if e.layer.chain else ""
    if e.probabilities is not None and e.output_kind == "logits" and last != "softmax":
        lines.append(f"p = softmax over the {len(e.probabilities)} outputs = {fmt(e.probability)}")
    elif e.probabilities is not None and e.output_kind == "log_probabilities":
        lines.append(f"p = exp(log p) = {fmt(e.probability)}")
    return lines
