"""Models read from a file alone, without the user's source: torch.export programs and ONNX files.

`load_program(path)` reads a `.pt2` (torch.export.save) or an `.onnx` file into an fx.GraphModule in
eval mode that models/trace.py traces like any model: its nodes keep their module paths (the
program's `nn_module_stack`, the ONNX scopes), so the Dag's layers are named `layer1.0.conv1` as
they would be from the source.  `program_input_shape(gm)` is the input (C, H, W) the file was made for.

A `.pt2` is a zip of JSON (the graph), raw tensor bytes and a few pickles, and `torch.export.load`
would run code from it: pickled weights and constants are read with `weights_only=False` or plain
`pickle.loads`, the sample inputs fall back to `weights_only=False` when the safe read fails,
symbolic sizes go through `sympy.sympify` (an `eval`), and `ExportedProgram.module()` `exec`s the
archive's guard code.  So the archive is checked first (only the files the format names, no pickled
tensors or objects, sample inputs that load with `weights_only=True`, size expressions of names,
numbers and sympy's functions only), the program is lifted into a module here rather than by
`.module()`, and it may call torch operators only.  ONNX files are protobuf data: models/onnx_torch.py.
"""

from __future__ import annotations

import ast
import io
import json
import operator
import re
import zipfile
from pathlib import Path

import torch
import torch.fx as fx
from convscope.models.loader import LoadError
from torch import nn


def load_program(path: str | Path) -> fx.GraphModule:
    """The model in a `.pt2` or `.onnx` file, as a GraphModule in eval mode.  Raises LoadError."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".pt2":
        return load_pt2(path)
    if suffix == ".onnx":
        from convscope.models.onnx_torch import load_onnx

        return load_onnx(path)
    raise LoadError(f"{path}: expected a .pt2 or .onnx file")


def program_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The input shape (without the batch dim) a program read by load_program was made for."""
    meta = getattr(model, "meta", None)
    shape = meta.get("convscope_input_shape") if isinstance(meta, dict) else None
    return tuple(shape) if shape else None


# -- .pt2 ------------------------------------------------------------------------------------------------

# The files torch.export.save writes, relative to the archive's folder.  Anything else (compiled
# AOTInductor libraries, pickled custom objects, the pre-2.7 pickled layout) is refused.
_PT2_FILES = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json|data/weights/weight_\d+|data/weights/[\w.-]+_weights_config\.json"
    r"|data/constants/tensor_\d+|data/constants/[\w.-]+_constants_config\.json"
    r"|data/sample_inputs/[\w.-]+\.pt|extra/[^/]+)"
)
# The functions a size expression may call: those torch's deserializer hands sympy.
_SYM_FUNCTIONS = {
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal",
    "ToFloat", "Identity", "Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not",
    # sympy's own classes, as srepr writes an expression: Mul(Integer(2), Symbol('s0', integer=True))
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Equality", "Unequality",
    "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan", "BooleanTrue", "BooleanFalse",
    "Infinity", "NegativeInfinity", "Zero", "One", "NegativeOne", "Half",
}  # fmt: skip
_SYM_NAME = re.compile(r"[a-z]+\d+|oo|zoo|nan|true|false|True|False")
# Names and module paths end up inside generated Python (`getattr(self.blocks, "conv-1")`): any
# character but quotes, backslashes and control characters, which could close that string.
_PLAIN_NAME = re.compile(r"[^\"'\\\x00-\x1f\x7f]*")
_EXPR_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Constant, ast.Load,
    ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)  # fmt: skip


