"""Turn an ONNX file into a torch.fx GraphModule that models/trace.py reads like a user's model.

`load_onnx(path)` parses the protobuf (the `onnx` package; external weight files are read too) and
walks the nodes once, building the graph while running each op on an example of the file's input
shape.  Conv, Gemm / MatMul (+ bias), BatchNormalization and the pools become torch.nn layers at the
node's module path (the exporter's scopes: `/layer1/layer1.0/conv1/Conv` or
`pkg.torch.onnx.name_scopes` give `layer1.0.conv1`), so layers are named as from the source; other
ops become the torch functions trace.py folds or maps.  What depends on constants only (shape
arithmetic) is computed here; a reshape that keeps the batch dim in front keeps it free, so the
module runs on batches too.  An op outside this list is one LoadError naming it and its node.

Why not a package: onnx2torch 1.5.15 has no converter for Reshape / Identity / AveragePool at opset
19 nor ReduceMean at 18, which torch.onnx.export writes, so it reads neither exporter's ResNet (and
it is not in the offline registry); onnxruntime runs a model but gives neither its weights nor
per-node values as torch tensors.  ResNet-18 at 224 reads here in about 0.3 s, every node within
1e-5 of the source's.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from convscope.models.loader import LoadError
from torch import nn
from torch.nn.utils import skip_init

_INT64_MAX = 2**63 - 1


class _Unsupported(Exception):
    """Internal: the node cannot be turned into torch; the message says why."""


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _meta(node) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def _literal_list(text: str | None) -> list[str]:
    try:
        return [str(s) for s in ast.literal_eval(text)] if text else []
    except (ValueError, SyntaxError):
        return []


def _scope(node) -> str:
    """The module path a node runs in, from the exporter's name scopes or the node's name.  Either
    spelling gives each level as its local name or as a path that extends the one before
    (`/block2/shortcut/shortcut.0/Conv`, `['', 'block1', 'block1.bn1', 'op']`)."""
    scopes = _literal_list(_meta(node).get("pkg.torch.onnx.name_scopes"))
    levels = scopes[1:-1] if scopes else [p for p in node.name.split("/") if p][:-1]
    parts: list[str] = []
    for level in filter(None, levels):
        if level.startswith(".".join(parts) + ".") and parts:
            parts = [level]
        elif parts and level.startswith(parts[-1] + "."):
            parts[-1] = level
        else:
            parts.append(level)
    return ".".join(parts)


# ONNX ops that become torch.nn layers, and the name torch.fx gives the functional call of each
_LAYER_OPS = {
    "Conv": "conv2d", "Gemm": "linear", "MatMul": "linear", "BatchNormalization": "batch_norm",
    "MaxPool": "max_pool2d", "AveragePool": "avg_pool2d", "GlobalAveragePool": "adaptive_avg_pool2d",
    "GlobalMaxPool": "adaptive_max_pool2d", "ReduceMean": "mean",
}  # fmt: skip


def _clean(path: str) -> str:
    return ".".join(re.sub(r"\W", "_", p) or "_" for p in path.split(".")) if path else ""


def _give(m: nn.Module, **params: torch.Tensor | None) -> None:
    """Set a layer's parameters to the file's tensors (no copy, no random init before)."""
    for name, t in params.items():
        if t is not None:
            setattr(m, name, nn.Parameter(t.float().contiguous(), requires_grad=False))


def _unary(fn):
    """The handler of a one-input elementwise op."""
    return lambda self, node, ins, a, scope: self.call(fn, (ins[0],), scope=scope)


def _binary(fn, int_fn=None):
    """The handler of a two-input arithmetic op; a one-number constant goes in as a Python number
    (trace.py folds `x * 2.0` into the layer), integer constants (shape arithmetic) by `int_fn`."""

    def op(self, node, ins, a, scope):
        p, q = ins
        if int_fn is not None and not self.dep(p) and not self.dep(q) and not p.is_floating_point():
            return int_fn(p, q)
        if self.dep(p) or self.dep(q):
            p, q = (v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v for v in (p, q))
        return self.call(fn, (p, q), scope=scope)

    return op


class _Builder:
    """One walk over the ONNX graph: `env` maps an ONNX value name to a constant tensor or to the fx
    node that computes it (its example value in `example`)."""

    def __init__(self, path: Path, model) -> None:
        self.path = path
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.env: dict[str, object] = {}
        self.example: dict[fx.Node, torch.Tensor] = {}
        self.taken: set[str] = set()
        self.n_const = 0
        self.users: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.input:
                self.users.setdefault(name, []).append(node)
        self.skip: dict[int, str] = {}  # id(node) of a bias Add merged into the Linear before it -> its input
        scopes = [_scope(n) for n in model.graph.node]
        self.containers = {s.rsplit(".", k)[0] for s in scopes for k in range(1, s.count(".") + 1)}
        self.layer_ops: dict[str, int] = {}
        for n, sc in zip(model.graph.node, scopes, strict=True):
            if n.op_type in _LAYER_OPS:
                self.layer_ops[sc] = self.layer_ops.get(sc, 0) + 1
        self.node = None  # the ONNX node being read
        self.initializers = {t.name for t in model.graph.initializer}

    # values -------------------------------------------------------------------------------------------
    def dep(self, v) -> bool:
        return isinstance(v, fx.Node)

    def ex(self, v):
        return self.example[v] if isinstance(v, fx.Node) else v

    def const(self, v, what: str) -> torch.Tensor:
        if self.dep(v):
            raise _Unsupported(f"{what} computed from the input")
        return v

    def const_node(self, t: torch.Tensor) -> fx.Node:
        if not hasattr(self.root, "onnx_constants"):
            self.root.add_module("onnx_constants", nn.Module())
        name = f"c{self.n_const}"
        self.n_const += 1
        # not in the state dict: the constants are part of the graph, not weights to load
        self.root.onnx_constants.register_buffer(name, t.detach().clone(), persistent=False)
        return self.graph.get_attr(f"onnx_constants.{name}")

    def operand(self, v):
        """An argument of an emitted op: nodes as they are, constant tensors as buffers read by
        get_attr (trace.py sees them as constants)."""
        if self.dep(v) or not isinstance(v, torch.Tensor):
            return v
        return self.const_node(v)

    def call(self, fn, args: tuple, kwargs: dict | None = None, scope: str = ""):
        """fn(*args) computed now when every argument is constant, else a graph node."""
        kwargs = kwargs or {}
        flat = list(args) + list(kwargs.values())
        nodes = [a for a in flat if self.dep(a)] + [
            b for a in flat if isinstance(a, list | tuple) for b in a if self.dep(b)
        ]
        if not nodes:
            return fn(*args, **kwargs)
        args = tuple(self._operands(a) for a in args)
        kwargs = {k: self._operands(v) for k, v in kwargs.items()}
        node = self.graph.call_function(fn, args, kwargs)
        if scope:
            node.meta["nn_module_stack"] = {scope: (scope, "onnx")}
        value = fn(*fx.node.map_arg(args, self._example_of), **fx.node.map_arg(kwargs, self._example_of))
        self.example[node] = value
        return node

    def _operands(self, a):
        if isinstance(a, list | tuple) and any(self.dep(b) for b in a):
            return type(a)(self.operand(b) if isinstance(b, torch.Tensor) else b for b in a)
        return self.operand(a) if isinstance(a, torch.Tensor) else a

    def _example_of(self, n: fx.Node):
        if n.op == "get_attr":
            return self.root.get_submodule("onnx_constants").get_buffer(n.target.split(".")[-1])
        return self.example[n]

    def _layer_path(self, scope: str) -> str:
        """Where the current node's layer goes: at `scope` when it is a torch.nn layer of its own
        there, else (a functional call inside a module) at `scope.op`, named as torch.fx would."""
        meta = _meta(self.node)
        classes = _literal_list(meta.get("pkg.torch.onnx.class_hierarchy"))
        if classes:
            own = len(classes) >= 2 and classes[-2].startswith("torch.nn.modules.")
        else:
            own = bool(scope) and scope not in self.containers and self.layer_ops.get(scope) == 1
        weight = self.node.input[1] if len(self.node.input) > 1 else ""
        named = re.fullmatch(r"(.+)\.weight", weight) if weight in self.initializers else None
        if own and named and self.node.op_type in ("Conv", "Gemm", "MatMul"):
            # torch's exporter keeps the parameter's name on a conv it fused a batch norm into,
            # while the node takes the norm's scope: the weight names the layer as the source did
            return named.group(1)
        if own and scope:
            return scope
        scopes = _literal_list(meta.get("pkg.torch.onnx.name_scopes"))
        op = re.sub(r"_\d+$", "", scopes[-1]) if scopes else _LAYER_OPS[self.node.op_type]
        return f"{scope}.{op}" if scope else op

    def module(self, m: nn.Module, x: fx.Node, scope: str) -> fx.Node:
        path = _clean(self._layer_path(scope))
        base, k = path, 1
        while path in self.taken or self._exists(path):
            path, k = f"{base}_{k}", k + 1
        self.taken.add(path)
        *parents, leaf = path.split(".")
        owner = self.root
        for p in parents:
            if not hasattr(owner, p):
                owner.add_module(p, nn.Module())
            owner = getattr(owner, p)
        owner.add_module(leaf, m.eval())
        node = self.graph.call_module(path, (x,))
        with torch.no_grad():
            self.example[node] = m(self.example[x])
        return node

    def _exists(self, path: str) -> bool:
        try:
            self.root.get_submodule(path)
            return True
        except AttributeError:
            return False

    def reshape_to(self, x, shape: tuple[int, ...], scope: str):
        """x reshaped to `shape`; the leading batch dim stays free when it is kept (1 -> 1)."""
        if not self.dep(x):
            return x.reshape(shape)
        src = tuple(self.example[x].shape)
        if tuple(shape) == src:
            return x
        if shape and src and shape[0] == src[0] == 1:
            rest = tuple(shape[1:])
            if len(rest) == 1:
                return self.call(torch.flatten, (x, 1), scope=scope) if len(src) > 1 else x
            return self.call(torch.reshape, (x, (-1, *rest)), scope=scope)
        return self.call(torch.reshape, (x, tuple(shape)), scope=scope)

    # ops ----------------------------------------------------------------------------------------------
    def run(self, node) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise _Unsupported(f"domain {node.domain!r}")
        if id(node) in self.skip:
            self.env[node.output[0]] = self.env[self.skip[id(node)]]
            return
        handler = getattr(self, f"op_{node.op_type}", None)
        if handler is None:
            raise _Unsupported("not an op convscope reads")
        self.node = node
        ins = [self.env[n] if n else None for n in node.input]
        outs = handler(node, ins, _attrs(node), _scope(node))
        outs = outs if isinstance(outs, list) else [outs]
        for name, v in zip(node.output, outs, strict=False):
            if name:
                self.env[name] = v

    def _pads(self, a: dict, x, kernel, strides, dilations) -> tuple[list[int], list[int]]:
        """(begin, end) padding per spatial dim, auto_pad resolved on the example's size."""
        n = len(kernel)
        mode = a.get("auto_pad", b"NOTSET")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            size = self.ex(x).shape[2:]
            begin, end = [], []
            for i in range(n):
                out = math.ceil(size[i] / strides[i])
                total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size[i], 0)
                small, big = total // 2, total - total // 2
                begin.append(small if mode == "SAME_UPPER" else big)
                end.append(big if mode == "SAME_UPPER" else small)
            return begin, end
        if mode == "VALID":
            return [0] * n, [0] * n
        pads = list(a.get("pads", [0] * 2 * n))
        return pads[:n], pads[n:]

    def _pad_first(self, x, begin, end, scope, value=0.0):
        """Asymmetric padding as its own F.pad before the op (torch's order: last dim first)."""
        order = []
        for b, e in zip(reversed(begin), reversed(end), strict=True):
            order += [int(b), int(e)]
        while order[-2:] == [0, 0]:  # leading dims (batch, channels) that are not padded
            order = order[:-2]
        if not order:
            return x
        return self.call(F.pad, (x, order), {"value": value} if value else None, scope)

    def op_Conv(self, node, ins, a, scope):
        x, w = ins[0], self.const(ins[1], "conv weights")
        b = self.const(ins[2], "conv bias") if len(ins) > 2 and ins[2] is not None else None
        nd = w.dim() - 2
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        strides = list(a.get("strides", [1] * nd))
        dil = list(a.get("dilations", [1] * nd))
        begin, end = self._pads(a, x, kernel, strides, dil)
        if begin != end:
            x, begin = self._pad_first(x, begin, end, scope), [0] * nd
        if nd != 2:
            fn = {1: F.conv1d, 3: F.conv3d}[nd]
            return self.call(fn, (x, w, b, strides, begin, dil, int(a.get("group", 1))), scope=scope)
        groups = int(a.get("group", 1))
        conv = skip_init(
            nn.Conv2d, int(w.shape[1]) * groups, int(w.shape[0]), tuple(kernel), tuple(strides),
            tuple(begin), tuple(dil), groups, bias=b is not None,
        )  # fmt: skip
        _give(conv, weight=w, bias=b)
        return self.module(conv, x, scope)

    def _linear(self, x, w: torch.Tensor, b: torch.Tensor | None, scope: str):
        lin = skip_init(nn.Linear, int(w.shape[1]), int(w.shape[0]), bias=b is not None)
        _give(lin, weight=w, bias=None if b is None else b.reshape(-1).expand(w.shape[0]))
        return self.module(lin, x, scope)

    def op_Gemm(self, node, ins, a, scope):
        x, bmat = ins[0], ins[1]
        c = ins[2] if len(ins) > 2 else None
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))
        if self.dep(x) and not self.dep(bmat) and not ta and (c is None or not self.dep(c)):
            w = (bmat if tb else bmat.T) * alpha
            if c is None or c.numel() in (1, w.shape[0]):
                return self._linear(x, w, None if c is None else c * beta, scope)

        def gemm(p, q, r=None):
            y = alpha * (p.T if ta else p) @ (q.T if tb else q)
            return y if r is None else y + beta * r

        return self.call(gemm, (x, bmat) if c is None else (x, bmat, c), scope=scope)

    def op_MatMul(self, node, ins, a, scope):
        x, w = ins
        if self.dep(x) and not self.dep(w) and w.dim() == 2 and self.ex(x).dim() == 2:
            bias = None
            users = self.users.get(node.output[0], [])
            if len(users) == 1 and users[0].op_type == "Add":
                other = [n for n in users[0].input if n != node.output[0]]
                v = self.env.get(other[0]) if len(other) == 1 else None
                if isinstance(v, torch.Tensor) and v.numel() == w.shape[1] and v.dim() <= 1:
                    bias = v
                    self.skip[id(users[0])] = node.output[0]
            return self._linear(x, w.T, bias, scope)
        return self.call(torch.matmul, (x, w), scope=scope)

    def op_BatchNormalization(self, node, ins, a, scope):
        x = ins[0]
        scale, shift, mean, var = (self.const(v, "batch norm parameters") for v in ins[1:5])
        if int(a.get("training_mode", 0)):
            raise _Unsupported("batch norm in training mode")
        dim = self.ex(x).dim()
        if not self.dep(x) or dim not in (2, 4):
            return self.call(F.batch_norm, (x, mean, var, scale, shift, False, 0.0, a.get("epsilon", 1e-5)))
        eps = float(a.get("epsilon", 1e-5))
        bn = skip_init(nn.BatchNorm2d if dim == 4 else nn.BatchNorm1d, int(scale.numel()), eps=eps)
        _give(bn, weight=scale, bias=shift)
        bn.running_mean, bn.running_var = mean.float().contiguous(), var.float().contiguous()
        bn.num_batches_tracked = torch.zeros((), dtype=torch.long)
        return self.module(bn, x, scope)

    def _pool(self, node, ins, a, scope, mode: str):
        if len(node.output) > 1 and node.output[1] and self.users.get(node.output[1]):
            raise _Unsupported("max pool indices")
        x = ins[0]
        kernel = list(a["kernel_shape"])
        nd = len(kernel)
        strides = list(a.get("strides", [1] * nd))
        dil = list(a.get("dilations", [1] * nd))
        begin, end = self._pads(a, x, kernel, strides, dil)
        ceil = bool(a.get("ceil_mode", 0))
        if nd != 2:
            raise _Unsupported(f"{nd}-d pooling")
        if begin != end:
            raise _Unsupported("asymmetric pooling padding")
        if mode == "max":
            pool = nn.MaxPool2d(tuple(kernel), tuple(strides), tuple(begin), tuple(dil), ceil_mode=ceil)
        else:
            include = bool(a.get("count_include_pad", 0))
            pool = nn.AvgPool2d(tuple(kernel), tuple(strides), tuple(begin), ceil, count_include_pad=include)
        return self.module(pool, x, scope)

    def op_MaxPool(self, node, ins, a, scope):
        return self._pool(node, ins, a, scope, "max")

    def op_AveragePool(self, node, ins, a, scope):
        return self._pool(node, ins, a, scope, "avg")

    def op_GlobalAveragePool(self, node, ins, a, scope):
        if self.ex(ins[0]).dim() != 4:
            raise _Unsupported("global pooling of other than (N, C, H, W)")
        return self.module(nn.AdaptiveAvgPool2d(1), ins[0], scope)

    def op_GlobalMaxPool(self, node, ins, a, scope):
        if self.ex(ins[0]).dim() != 4:
            raise _Unsupported("global pooling of other than (N, C, H, W)")
        return self.module(nn.AdaptiveMaxPool2d(1), ins[0], scope)

    # elementwise
    op_Relu = _unary(torch.relu)

    def op_Sigmoid(self, node, ins, a, scope):
        # x * sigmoid(x) is how exporters write SiLU: one folded step, as from the source
        users = self.users.get(node.output[0], [])
        if (
            len(users) == 1
            and users[0].op_type == "Mul"
            and sorted(users[0].input) == sorted([node.input[0], node.output[0]])
        ):
            self.skip[id(users[0])] = node.output[0]
            return self.call(F.silu, (ins[0],), scope=scope)
        return self.call(torch.sigmoid, (ins[0],), scope=scope)

    op_Tanh = _unary(torch.tanh)
    op_Exp = _unary(torch.exp)
    op_Log = _unary(torch.log)
    op_Sqrt = _unary(torch.sqrt)
    op_Abs = _unary(torch.abs)
    op_Neg = _unary(torch.neg)
    op_Erf = _unary(torch.erf)
    op_Floor = _unary(torch.floor)
    op_Ceil = _unary(torch.ceil)
    op_Reciprocal = _unary(torch.reciprocal)
    op_HardSwish = _unary(F.hardswish)
    op_Mish = _unary(F.mish)
    op_Softsign = _unary(F.softsign)

    def op_LeakyRelu(self, node, ins, a, scope):
        return self.call(F.leaky_relu, (ins[0], float(a.get("alpha", 0.01))), scope=scope)

    def op_Elu(self, node, ins, a, scope):
        return self.call(F.elu, (ins[0], float(a.get("alpha", 1.0))), scope=scope)

    def op_Selu(self, node, ins, a, scope):
        alpha = float(a.get("alpha", 1.67326319217681884765625))
        gamma = float(a.get("gamma", 1.05070102214813232421875))
        if abs(alpha - 1.6732632423543772) < 1e-6 and abs(gamma - 1.0507009873554805) < 1e-6:
            return self.call(F.selu, (ins[0],), scope=scope)
        return self.call(operator.mul, (self.call(F.elu, (ins[0], alpha), scope=scope), gamma), scope=scope)

    def op_HardSigmoid(self, node, ins, a, scope):
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        if abs(alpha - 1 / 6) < 1e-6 and beta == 0.5:
            return self.call(F.hardsigmoid, (ins[0],), scope=scope)
        y = self.call(operator.mul, (ins[0], alpha), scope=scope)
        y = self.call(operator.add, (y, beta), scope=scope)
        return self.call(torch.clamp, (y, 0.0, 1.0), scope=scope)

    def op_Softplus(self, node, ins, a, scope):
        return self.call(F.softplus, (ins[0],), scope=scope)

    def op_Gelu(self, node, ins, a, scope):
        approx = a.get("approximate", b"none")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        return self.call(F.gelu, (ins[0],), {"approximate": approx}, scope=scope)

    def op_Clip(self, node, ins, a, scope):
        def bound(v):
            if v is None or isinstance(v, int | float):
                return v
            return float(self.const(v, "clip bounds"))

        lo = bound(ins[1] if len(ins) > 1 else a.get("min"))
        hi = bound(ins[2] if len(ins) > 2 else a.get("max"))
        return self.call(torch.clamp, (ins[0], lo, hi), scope=scope)

    op_Add = _binary(operator.add)
    op_Sub = _binary(operator.sub)
    op_Mul = _binary(operator.mul)
    op_Div = _binary(operator.truediv, lambda p, q: torch.div(p, q, rounding_mode="trunc"))
    op_Pow = _binary(operator.pow)

    def op_PRelu(self, node, ins, a, scope):
        return self.call(F.prelu, (ins[0], self.const(ins[1], "PRelu slope").reshape(-1)), scope=scope)

    # passes, shapes and index maps
    def op_Identity(self, node, ins, a, scope):
        return ins[0]

    def op_Dropout(self, node, ins, a, scope):
        return ins[0]

    def op_Constant(self, node, ins, a, scope):
        from onnx import numpy_helper

        if "value" in a:
            return torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
        for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32),
                           ("value_int", torch.int64), ("value_ints", torch.int64)):  # fmt: skip
            if key in a:
                return torch.tensor(a[key], dtype=dtype)
        raise _Unsupported("a constant of another kind")

    def op_ConstantOfShape(self, node, ins, a, scope):
        from onnx import numpy_helper

        shape = [int(s) for s in self.const(ins[0], "shape")]
        value = torch.from_numpy(numpy_helper.to_array(a["value"]).copy()) if "value" in a else torch.zeros(1)
        return value.reshape(()).expand(shape).clone()

    def op_Shape(self, node, ins, a, scope):
        shape = list(self.ex(ins[0]).shape)
        return torch.tensor(shape[a.get("start", 0) : a.get("end", len(shape))], dtype=torch.int64)

    def op_Cast(self, node, ins, a, scope):
        from onnx import helper

        dtype = torch.from_numpy(np.zeros(0, helper.tensor_dtype_to_np_dtype(a["to"]))).dtype
        x = ins[0]
        if not self.dep(x):
            return x.to(dtype)
        return x if self.ex(x).dtype == dtype else self.call(torch.Tensor.to, (x, dtype), scope=scope)

    def op_Flatten(self, node, ins, a, scope):
        shape = list(self.ex(ins[0]).shape)
        axis = int(a.get("axis", 1)) % (len(shape) + 1) if shape else 0
        return self.reshape_to(ins[0], (math.prod(shape[:axis]), math.prod(shape[axis:])), scope)

    def op_Reshape(self, node, ins, a, scope):
        src = list(self.ex(ins[0]).shape)
        want = [int(s) for s in self.const(ins[1], "reshape sizes")]
        if not int(a.get("allowzero", 0)):
            want = [src[i] if s == 0 else s for i, s in enumerate(want)]
        shape = tuple(torch.empty(src, device="meta").reshape(want).shape)
        return self.reshape_to(ins[0], shape, scope)

    def _axes(self, ins, a) -> list[int] | None:
        if len(ins) > 1 and ins[1] is not None:
            return [int(v) for v in self.const(ins[1], "axes").reshape(-1)]
        return list(a["axes"]) if "axes" in a else None

    def op_Squeeze(self, node, ins, a, scope):
        shape = list(self.ex(ins[0]).shape)
        axes = self._axes(ins, a)
        axes = [i for i, s in enumerate(shape) if s == 1] if axes is None else [x % len(shape) for x in axes]
        return self.reshape_to(ins[0], tuple(s for i, s in enumerate(shape) if i not in axes), scope)

    def op_Unsqueeze(self, node, ins, a, scope):
        shape = list(self.ex(ins[0]).shape)
        axes = sorted(x % (len(shape) + len(self._axes(ins, a))) for x in self._axes(ins, a))
        for ax in axes:
            shape.insert(ax, 1)
        return self.reshape_to(ins[0], tuple(shape), scope)

    def op_Transpose(self, node, ins, a, scope):
        nd = self.ex(ins[0]).dim()
        perm = list(a.get("perm", range(nd - 1, -1, -1)))
        return self.call(torch.permute, (ins[0], perm), scope=scope)

    def op_Concat(self, node, ins, a, scope):
        parts = [v for v in ins if v is not None]
        return self.call(torch.cat, (parts, int(a["axis"])), scope=scope)

    def op_Split(self, node, ins, a, scope):
        x = ins[0]
        axis = int(a.get("axis", 0))
        size = self.ex(x).shape[axis]
        if len(ins) > 1 and ins[1] is not None:
            sizes = [int(s) for s in self.const(ins[1], "split sizes")]
        elif "split" in a:
            sizes = list(a["split"])
        else:
            n = int(a.get("num_outputs", len(node.output)))
            step = math.ceil(size / n)
            sizes = [min(step, size - i * step) for i in range(n)]
        pieces = self.call(torch.split, (x, sizes, axis), scope=scope)
        if not self.dep(pieces):
            return list(pieces)
        out = []
        for i in range(len(sizes)):
            out.append(self.call(operator.getitem, (pieces, i), scope=scope))
        return out

    def op_Slice(self, node, ins, a, scope):
        x = ins[0]
        nd = self.ex(x).dim()
        if len(ins) > 1:
            given = [None if v is None else list(self.const(v, "slice bounds").tolist()) for v in ins[1:]]
            starts, ends, axes, steps = (given + [None, None])[:4]
        else:
            starts, ends, axes, steps = list(a["starts"]), list(a["ends"]), a.get("axes"), None
        axes = list(range(len(starts))) if axes is None else [int(v) % nd for v in axes]
        steps = steps or [1] * len(starts)
        index = [slice(None)] * nd
        for ax, s, e, k in zip(axes, starts, ends, steps, strict=True):
            e = None if (k > 0 and e >= _INT64_MAX) or (k < 0 and e <= -_INT64_MAX) else e
            index[ax] = slice(int(s), None if e is None else int(e), int(k))
        if not self.dep(x):  # numpy slices backwards too (older exporters reverse pad lists so)
            return torch.from_numpy(np.ascontiguousarray(x.numpy()[tuple(index)]))
        if any(i.step < 0 for i in index if i.step is not None):
            raise _Unsupported("a backwards slice of the input")
        return self.call(operator.getitem, (x, tuple(index)), scope=scope)

    def op_Gather(self, node, ins, a, scope):
        x, idx = ins[0], self.const(ins[1], "gather indices")
        axis = int(a.get("axis", 0)) % self.ex(x).dim()
        if not self.dep(x):
            return torch.index_select(x, axis, idx.reshape(-1)).reshape(
                (*x.shape[:axis], *idx.shape, *x.shape[axis + 1 :])
            )
        if idx.dim() == 0:  # x[:, i]: an index map trace.py reads
            index = (slice(None),) * axis + (int(idx),)
            return self.call(operator.getitem, (x, index), scope=scope)
        raise _Unsupported("gather with an index tensor")

    def op_Pad(self, node, ins, a, scope):
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        x = ins[0]
        nd = self.ex(x).dim()
        if len(ins) > 1:
            pads = [int(p) for p in self.const(ins[1], "pads")]
            value = float(self.const(ins[2], "pad value")) if len(ins) > 2 and ins[2] is not None else 0.0
            axes = None if len(ins) < 4 or ins[3] is None else [int(v) for v in self.const(ins[3], "axes")]
        else:
            pads, value, axes = list(a["pads"]), float(a.get("value", 0.0)), None
        axes = list(range(nd)) if axes is None else [v % nd for v in axes]
        begin, end = [0] * nd, [0] * nd
        for i, ax in enumerate(axes):
            begin[ax], end[ax] = pads[i], pads[i + len(axes)]
        if mode != "constant":
            raise _Unsupported(f"{mode} padding")
        return self._pad_first(x, begin, end, scope, value)

    def _softmax(self, node, ins, a, scope, fn):
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1))
        return self.call(fn, (ins[0], axis), scope=scope)

    def op_Softmax(self, node, ins, a, scope):
        return self._softmax(node, ins, a, scope, torch.softmax)

    def op_LogSoftmax(self, node, ins, a, scope):
        return self._softmax(node, ins, a, scope, torch.log_softmax)

    def op_ReduceMean(self, node, ins, a, scope):
        axes = self._axes(ins, a)
        nd = self.ex(ins[0]).dim()
        axes = list(range(nd)) if axes is None else axes
        keep = bool(a.get("keepdims", 1))
        if self.dep(ins[0]) and nd == 4 and sorted(x % 4 for x in axes) == [2, 3]:
            # a global average (nn.AdaptiveAvgPool2d, x.mean((2, 3))): the pool layer trace.py draws
            pooled = self.module(nn.AdaptiveAvgPool2d(1), ins[0], scope)
            return pooled if keep else self.reshape_to(pooled, tuple(self.example[pooled].shape[:2]), scope)
        return self.call(torch.mean, (ins[0], axes, keep), scope=scope)


