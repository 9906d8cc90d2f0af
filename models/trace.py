"""Trace any PyTorch CNN into a Dag (engine.graph.dag), with the weights it applies and its activations.

`trace(model, input_shape)` runs torch.fx's symbolic tracer over the model (eval mode; torch.export
where fx cannot: branches on shapes), executes
the graph once on a seeded input to learn every tensor's shape and every computed weight (e.g.
`F.conv2d(x, self.weight * self.mask)` gives the masked weight), and walks the graph in order:

  conv2d / linear / pooling / cat /             a node layer each (named by module path)
  add, sub, mul of two tensors
  batch norm (eval), activations, dropout,      folded into the layer whose value they transform, so
  scalar arithmetic, a final (log_)softmax      a node's value is what comes out of that chain
  flatten / view / reshape / permute /          index maps (no nodes): the next layer's edges land
  transpose / squeeze / zero pad / slicing,     on the right source nodes through them
  chunk / split pieces
  anything else                                 an opaque pass-through layer with its shape and label

`activations(traced, x)` runs the model once and returns every layer's value exactly as the Dag
describes it (the graph is rewritten to hand out a copy of each layer's tail tensor, so later
in-place ops cannot change it), the input and the class probabilities.  Imported by workers and
tools only (it imports torch).

Length: one walk over the traced graph, with a handler per op family that all read and extend the
same walk state (shapes, folded chains, index maps); the graph format itself is engine/graph/dag.py.
"""

from __future__ import annotations

import linecache
import math
import operator
import sys
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
from convscope.engine.graph.dag import Dag, DagLayer, EdgeSet, MapStep, Weights
from convscope.engine.graph.dag_explain import NodeExplanation, explain_node
from torch import nn


class TraceError(Exception):
    """The model cannot be traced or run at the given input shape; the message is one line."""


# -- what the graph's ops mean ---------------------------------------------------------------------------

_ACT_MODULES: dict[type, callable] = {
    nn.ReLU: lambda m: {"op": "relu"},
    nn.ReLU6: lambda m: {"op": "clamp", "min": 0.0, "max": 6.0},
    nn.LeakyReLU: lambda m: {"op": "leaky_relu", "value": float(m.negative_slope)},
    nn.Hardtanh: lambda m: {"op": "clamp", "min": float(m.min_val), "max": float(m.max_val)},
    nn.Tanh: lambda m: {"op": "tanh"},
    nn.Sigmoid: lambda m: {"op": "sigmoid"},
    nn.SiLU: lambda m: {"op": "silu"},
    nn.GELU: lambda m: {"op": "gelu", "approximate": m.approximate},
    nn.ELU: lambda m: {"op": "elu", "value": float(m.alpha)},
    nn.SELU: lambda m: {"op": "selu"},
    nn.Softplus: lambda m: {"op": "softplus", "beta": float(m.beta), "threshold": float(m.threshold)},
    nn.Hardswish: lambda m: {"op": "hardswish"},
    nn.Hardsigmoid: lambda m: {"op": "hardsigmoid"},
    nn.Mish: lambda m: {"op": "mish"},
}
_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_IDENTITY_NAMES = {
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "contiguous", "clone", "detach", "identity",
}  # fmt: skip
_VIEW_NAMES = {"permute", "transpose", "swapaxes", "swapdims", "pad", "constant_pad_nd"}
_RESHAPE_NAMES = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "unflatten", "view_as", "reshape_as"}
_ARITH = {
    operator.add: "add", operator.iadd: "add", torch.add: "add", "add": "add", "add_": "add",
    operator.sub: "sub", operator.isub: "sub", torch.sub: "sub", "sub": "sub", "sub_": "sub",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul", "mul": "mul", "mul_": "mul",
    operator.truediv: "div", operator.itruediv: "div", torch.div: "div", "div": "div", "div_": "div",
    operator.pow: "pow", torch.pow: "pow", "pow": "pow",
}  # fmt: skip


def _fname(n: fx.Node) -> str:
    """The op's bare name: 'relu' for F.relu, torch.relu and x.relu(); '' for modules."""
    if n.op == "call_method":
        return str(n.target).rstrip("_")
    if n.op == "call_function":
        if isinstance(n.target, torch._ops.OpOverload):  # torch.export's aten ops: aten.relu.default
            return n.target.overloadpacket.__name__.rstrip("_")
        return getattr(n.target, "__name__", str(n.target)).rstrip("_")
    return ""


def _is_aten(n: fx.Node) -> bool:
    return isinstance(n.target, torch._ops.OpOverload)