def _safe_expr(text: str, guard: bool) -> bool:
    """Whether `text` is arithmetic over size symbols (calls of sympy's classes and functions with
    constant arguments allowed), or, for a guard, over `L['x'].size()[i]` / `.stride()[i]` /
    `.dim()`: nothing that reaches further (no attributes, no other names, no other calls)."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    for n in ast.walk(tree):
        if isinstance(n, _EXPR_NODES):
            if isinstance(n, ast.Constant) and not isinstance(n.value, int | float | str):
                return False
        elif isinstance(n, ast.Name):
            ok = n.id == "L" if guard else (n.id in _SYM_FUNCTIONS or _SYM_NAME.fullmatch(n.id))
            if not ok:
                return False
        elif isinstance(n, ast.keyword):
            if guard or not isinstance(n.value, ast.Constant):
                return False
        elif isinstance(n, ast.Call):
            if guard:
                if not (isinstance(n.func, ast.Attribute) and not n.args):
                    return False
            elif not (isinstance(n.func, ast.Name) and n.func.id in _SYM_FUNCTIONS):
                return False
        elif isinstance(n, ast.Attribute):
            if not guard or n.attr not in ("size", "stride", "storage_offset", "dim", "numel"):
                return False
            if not isinstance(n.value, ast.Subscript | ast.Name):
                return False
        elif isinstance(n, ast.Subscript):
            if not guard:
                return False
        else:
            return False
    return True


def _strings_under(obj, keys):
    """(key, value) of every string stored under a key that `keys(key)` accepts in a JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str) and keys(k):
                yield k, v
            else:
                yield from _strings_under(v, keys)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings_under(v, keys)


def _unpickler_reason(exc: Exception) -> str:
    """The line of torch's weights-only error that says what was refused (it spans many lines)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", x).strip() for x in str(exc).splitlines() if x.strip()]
    named = [x for x in lines if "Unsupported global" in x or "Unsupported operand" in x]
    return (named or lines or [type(exc).__name__])[0][:160]


def _is_name_key(key: str) -> bool:
    """JSON keys of node names, op targets and parameter / buffer / constant paths."""
    return key in ("name", "target") or key.endswith("_name")


def _refused(path: Path, why: str) -> LoadError:
    return LoadError(f"{path}: refused, {why}")


def _check_pt2_archive(path: Path) -> None:
    """Refuse an archive that torch.export.load would run code from (see the module docstring)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise LoadError(f"{path} is not a torch.export program (not a zip archive)") from None
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        roots = [n[: -len("archive_format")] for n in names if n.endswith("archive_format")]
        if len(roots) != 1 or not any(n.startswith(roots[0] + "models/") for n in names):
            raise LoadError(f"{path} is not a torch.export program (no archive_format, models/ in the zip)")
        root = roots[0]
        for name in names:
            rel = name[len(root) :] if name.startswith(root) else name
            if not name.startswith(root) or not _PT2_FILES.fullmatch(rel):
                raise _refused(path, f"it holds {name!r}, which is not plain graph or tensor data")
        try:
            for name in names:
                rel = name[len(root) :]
                if rel.endswith("_config.json"):
                    config = json.loads(zf.read(name)).get("config", {})
                    pickled = [k for k, v in config.items() if v.get("use_pickle")]
                    if pickled:
                        raise _refused(path, f"{pickled[0]!r} is stored as a pickle (it could run code)")
                elif rel.startswith("models/"):
                    program = json.loads(zf.read(name))
                    for _, expr in _strings_under(program, lambda k: k == "expr_str"):
                        if not _safe_expr(expr, guard=False):
                            raise _refused(path, f"a size expression is not arithmetic: {expr[:60]!r}")
                    for key, name in _strings_under(program, _is_name_key):
                        if not _PLAIN_NAME.fullmatch(name):
                            raise _refused(path, f"a {key} is not a plain name: {name[:60]!r}")
                    for guard in program.get("guards_code") or []:
                        if not isinstance(guard, str) or not _safe_expr(guard, guard=True):
                            raise _refused(path, f"a guard is not a size check: {str(guard)[:60]!r}")
                elif rel.startswith("data/sample_inputs/"):
                    try:
                        torch.load(io.BytesIO(zf.read(name)), weights_only=True)
                    except Exception as exc:  # noqa: BLE001 - torch would retry this with weights_only=False
                        why = _unpickler_reason(exc)
                        raise _refused(path, f"its sample inputs are more than tensors ({why})") from None
        except LoadError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, AttributeError, KeyError) as exc:
            raise LoadError(f"{path} is damaged ({type(exc).__name__}: {str(exc)[:80]})") from None


# Callables a program's graph may hold besides torch operators: Python's arithmetic on sizes.
_SIZE_FUNCTIONS = {v for k, v in vars(operator).items() if callable(v) and not k.startswith("_")}