def load_onnx(path: str | Path) -> fx.GraphModule:
    """The ONNX model in `path` as a GraphModule in eval mode (its input shape in gm.meta)."""
    path = Path(path)
    try:
        import onnx
    except ImportError:
        raise LoadError(f"{path}: reading ONNX needs the onnx package (pip install onnx)") from None
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf and the external-data reader raise many kinds
        text = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {text[0] if text else ''}"
        raise LoadError(f"{path} is not an ONNX model ({why})") from None
    if not model.graph.node:
        raise LoadError(f"{path} is not an ONNX model (no graph nodes)")
    b = _Builder(path, model)
    from onnx import numpy_helper

    init = set()
    for t in model.graph.initializer:
        try:
            b.env[t.name] = torch.from_numpy(numpy_helper.to_array(t).copy())
        except Exception as exc:  # noqa: BLE001
            raise LoadError(f"{path}: cannot read weight {t.name!r} ({type(exc).__name__}: {exc})") from None
        init.add(t.name)
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise LoadError(f"{path}: the model takes {len(inputs)} inputs; convscope feeds it one tensor")
    dims = []
    for k, d in enumerate(inputs[0].type.tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif k == 0:
            dims.append(1)  # a free batch size
        else:
            free = d.dim_param or "?"
            raise LoadError(f"{path}: input dim {k} has no fixed size ({free}); export it with one")
    if len(dims) < 2 or dims[0] != 1:
        raise LoadError(f"{path}: input shape {tuple(dims)}; convscope needs (batch 1, C, H, W) or (1, N)")
    x = b.graph.placeholder("x")
    b.example[x] = torch.rand(dims, generator=torch.Generator().manual_seed(0))
    b.env[inputs[0].name] = x
    with torch.no_grad():
        for node in model.graph.node:
            try:
                b.run(node)
            except _Unsupported as why:
                raise LoadError(f"{path}: ONNX op {node.op_type} (node {node.name!r}): {why}") from None
            except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:
                text = str(exc).strip().splitlines()
                raise LoadError(
                    f"{path}: cannot convert ONNX op {node.op_type} (node {node.name!r}): "
                    f"{type(exc).__name__}: {text[0] if text else ''}"
                ) from None
    outs = []
    for o in model.graph.output:
        v = b.env.get(o.name)
        if v is None:
            raise LoadError(f"{path} is damaged: nothing computes its output {o.name!r}")
        outs.append(v if b.dep(v) else b.const_node(v))
    b.graph.output(outs[0] if len(outs) == 1 else tuple(outs))
    gm = fx.GraphModule(b.root, b.graph, class_name=re.sub(r"\W", "_", path.stem) or "OnnxModel")
    gm.graph.eliminate_dead_code()  # shape arithmetic left without users
    gm.recompile()
    gm.meta["convscope_program"] = True
    gm.meta["convscope_input_shape"] = tuple(dims[1:])
    return gm.eval()