def _arg(n: fx.Node, i: int, name: str, default=None):
    if len(n.args) > i:
        return n.args[i]
    return n.kwargs.get(name, default)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int | float):
        return int(v), int(v)
    v = tuple(int(x) for x in v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def _act_step(n: fx.Node) -> dict | None:
    """The folded step of a functional / method activation, or None if `n` is not one."""
    name = _fname(n)
    if name in ("relu", "tanh", "sigmoid", "silu", "selu", "hardswish", "hardsigmoid", "mish", "neg"):
        return {"op": name}
    if name == "relu6":
        return {"op": "clamp", "min": 0.0, "max": 6.0}
    if name == "leaky_relu":
        return {"op": "leaky_relu", "value": float(_arg(n, 1, "negative_slope", 0.01))}
    if name == "elu":
        return {"op": "elu", "value": float(_arg(n, 1, "alpha", 1.0))}
    if name == "hardtanh":
        return {
            "op": "clamp",
            "min": float(_arg(n, 1, "min_val", -1.0)),
            "max": float(_arg(n, 2, "max_val", 1.0)),
        }
    if name == "gelu":
        return {"op": "gelu", "approximate": str(n.kwargs.get("approximate", "none"))}
    if name == "softplus":
        return {
            "op": "softplus",
            "beta": float(_arg(n, 1, "beta", 1.0)),
            "threshold": float(_arg(n, 2, "threshold", 20.0)),
        }
    if name in ("clamp", "clip"):
        lo, hi = _arg(n, 1, "min"), _arg(n, 2, "max")
        if isinstance(lo, fx.Node) or isinstance(hi, fx.Node):
            return None
        return {
            "op": "clamp",
            "min": None if lo is None else float(lo),
            "max": None if hi is None else float(hi),
        }
    return None


# -- the walk --------------------------------------------------------------------------------------------


@dataclass
class _Layer:
    name: str
    kind: str
    shape: tuple[int, ...]
    tail: fx.Node  # the fx node whose value (reshaped to `shape`) is the layer's value
    inputs: list[EdgeSet] = field(default_factory=list)
    chain: list[dict] = field(default_factory=list)
    label: str = ""
    weights: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Ref:
    """A tensor of the graph seen as a layer's value through index-map steps."""

    layer: _Layer
    steps: tuple[MapStep, ...]
    shape: tuple[int, ...]  # the tensor's shape without the batch dim
    path: tuple[fx.Node, ...]  # fx nodes from the layer's tail to this tensor (views, identities)


def _layer_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape if len(shape) in (1, 3) else (max(math.prod(shape), 1),)


def _add_step(steps: tuple[MapStep, ...], step: MapStep) -> tuple[MapStep, ...]:
    """Append `step`, merging neighbouring reshapes and dropping no-op ones."""
    if step.op == "reshape" and steps and steps[-1].op == "reshape":
        step = MapStep("reshape", steps[-1].in_shape, step.out_shape)
        steps = steps[:-1]
    if step.op == "slice" and steps and steps[-1].op == "slice":
        a = steps[-1]  # a box of a box is one box: in = a.start + (step.start + o * step.step) * a.step
        start = tuple(sa + sb * ka for sa, sb, ka in zip(a.start, step.start, a.step, strict=True))
        stride = tuple(ka * kb for ka, kb in zip(a.step, step.step, strict=True))
        step = MapStep("slice", a.in_shape, step.out_shape, start=start, step=stride)
        steps = steps[:-1]
    if step.op in ("reshape", "slice") and step.in_shape == step.out_shape:
        return steps
    return (*steps, step)


class _Walker:
    def __init__(self, gm: fx.GraphModule, values: dict[fx.Node, object]) -> None:
        self.gm = gm
        self.values = values
        self.modules = dict(gm.named_modules())
        self.layers: list[_Layer] = []
        self.refs: dict[fx.Node, _Ref] = {}
        self.names: set[str] = set()
        self.depends: set[fx.Node] = set()  # nodes whose value depends on the input

    # naming -------------------------------------------------------------------------------------------
    def _name(self, n: fx.Node, op: str) -> str:
        if n.op == "call_module":
            base = str(n.target)
        else:
            if n.op in ("call_function", "call_method"):
                key = n.target if n.op == "call_function" else str(n.target)
                op = _ARITH.get(key) if key in _ARITH else _fname(n)
            stack = n.meta.get("nn_module_stack") or {}
            path, cls = next(reversed(stack.values())) if stack else ("", "")
            cls = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
            if path and cls.startswith("torch.nn.modules.") and n.op == "call_function":
                base = path  # torch.export: the aten op of a torch.nn layer takes the layer's name
            else:
                base = f"{path}.{op}" if path else op
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def _shape(self, n: fx.Node) -> tuple[int, ...] | None:
        v = self.values.get(n)
        if not isinstance(v, torch.Tensor) or v.dim() == 0 or v.shape[0] != 1:
            return None
        return tuple(int(s) for s in v.shape[1:])

    # layers -------------------------------------------------------------------------------------------
    def _new_layer(self, n: fx.Node, kind: str, op: str, inputs: list[EdgeSet], label: str) -> _Layer:
        shape = self._shape(n)
        lshape = _layer_shape(shape if shape is not None else tuple(self.values[n].shape))
        layer = _Layer(self._name(n, op), kind, lshape, n, inputs, label=label)
        self.layers.append(layer)
        actual = shape if shape is not None else lshape
        steps = () if actual == lshape else (MapStep("reshape", lshape, actual),)
        self.refs[n] = _Ref(layer, steps, actual, (n,))
        return layer

    def _opaque(self, n: fx.Node, label: str) -> None:
        sources, seen = [], set()

        def visit(a):
            if isinstance(a, fx.Node):
                if a in self.refs:
                    r = self.refs[a]
                    if r.layer.name not in seen:
                        seen.add(r.layer.name)
                        sources.append(EdgeSet("opaque", r.layer.name, r.layer.shape, label=label))
                else:
                    fx.node.map_arg((a.args, a.kwargs), visit)
            return a

        fx.node.map_arg((n.args, n.kwargs), visit)
        self._new_layer(n, "opaque", "opaque", sources, label)

    def _edge(self, kind: str, ref: _Ref, **kw) -> EdgeSet:
        return EdgeSet(kind, ref.layer.name, ref.shape, steps=ref.steps, **kw)

    def _alias(self, n: fx.Node, ref: _Ref, step: MapStep | None = None) -> None:
        """`n` is `ref` seen through `step` (or the same tensor): no layer of its own."""
        steps = ref.steps if step is None else _add_step(ref.steps, step)
        shape = ref.shape if step is None else step.out_shape
        self.refs[n] = _Ref(ref.layer, steps, shape, (*ref.path, n))

    def _fold(self, n: fx.Node, ref: _Ref, step: dict, per_unit: bool = False) -> None:
        """Fold an elementwise step into ref's layer if nothing else reads the value before it; else
        give it a layer of its own that reads `ref` one to one."""
        layer = ref.layer
        only_reshapes = all(s.op == "reshape" for s in ref.steps)
        ok = (
            layer.kind != "input"
            and layer.tail is ref.path[0]
            and all(len(p.users) == 1 for p in ref.path)
            and only_reshapes
            and (not per_unit or not ref.steps)
        )
        if step["op"] in ("softmax", "log_softmax"):
            ok = ok and layer.kind == "dense" and len(ref.shape) == 1
        if ok:
            layer.chain.append(_attach(layer, step))
            layer.tail = n
            self.refs[n] = _Ref(layer, ref.steps, ref.shape, (n,))
            return
        if step["op"] in ("softmax", "log_softmax") or (per_unit and len(ref.shape) not in (1, 3)):
            self._opaque(n, step["op"])
            return
        new = self._new_layer(n, "elementwise", step["op"], [self._edge("elementwise", ref)], step["op"])
        new.chain.append(_attach(new, step))

    # ops ----------------------------------------------------------------------------------------------
    def _weight(self, a) -> torch.Tensor | None:
        """The concrete value of a weight argument, None when it depends on the input."""
        if a is None:
            return None
        if isinstance(a, fx.Node):
            if a in self.depends:
                raise _Unshowable("weights computed from the input")
            return self.values[a].detach()
        return a.detach() if isinstance(a, torch.Tensor) else None

    def _conv(self, n, ref, w, b, stride, padding, dilation, groups, computed: bool, label: str):
        if len(ref.shape) != 3 or w.dim() != 4:
            raise _Unshowable("conv on other than (N, C, H, W)")
        kh, kw = int(w.shape[2]), int(w.shape[3])
        dil = _pair(dilation)
        if isinstance(padding, str):
            tot = (dil[0] * (kh - 1), dil[1] * (kw - 1))
            if padding == "valid":
                pad = (0, 0)
            elif tot[0] % 2 or tot[1] % 2:
                raise _Unshowable("'same' padding with an even window")
            else:
                pad = (tot[0] // 2, tot[1] // 2)
        else:
            pad = _pair(padding)
        w_np = w.detach().float().cpu().numpy().copy()
        drop = computed and bool((w_np == 0).any())
        e = self._edge(
            "conv",
            ref,
            kernel=(kh, kw),
            stride=_pair(stride),
            padding=pad,
            dilation=dil,
            groups=int(groups),
            drop_zero=drop,
        )
        layer = self._new_layer(n, "conv", "conv", [e], label)
        layer.weights["weight"] = w_np
        bias = np.zeros(w_np.shape[0], np.float32) if b is None else b.detach().float().cpu().numpy().copy()
        layer.weights["bias"] = bias

    def _dense(self, n, ref, w, b, computed: bool, label: str):
        if len(ref.shape) != 1 or w.dim() != 2:
            raise _Unshowable("linear on other than (N, features)")
        w_np = w.detach().float().cpu().numpy().copy()
        e = self._edge("dense", ref, drop_zero=computed and bool((w_np == 0).any()))
        layer = self._new_layer(n, "dense", "linear", [e], label)
        layer.weights["weight"] = w_np
        layer.weights["bias"] = (
            np.zeros(w_np.shape[0], np.float32) if b is None else b.detach().float().cpu().numpy().copy()
        )

    def _pool(self, n, ref, mode: str, kernel=None, stride=None, padding=0, dilation=1, adaptive=False,
              include_pad=True, label=""):  # fmt: skip
        if len(ref.shape) != 3:
            raise _Unshowable("pooling on other than (N, C, H, W)")
        kw = dict(pool=mode, adaptive=adaptive, count_include_pad=bool(include_pad))
        if not adaptive:
            k = _pair(kernel)
            s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _pair(stride)
            kw.update(kernel=k, stride=s, padding=_pair(padding), dilation=_pair(dilation))
        self._new_layer(n, "pool", f"{mode}pool", [self._edge("pool", ref, **kw)], label)

    def _batch_norm(self, n, ref, mean, var, weight, bias, eps) -> None:
        if mean is None or var is None or len(ref.shape) not in (1, 3):
            raise _Unshowable("batch norm without running statistics")
        scale = 1.0 / torch.sqrt(var.double() + eps)
        if weight is not None:
            scale = scale * weight.double()
        shift = -mean.double() * scale + (0.0 if bias is None else bias.double())
        params = {
            "scale": scale.detach().float().cpu().numpy(),
            "shift": shift.detach().float().cpu().numpy(),
        }
        self._fold(n, ref, {"op": "bn", "params": params}, per_unit=True)

    def _binary(self, n: fx.Node, op: str) -> None:
        a, b = n.args[0], n.args[1] if len(n.args) > 1 else n.kwargs.get("other")
        ta, tb = a in self.refs, b in self.refs
        if ta and tb:
            ra, rb = self.refs[a], self.refs[b]
            out = self._shape(n)
            if op not in ("add", "sub", "mul") or n.kwargs.get("alpha") is not None:
                raise _Unshowable(f"{op} of two tensors")
            if out is None or len(out) not in (1, 3) or any(len(r.shape) > len(out) for r in (ra, rb)):
                raise _Unshowable(f"{op} of two tensors shaped {ra.shape}, {rb.shape}")
            kind = "mul" if op == "mul" else "add"
            edges = [self._edge(kind, ra), self._edge(kind, rb, coef=-1.0 if op == "sub" else 1.0)]
            self._new_layer(n, kind, op, edges, op)
            return
        scalar = b if ta else a
        ref = self.refs[a if ta else b]
        per_unit = None
        if isinstance(scalar, fx.Node) and scalar not in self.depends:
            # a constant tensor (a buffer, a parameter): one number, or one per channel / unit
            per_unit = self._per_unit(self.values[scalar], ref.shape)
            if per_unit is None:
                raise _Unshowable(f"{op} with a tensor constant")
            if per_unit.size == 1:
                scalar, per_unit = float(per_unit[0]), None
        elif not isinstance(scalar, int | float) or isinstance(scalar, bool):
            raise _Unshowable(f"{op} with a computed operand")
        if n.kwargs.get("alpha") is not None:
            raise _Unshowable(f"{op} with alpha")
        if op in ("sub", "div") and not ta:
            op = "r" + op
        elif op == "pow" and not ta:
            raise _Unshowable("scalar ** tensor")
        if per_unit is not None:
            self._fold(n, ref, {"op": op, "params": {"value": per_unit}}, per_unit=True)
        else:
            self._fold(n, ref, {"op": op, "value": float(scalar)})

    @staticmethod
    def _per_unit(c, shape: tuple[int, ...]) -> np.ndarray | None:
        """A constant broadcast against a (1, *shape) tensor as one value per channel (grid) or unit
        (vector), or None if it varies along other dims."""
        if not isinstance(c, torch.Tensor) or not c.is_floating_point():
            return None
        if c.numel() == 1:
            return c.detach().reshape(1).float().cpu().numpy()
        full = (1, *shape)
        if c.dim() > len(full) or len(shape) not in (1, 3):
            return None
        dims = (1,) * (len(full) - c.dim()) + tuple(c.shape)
        if any(d not in (1, f) for d, f in zip(dims, full, strict=True)):
            return None
        if any(d != 1 for i, d in enumerate(dims) if i != 1):
            return None  # varies along H / W (or batch): not a per-channel constant
        return np.ascontiguousarray(c.detach().reshape(-1).float().cpu().numpy())

    def _view(self, n: fx.Node, ref: _Ref) -> None:
        name = _fname(n)
        out = self._shape(n)
        if out is None:
            raise _Unshowable(f"{name} that moves the batch dim")
        if name in _RESHAPE_NAMES:
            self._alias(n, ref, MapStep("reshape", ref.shape, out))
            return
        nd = len(ref.shape) + 1
        if name == "permute":
            dims = _arg(n, 1, "dims")
            dims = list(dims) if isinstance(dims, list | tuple) else list(n.args[1:])
        elif name in ("transpose", "swapaxes", "swapdims"):
            d0, d1 = int(_arg(n, 1, "dim0")) % nd, int(_arg(n, 2, "dim1")) % nd
            dims = list(range(nd))
            dims[d0], dims[d1] = dims[d1], dims[d0]
        else:  # pad
            pads = list(_arg(n, 1, "pad"))
            if name == "constant_pad_nd":  # aten's F.pad: (x, pad, value)
                mode, value = "constant", _arg(n, 2, "value", 0)
            else:
                mode, value = _arg(n, 2, "mode", "constant"), _arg(n, 3, "value", None)
            if mode != "constant" or value not in (None, 0, 0.0) or any(p < 0 for p in pads):
                raise _Unshowable(f"{mode} padding")
            pad = [(0, 0)] * len(ref.shape)
            for k in range(len(pads) // 2):
                pad[len(ref.shape) - 1 - k] = (int(pads[2 * k]), int(pads[2 * k + 1]))
            self._alias(n, ref, MapStep("pad", ref.shape, out, pad=tuple(pad)))
            return
        dims = [int(d) % nd for d in dims]
        if dims[0] != 0:
            raise _Unshowable(f"{name} that moves the batch dim")
        self._alias(n, ref, MapStep("permute", ref.shape, out, dims=tuple(d - 1 for d in dims[1:])))

    def _cat(self, n: fx.Node) -> None:
        tensors = _arg(n, 0, "tensors")
        dim = int(_arg(n, 1, "dim", 0))
        refs = [self.refs.get(t) for t in tensors]
        if any(r is None for r in refs):
            raise _Unshowable("cat with a constant")
        nd = len(refs[0].shape) + 1
        dim = dim % nd
        out = self._shape(n)
        if dim == 0 or out is None or len(out) not in (1, 3):
            raise _Unshowable("cat along the batch dim")
        edges, off = [], 0
        for r in refs:
            edges.append(self._edge("concat", r, dim=dim - 1, offset=off))
            off += r.shape[dim - 1]
        self._new_layer(n, "concat", "cat", edges, "cat")

    def _mean(self, n: fx.Node, ref: _Ref) -> None:
        dims = _arg(n, 1, "dim")
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        if len(ref.shape) != 3 or sorted(int(d) % 4 for d in dims) != [2, 3]:
            raise _Unshowable("mean over other dims than H, W")
        e = self._edge("pool", ref, pool="avg", adaptive=True)
        layer = _Layer(self._name(n, "mean"), "pool", (ref.shape[0], 1, 1), n, [e], label="mean")
        self.layers.append(layer)
        out = self._shape(n)
        steps = () if out == layer.shape else (MapStep("reshape", layer.shape, out),)
        self.refs[n] = _Ref(layer, steps, out, (n,))

    def visit(self, n: fx.Node) -> None:
        deps = [a for a in n.all_input_nodes if a in self.depends]
        if n.op == "placeholder":
            if self.layers:
                raise TraceError(f"the model takes more than one input ({n.name!r})")
            self.depends.add(n)
            self._new_layer(n, "input", "input", [], "input")
            return
        if n.op == "output" or not deps:
            return  # constants (parameters, masks, computed weights) own no nodes
        self.depends.add(n)
        if not isinstance(self.values.get(n), torch.Tensor):
            return  # sizes, tuples: read by other nodes, no layer
        try:
            self._visit(n)
        except _Unshowable as why:
            self._opaque(n, self._label(n) + f" ({why})")
        except TraceError:
            raise
        except Exception as exc:  # noqa: BLE001 - an op this walker misreads still must not crash the load
            self.refs.pop(n, None)
            self._opaque(n, self._label(n) + f" (not read: {type(exc).__name__})")

    def _label(self, n: fx.Node) -> str:
        if n.op == "call_module":
            return type(self.modules[n.target]).__name__
        if n.op == "call_method":
            return f"Tensor.{n.target}"
        if _is_aten(n):
            stack = n.meta.get("nn_module_stack") or {}
            cls = next(reversed(stack.values()))[1] if stack else ""
            cls = cls if isinstance(cls, str) else cls.__qualname__
            if cls.startswith("torch.nn.modules."):
                return cls.rsplit(".", 1)[-1]  # the layer's class, as fx would say
            return f"aten.{_fname(n)}"
        mod = getattr(n.target, "__module__", None) or "torch"
        return f"{mod.replace('torch.nn.functional', 'F')}.{getattr(n.target, '__name__', n.target)}"

    def _visit(self, n: fx.Node) -> None:
        first = n.args[0] if n.args else None
        ref = self.refs.get(first) if isinstance(first, fx.Node) else None
        label = self._label(n)
        if n.op == "call_module":
            m = self.modules[n.target]
            if ref is None:
                raise _Unshowable("no traced input")
            if isinstance(m, nn.Conv2d):
                if m.padding_mode != "zeros":
                    raise _Unshowable(f"{m.padding_mode} padding")
                self._conv(
                    n, ref, m.weight.detach(), m.bias, m.stride, m.padding, m.dilation, m.groups, False, label
                )
            elif isinstance(m, nn.Linear):
                self._dense(n, ref, m.weight.detach(), m.bias, False, label)
            elif isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
                mode = "max" if isinstance(m, nn.MaxPool2d) else "avg"
                if mode == "max" and m.return_indices:
                    raise _Unshowable("max pool with indices")
                if mode == "avg" and m.divisor_override:
                    raise _Unshowable("divisor override")
                self._pool(
                    n,
                    ref,
                    mode,
                    m.kernel_size,
                    m.stride,
                    m.padding,
                    getattr(m, "dilation", 1),
                    include_pad=getattr(m, "count_include_pad", True),
                    label=label,
                )
            elif isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
                if getattr(m, "return_indices", False):
                    raise _Unshowable("max pool with indices")
                self._pool(
                    n,
                    ref,
                    "avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max",
                    adaptive=True,
                    label=label,
                )
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                self._batch_norm(n, ref, m.running_mean, m.running_var, m.weight, m.bias, m.eps)
            elif type(m) in _ACT_MODULES:
                self._fold(n, ref, _ACT_MODULES[type(m)](m))
            elif isinstance(m, _IDENTITY_MODULES):
                self._alias(n, ref)
            elif isinstance(m, nn.Flatten | nn.Unflatten):
                self._view_reshape(n, ref)
            elif isinstance(m, nn.ZeroPad2d) or (isinstance(m, nn.ConstantPad2d) and m.value == 0):
                out = self._shape(n)
                p = m.padding
                self._alias(n, ref, MapStep("pad", ref.shape, out, pad=((0, 0), (p[2], p[3]), (p[0], p[1]))))
            elif isinstance(m, nn.Softmax | nn.LogSoftmax) and (m.dim in (-1, 1)):
                self._fold(n, ref, {"op": "softmax" if isinstance(m, nn.Softmax) else "log_softmax"})
            else:
                raise _Unshowable("not a layer kind convscope draws")
            return
        name = _fname(n)
        target = n.target
        if name == "conv2d":
            w_node, b_node = _arg(n, 1, "weight"), _arg(n, 2, "bias")
            w, b = self._weight(w_node), self._weight(b_node)
            computed = isinstance(w_node, fx.Node) and w_node.op != "get_attr"
            self._conv(
                n,
                ref,
                w,
                b,
                _arg(n, 3, "stride", 1),
                _arg(n, 4, "padding", 0),
                _arg(n, 5, "dilation", 1),
                _arg(n, 6, "groups", 1),
                computed,
                label,
            )
        elif name == "linear":
            w_node, b_node = _arg(n, 1, "weight"), _arg(n, 2, "bias")
            computed = isinstance(w_node, fx.Node) and w_node.op != "get_attr"
            self._dense(n, ref, self._weight(w_node), self._weight(b_node), computed, label)
        elif name in ("max_pool2d", "avg_pool2d") and ref is not None:
            mode = name[:3]
            if mode == "max" and (_arg(n, 6, "return_indices", False)):
                raise _Unshowable("max pool with indices")
            if mode == "avg" and _arg(n, 6, "divisor_override") is not None:
                raise _Unshowable("divisor override")
            dil = _arg(n, 4, "dilation", 1) if mode == "max" else 1
            inc = _arg(n, 5, "count_include_pad", True) if mode == "avg" else True
            self._pool(
                n,
                ref,
                mode,
                _arg(n, 1, "kernel_size"),
                _arg(n, 2, "stride"),
                _arg(n, 3, "padding", 0),
                dil,
                include_pad=inc,
                label=label,
            )
        elif name in ("adaptive_avg_pool2d", "adaptive_max_pool2d") and ref is not None:
            if _arg(n, 2, "return_indices", False):
                raise _Unshowable("max pool with indices")
            self._pool(n, ref, name[9:12], adaptive=True, label=label)
        elif name == "batch_norm" and ref is not None:
            if _arg(n, 5, "training", False):
                raise _Unshowable("batch norm in training mode")
            # F.batch_norm(x, mean, var, weight, bias, training, momentum, eps);
            # aten.batch_norm(x, weight, bias, mean, var, training, momentum, eps, cudnn)
            order = (3, 4, 1, 2) if _is_aten(n) else (1, 2, 3, 4)
            keys = ("running_mean", "running_var", "weight", "bias")
            vals = [self._weight(_arg(n, i, k)) for i, k in zip(order, keys, strict=True)]
            self._batch_norm(n, ref, *vals, float(_arg(n, 7, "eps", 1e-5)))
        elif target in _ARITH or (n.op == "call_method" and str(target) in _ARITH):
            self._binary(n, _ARITH[target])
        elif _is_aten(n) and name in ("add", "sub", "mul", "div", "pow"):
            self._binary(n, name)
        elif name == "neg" and ref is not None:
            self._fold(n, ref, {"op": "neg"})
        elif name in _IDENTITY_NAMES and ref is not None:
            self._alias(n, ref)
        elif name in ("to", "float", "type") and ref is not None and self.values[n].dtype == torch.float32:
            self._alias(n, ref)
        elif (
            name
            in _RESHAPE_NAMES | {"permute", "transpose", "swapaxes", "swapdims", "pad", "constant_pad_nd"}
            and ref is not None
        ):
            self._view(n, ref)
        elif name in ("cat", "concat", "concatenate"):
            self._cat(n)
        elif name == "mean" and ref is not None and not _arg(n, 3, "dtype"):
            self._mean(n, ref)
        elif name in ("softmax", "log_softmax") and ref is not None:
            dim = _arg(n, 1, "dim")
            if dim not in (-1, 1):
                raise _Unshowable("softmax over another dim")
            self._fold(n, ref, {"op": name})
        elif target is operator.getitem:
            self._getitem(n)
        elif _is_aten(n) and name in ("slice", "select") and ref is not None:
            self._aten_slice(n, ref, name)
        elif name == "stochastic_depth" and ref is not None and not _arg(n, 3, "training", True):
            self._alias(n, ref)  # torchvision's drop-path: identity in eval
        elif ref is not None and (step := _act_step(n)) is not None:
            self._fold(n, ref, step)
        else:
            raise _Unshowable("not a layer kind convscope draws")

    def _slice(self, n: fx.Node, ref: _Ref, start: list[int], step: list[int], size: list[int]) -> None:
        """`n` is a box of `ref` (per dim: start, stride, size), then reshaped to n's own shape."""
        out = self._shape(n)
        if out is None or any(k <= 0 for k in size) or any(k <= 0 for k in step):
            raise _Unshowable("indexing that drops the batch dim")
        box = MapStep("slice", ref.shape, tuple(size), start=tuple(start), step=tuple(step))
        steps = _add_step(_add_step(ref.steps, box), MapStep("reshape", tuple(size), out))
        self.refs[n] = _Ref(ref.layer, steps, out, (*ref.path, n))

    def _aten_slice(self, n: fx.Node, ref: _Ref, name: str) -> None:
        """torch.export's spelling of x[..., a:b:k] (aten.slice) and x[..., i] (aten.select)."""
        nd = len(ref.shape) + 1
        dim = int(_arg(n, 1, "dim", 0)) % nd
        if dim == 0:
            raise _Unshowable("indexing the batch dim")
        start, step, size = [0] * (nd - 1), [1] * (nd - 1), list(ref.shape)
        if name == "select":
            start[dim - 1], size[dim - 1] = int(_arg(n, 2, "index")) % ref.shape[dim - 1], 1
        else:
            a, b, k = _arg(n, 2, "start"), _arg(n, 3, "end"), _arg(n, 4, "step", 1)
            if any(isinstance(v, fx.Node) for v in (a, b, k)):
                raise _Unshowable("indexing with computed bounds")
            a, b, k = slice(a, b, k).indices(ref.shape[dim - 1])
            start[dim - 1], step[dim - 1], size[dim - 1] = a, k, len(range(a, b, k))
        self._slice(n, ref, start, step, size)

    def _getitem(self, n: fx.Node) -> None:
        src, idx = n.args[0], n.args[1]
        if src in self.refs:  # x[:, 2:5], x[..., ::2], x[:, 0]
            ref = self.refs[src]
            idx = idx if isinstance(idx, tuple) else (idx,)
            if not all(isinstance(i, int | slice) or i is Ellipsis for i in idx) or any(
                isinstance(i, slice) and any(isinstance(v, fx.Node) for v in (i.start, i.stop, i.step))
                for i in idx
            ):
                raise _Unshowable("advanced indexing")
            nd = len(ref.shape) + 1
            if Ellipsis in idx:
                k = idx.index(Ellipsis)
                idx = idx[:k] + (slice(None),) * (nd - len(idx) + 1) + idx[k + 1 :]
            idx = idx + (slice(None),) * (nd - len(idx))
            if idx[0] != slice(None) or len(idx) != nd:
                raise _Unshowable("indexing the batch dim")
            start, step, size = [], [], []
            for d, i in enumerate(idx[1:]):
                if isinstance(i, int):
                    start.append(i % ref.shape[d])
                    step.append(1)
                    size.append(1)
                else:
                    a, b, k = i.indices(ref.shape[d])
                    start.append(a)
                    step.append(k)
                    size.append(len(range(a, b, k)))
            self._slice(n, ref, start, step, size)
            return
        # one piece of chunk / split / unbind along a non-batch dim
        if not isinstance(src, fx.Node) or not isinstance(idx, int) or src.args[0] not in self.refs:
            raise _Unshowable("indexing")
        kind = _fname(src)
        if kind not in ("chunk", "split", "tensor_split", "unbind"):
            raise _Unshowable(f"piece of {kind}")
        ref = self.refs[src.args[0]]
        dim = int(_arg(src, 1 if kind == "unbind" else 2, "dim", 0)) % (len(ref.shape) + 1)
        if dim == 0:
            raise _Unshowable(f"{kind} along the batch dim")
        pieces = self.values[src]
        offset = idx if kind == "unbind" else sum(int(p.shape[dim]) for p in pieces[:idx])
        width = 1 if kind == "unbind" else int(pieces[idx].shape[dim])
        start = [0] * len(ref.shape)
        size = list(ref.shape)
        start[dim - 1], size[dim - 1] = offset, width
        self._slice(n, ref, start, [1] * len(ref.shape), size)

    def _view_reshape(self, n: fx.Node, ref: _Ref) -> None:
        out = self._shape(n)
        if out is None:
            raise _Unshowable("reshape that moves the batch dim")
        self._alias(n, ref, MapStep("reshape", ref.shape, out))


def _attach(layer: _Layer, step: dict) -> dict:
    """A chain step as stored: per-channel numbers (batch norm's scale / shift, a per-channel
    constant) go into the layer's weights under a key, the step keeps the key."""
    params = step.pop("params", None)
    if params is None:
        return step
    key = f"{'bn' if step['op'] == 'bn' else 'c'}{len(layer.chain)}"
    for k, v in params.items():
        layer.weights[f"{key}.{k}"] = v
    return {"op": "affine" if step["op"] == "bn" else step["op"], "key": key}


class _Unshowable(Exception):
    """Internal: this op becomes an opaque pass-through layer; the message says why."""


# -- running the graph once ------------------------------------------------------------------------------


class _Recorder(fx.Interpreter):
    """Runs the traced graph and keeps every node's value; a failing node names its layer."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, object] = {}

    def record(self, x: torch.Tensor) -> None:
        """Run every node in order.  (Interpreter.run would dress a failure up with torch's
        structured-trace logging, which imports dynamo: seconds, for an error we report in one line.)"""
        self.env = {}
        self.args_iter = iter([x])
        for n in self.graph.nodes:
            if n.op == "output":
                break
            self.env[n] = self.run_node(n)

    def run_node(self, n: fx.Node):
        try:
            v = super().run_node(n)
        except Exception as exc:
            raise _NodeFailed(n, exc) from exc
        self.values[n] = v
        return v


class _NodeFailed(Exception):
    def __init__(self, node: fx.Node, exc: Exception) -> None:
        super().__init__(str(exc))
        self.node, self.exc = node, exc


def _shape_text(v) -> str:
    return "x".join(str(s) for s in v.shape) if isinstance(v, torch.Tensor) else type(v).__name__


def _fit_error(gm: fx.GraphModule, fail: _NodeFailed, values: dict, input_shape) -> TraceError:
    """The input shape does not fit: name the layer, what it expects and what it got."""
    n = fail.node
    got = next((values[a] for a in n.all_input_nodes if isinstance(values.get(a), torch.Tensor)), None)
    got_text = _shape_text(got) if got is not None else "?"
    where = str(n.target) if n.op == "call_module" else n.name
    expect = ""
    if n.op == "call_module":
        m = gm.get_submodule(str(n.target))
        if isinstance(m, nn.Linear):
            expect = f"(N, {m.in_features})"
        elif isinstance(m, nn.Conv2d):
            expect = f"(N, {m.in_channels}, H, W) with H, W >= its {tuple(m.kernel_size)} window"
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            expect = f"{m.num_features} channels"
    detail = f"it expects {expect}, it got {got_text}" if expect else f"it got {got_text}: {fail.exc}"
    shape = ",".join(str(s) for s in input_shape)
    return TraceError(f"input shape {shape} does not fit layer {where!r}: {detail}".splitlines()[0])


# -- tracing ---------------------------------------------------------------------------------------------


def _user_frame(exc: BaseException, files: set[str]) -> traceback.FrameSummary | None:
    """The innermost frame of the traceback that lies in the user's code (not torch, not convscope)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if f.filename in files]
    if mine:
        return mine[-1]
    skip = ("/torch/", "/convscope/", "/models/trace.py", "/models/loader.py", "<")
    outside = [f for f in frames if not any(s in f.filename for s in skip)]
    return outside[-1] if outside else None


def _control_flow_error(exc: BaseException, model: nn.Module) -> TraceError:
    files = set()
    for m in model.modules():
        f = getattr(sys.modules.get(type(m).__module__), "__file__", None)
        if f and "/torch/" not in f:
            files.add(f)
    frame = _user_frame(exc, files)
    where, construct, word = "", "a Python branch or loop", ""
    if frame is not None:
        line = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
        word = line.split(" ", 1)[0].rstrip(":")
        construct = {
            "if": "an `if` on a tensor value",
            "elif": "an `elif` on a tensor value",
            "while": "a `while` on a tensor value",
            "for": "a `for` loop over a tensor",
            "assert": "an `assert` on a tensor value",
        }.get(word, f"`{line}` (Python needs a concrete value there)")
        where = f" at {frame.filename}:{frame.lineno}: {line}"
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    flow = "control flow" in msg or "iterated" in msg or (frame is not None and word in _FLOW_WORDS)
    if not flow:  # not a branch: some call that tracing cannot follow
        return TraceError(f"cannot trace the model{where}: {type(exc).__name__}: {msg}")
    return TraceError(f"data-dependent control flow: {construct}{where} (torch.fx: {msg})")


_FLOW_WORDS = ("if", "elif", "while", "for", "assert")


def _export(model: nn.Module, x: torch.Tensor) -> fx.GraphModule | None:
    """The model's graph by torch.export, for code torch.fx cannot trace symbolically (branches and
    loops on shapes, which export sees as the concrete numbers of this input shape), or None.

    Slower than fx (seconds: it imports dynamo and runs the model on fake tensors), so fx goes
    first.  The graph holds aten ops (aten.conv2d, aten.batch_norm ...), which the walker reads
    like their torch.nn.functional twins; ops keep their module paths as names."""
    try:
        with torch.no_grad():
            program = torch.export.export(model, (x,))
        return program.module()
    except Exception:  # noqa: BLE001 - data-dependent control flow and the like: report fx's error
        return None


@dataclass
class Traced:
    """A traced model: its Dag, the weights it applies (by layer), and a graph that hands out every
    layer's value."""

    dag: Dag
    weights: Weights
    module: fx.GraphModule  # returns (output, value of each dag layer in order)
    input_shape: tuple[int, ...]

    def explain(self, layer: str, index: int, acts: Activations) -> NodeExplanation:
        """What node `index` of `layer` computes (numpy, from these weights and `acts`)."""
        start = self.dag.layer(layer).start
        return explain_node(self.dag, start + int(index), acts.flat, self.weights)


_ALIAS_OPS = _RESHAPE_NAMES | {
    "permute",
    "transpose",
    "contiguous",
    "expand",
    "t",
    "narrow",
    "select",
    "slice",
}


def _mutated(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes whose tensor a later in-place op overwrites (x.relu_(), nn.ReLU(inplace=True), F.relu(x,
    inplace=True), x += y on a real tensor), followed back through views that share its storage."""
    modules = dict(gm.named_modules())
    hit: set[fx.Node] = set()
    for n in gm.graph.nodes:
        inplace = (
            (n.op == "call_method" and str(n.target).endswith("_") and not str(n.target).endswith("__"))
            or (n.op == "call_module" and getattr(modules.get(n.target), "inplace", False))
            or (n.op == "call_function" and (n.kwargs.get("inplace") or n.target in _INPLACE_OPERATORS))
            or (_is_aten(n) and n.target._schema.is_mutable)
        )
        if not inplace or not n.args or not isinstance(n.args[0], fx.Node):
            continue
        a = n.args[0]
        while True:
            hit.add(a)
            if a.op in ("call_method", "call_function") and _fname(a) in _ALIAS_OPS | {"getitem"} and a.args:
                if isinstance(a.args[0], fx.Node):
                    a = a.args[0]
                    continue
            if a.op == "call_module" and isinstance(modules.get(a.target), _IDENTITY_MODULES + (nn.Flatten,)):
                a = a.args[0]
                continue
            break
    return hit


_INPLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


def _tap_module(gm: fx.GraphModule, tails: list[fx.Node]) -> fx.GraphModule:
    """A copy of `gm` whose output is (original output, each tail's tensor).  A tail that a later
    in-place op overwrites is cloned right where it is made, so it keeps the value the Dag means."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    taps: dict[fx.Node, fx.Node] = {}
    want = set(tails)
    mutated = _mutated(gm)
    out_node = None
    for n in gm.graph.nodes:
        if n.op == "output":
            out_node = n
            continue
        env[n] = graph.node_copy(n, lambda a: env[a])
        if n in want:
            taps[n] = graph.call_method("clone", (env[n],)) if n in mutated else env[n]
    orig = fx.node.map_arg(out_node.args[0], lambda a: env[a])
    graph.output((orig, tuple(taps[t] for t in tails)))
    return fx.GraphModule(gm, graph)


def trace(
    model: nn.Module,
    input_shape: tuple[int, ...],
    name: str = "",
    classes: tuple[str, ...] = (),
    seed: int = 0,
    backend: str = "auto",
) -> Traced:
    """Trace `model` (switched to eval mode) at input (1, *input_shape) into a Dag and its weights.
    `backend`: "auto" (torch.fx, torch.export where fx fails), "fx" or "export".
    Raises TraceError (one line) for data-dependent control flow or an input shape that does not fit."""
    if backend not in ("auto", "fx", "export"):
        raise ValueError(f"unknown backend {backend!r} (expected auto, fx or export)")
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((1, *input_shape), generator=gen)
    if backend == "export":
        gm = _export(model, x)
        if gm is None:
            raise TraceError(f"torch.export cannot trace {type(model).__name__}")
    elif isinstance(model, fx.GraphModule) and model.meta.get("convscope_program"):
        gm = model  # a .pt2 / .onnx program (models/formats.py) is a graph already; its nodes name its layers
    else:
        try:
            gm = fx.symbolic_trace(model)
        except Exception as exc:  # fx raises TraceError, TypeError, RuntimeError ... for untraceable code
            gm = _export(model, x) if backend == "auto" else None
            if gm is None:
                raise _control_flow_error(exc, model) from None
    rec = _Recorder(gm)
    with torch.no_grad():
        try:
            rec.record(x)
        except _NodeFailed as fail:
            raise _fit_error(gm, fail, rec.values, input_shape) from None
    walker = _Walker(gm, rec.values)
    for n in gm.graph.nodes:
        walker.visit(n)
    out_arg = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    # A model returning several tensors (a tuple, a dict): its first is the output.
    found: list[fx.Node] = []
    fx.node.map_arg(out_arg, lambda a: found.append(a) or a)
    out_node = next((a for a in found if a in walker.refs), None)
    ref = walker.refs.get(out_node)
    output = ref.layer.name if ref is not None else walker.layers[-1].name
    ops = [s["op"] for s in ref.layer.chain] if ref is not None else []
    kind = {"log_softmax": "log_probabilities", "softmax": "probabilities"}.get(
        ops[-1] if ops else "", "logits"
    )
    layers = [
        DagLayer(x.name, x.kind, x.shape, inputs=tuple(x.inputs), chain=tuple(x.chain), label=x.label)
        for x in walker.layers
    ]
    dag = Dag.build(
        name or type(model).__name__, layers, output=output, output_kind=kind, classes=tuple(classes)
    )
    weights = {x.name: x.weights for x in walker.layers if x.weights}
    module = _tap_module(gm, [x.tail for x in walker.layers])
    return Traced(dag, weights, module, tuple(input_shape))


# -- activations -----------------------------------------------------------------------------------------


@dataclass
class Activations:
    layers: dict[str, np.ndarray]  # layer name -> value in the layer's shape (no batch dim)
    flat: np.ndarray  # (total_nodes,) float32 by node id
    input: np.ndarray  # the tensor handed to the model, without the batch dim
    output: np.ndarray  # the model's output (its first tensor), without the batch dim
    probabilities: np.ndarray  # softmax of the output, exp of log-probabilities, or the output itself


def activations(traced: Traced, x: torch.Tensor | np.ndarray, out: np.ndarray | None = None) -> Activations:
    """Run the model once on one input (C, H, W) (or (1, C, H, W)) and return every layer's value.
    `out`: a float32 (total_nodes,) array to write the flat values into (e.g. a shared-memory view);
    the per-layer arrays are views of it.  From a GPU, the values come back in one copy."""
    x = torch.as_tensor(np.asarray(x, np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    if x.dim() == len(traced.input_shape):
        x = x.unsqueeze(0)
    dag = traced.dag
    flat = np.empty(dag.total_nodes, np.float32) if out is None else out
    if flat.shape != (dag.total_nodes,) or flat.dtype != np.float32:
        raise ValueError(f"out must be float32 ({dag.total_nodes},), got {flat.dtype} {flat.shape}")
    with torch.no_grad():
        result, taps = traced.module(x)
        if taps and taps[0].device.type != "cpu":
            flat[:] = torch.cat([t.reshape(-1).float() for t in taps]).cpu().numpy()
        else:
            for layer, t in zip(dag.layers, taps, strict=True):
                flat[layer.start : layer.stop] = t.reshape(-1).numpy()
    layers = {layer.name: flat[layer.start : layer.stop].reshape(layer.shape) for layer in dag.layers}
    out = result
    if not isinstance(out, torch.Tensor):
        found: list[torch.Tensor] = []
        torch.utils._pytree.tree_map(lambda v: found.append(v) if isinstance(v, torch.Tensor) else None, out)
        out = found[0]
    out = out.detach().float()
    if dag.output_kind == "log_probabilities":
        probs = out.exp()
    elif dag.output_kind == "probabilities":
        probs = out
    else:
        probs = torch.softmax(out.reshape(out.shape[0], -1), dim=1)
    return Activations(
        layers=layers,
        flat=flat,
        input=x[0].detach().cpu().numpy().copy(),
        output=out[0].cpu().numpy().reshape(-1),
        probabilities=probs[0].cpu().numpy().reshape(-1),
    )