def _check_targets(path: Path, graph: fx.Graph) -> None:
    for n in graph.nodes:
        if n.op == "call_function":
            t = n.target
            if isinstance(t, torch._ops.OpOverload) or t in _SIZE_FUNCTIONS:
                continue
            if getattr(t, "__module__", "") == "torch" and getattr(t, "__name__", "").startswith("sym_"):
                continue
            raise _refused(path, f"node {n.name!r} calls {t!r}, which is not a torch operator")
        elif n.op in ("call_module", "call_method"):
            raise _refused(path, f"node {n.name!r} is a {n.op}, which a program does not hold")


def _set_tensor(root: nn.Module, target: str, value: torch.Tensor, parameter: bool, persistent: bool) -> None:
    *path, leaf = target.split(".")
    m = root
    for p in path:
        if not hasattr(m, p):
            m.add_module(p, nn.Module())
        m = getattr(m, p)
    value = value.detach()  # the program is dropped after lifting: its tensors need no copy
    if parameter:
        m.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
    else:
        m.register_buffer(leaf, value, persistent=persistent)


def _lift(path: Path, ep) -> fx.GraphModule:
    """The program as a plain GraphModule: parameters, buffers and constants become attributes read by
    get_attr, the one user input a placeholder, the user outputs its output (buffer updates, which
    only a training-mode program makes, are dropped).  Node meta (module paths) is kept."""
    from torch.export.graph_signature import InputKind, OutputKind

    specs = {s.arg.name: s for s in ep.graph_signature.input_specs}
    root = nn.Module()
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    user = []
    for n in ep.graph.nodes:
        if n.op == "placeholder":
            spec = specs[n.name]
            if spec.kind == InputKind.USER_INPUT:
                env[n] = graph.placeholder(n.name)
                env[n].meta = dict(n.meta)
                user.append(n)
                continue
            if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                value = ep.state_dict.get(spec.target)
                if value is None:  # a non-persistent buffer lives with the constants
                    value = ep.constants.get(spec.target)
            elif spec.kind == InputKind.CONSTANT_TENSOR:
                value = ep.constants.get(spec.target)
            else:
                raise _refused(path, f"input {n.name!r} is a {spec.kind.name.lower()}")
            if not isinstance(value, torch.Tensor):
                raise LoadError(f"{path} is damaged: no tensor for {spec.target!r}")
            if not _PLAIN_NAME.fullmatch(spec.target) or "" in spec.target.split("."):
                raise _refused(path, f"a tensor's path is not a plain name: {spec.target[:60]!r}")
            # a state dict of the source model fits: its non-persistent buffers and constants stay out
            persistent = spec.kind == InputKind.BUFFER and spec.persistent is not False
            _set_tensor(root, spec.target, value, spec.kind == InputKind.PARAMETER, persistent)
            env[n] = graph.get_attr(spec.target)
        elif n.op == "output":
            kinds = [s.kind for s in ep.graph_signature.output_specs]
            keep = [env[a] for a, k in zip(n.args[0], kinds, strict=True) if k == OutputKind.USER_OUTPUT]
            graph.output(keep[0] if len(keep) == 1 else tuple(keep))
        else:
            env[n] = graph.node_copy(n, lambda a: env[a])
    if len(user) != 1:
        raise LoadError(f"{path}: the program takes {len(user)} inputs; convscope feeds it one tensor")
    gm = fx.GraphModule(root, graph, class_name=re.sub(r"\W", "_", path.stem) or "Program")
    gm.meta["convscope_program"] = True
    val = user[0].meta.get("val")
    if isinstance(val, torch.Tensor) and val.dim() >= 2:
        gm.meta["convscope_input_shape"] = tuple(int(s) for s in val.shape[1:])
    return gm.eval()


def load_pt2(path: str | Path) -> fx.GraphModule:
    """A torch.export program, checked (see the module docstring) and lifted into a GraphModule."""
    path = Path(path)
    _check_pt2_archive(path)
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign archive raises anything
        text = str(exc).strip().splitlines()
        raise LoadError(f"cannot read {path}: {type(exc).__name__}: {text[0] if text else ''}") from None
    _check_targets(path, ep.graph)
    return _lift(path, ep)
