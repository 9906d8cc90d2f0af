"""Load a user's model: `FILE.py:NAME` or `package.module:NAME`, and its weights, with one-line errors.

NAME is an nn.Module class (built with no arguments), a function that returns a module, or a
module instance; a `.pt2` or `.onnx` file needs no NAME (models/formats.py reads it).  Weights
are `.safetensors`, or `.pt` / `.pth` state dicts read with `torch.load(weights_only=True)`: a
weights file is data, never code.  Every failure raises
LoadError whose message is one line naming the file, the key or the line of the user's code:
not Python, raises on import, no such NAME, not a Module, weights for another model (first bad key
and both shapes), NaN in the weights.  The model comes back in eval mode on the CPU.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import linecache
import pickle
import sys
import traceback
from pathlib import Path

import torch
from torch import nn


class LoadError(Exception):
    """The model or its weights cannot be loaded; the message is one line."""


def _where(exc: BaseException, filename: str | None) -> str:
    """' (FILE:LINE: source)' of the innermost traceback frame in `filename` (or outside torch)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({exc.filename}:{exc.lineno}: {(exc.text or '').strip()})"
    mine = [f for f in frames if filename and Path(f.filename).resolve() == Path(filename).resolve()]
    if not mine:
        mine = [f for f in frames if "/torch/" not in f.filename and not f.filename.endswith("loader.py")]
    if not mine:
        return ""
    f = mine[-1]
    line = (f.line or linecache.getline(f.filename, f.lineno)).strip()
    return f" ({f.filename}:{f.lineno}: {line})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import_file(path: Path):
    if not path.is_file():
        raise LoadError(f"no such file: {path}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    mod_name = f"convscope_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"{path} is not Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
        sys.modules.pop(mod_name, None)
        if isinstance(exc, SyntaxError):
            raise LoadError(f"{path} is not Python: line {exc.lineno}: {exc.msg}") from None
        if isinstance(exc, UnicodeDecodeError) or "null bytes" in str(exc):
            raise LoadError(f"{path} is not Python ({_first_line(exc)})") from None
        raise LoadError(f"{path} raises on import: {_first_line(exc)}{_where(exc, str(path))}") from None
    except BaseException as exc:  # noqa: BLE001 - whatever the user's module raises, report it in one line
        sys.modules.pop(mod_name, None)
        raise LoadError(f"{path} raises on import: {_first_line(exc)}{_where(exc, str(path))}") from None
    return module


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise LoadError(f"no module named {exc.name!r}") from None
        raise LoadError(f"module {name} raises on import: {_first_line(exc)}{_where(exc, None)}") from None
    except BaseException as exc:  # noqa: BLE001
        raise LoadError(f"module {name} raises on import: {_first_line(exc)}{_where(exc, None)}") from None


def _candidates(module) -> list[str]:
    out = []
    for k, v in vars(module).items():
        if k.startswith("_") or getattr(v, "__module__", None) != module.__name__:
            continue
        if (inspect.isclass(v) and issubclass(v, nn.Module)) or inspect.isfunction(v):
            out.append(k)
    return out


def load_model(spec: str, weights: str | Path | None = None) -> nn.Module:
    """The module named by `spec` ('FILE.py:NAME' or 'package.module:NAME', or a '.pt2' / '.onnx' file,
    read without its source by models/formats.py), weights loaded, in eval mode.  Raises LoadError."""
    if Path(spec).suffix.lower() in (".pt2", ".onnx"):
        from convscope.models.formats import load_program

        model = load_program(spec)
        if weights is not None:
            load_weights(model, weights, Path(spec).name)
        return model.eval()
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise LoadError(f"model {spec!r}: expected FILE.py:NAME or package.module:NAME")
    is_file = where.endswith(".py") or "/" in where or Path(where).is_file()
    module = _import_file(Path(where)) if is_file else _import_module(where)
    source = str(Path(where)) if is_file else where
    if not hasattr(module, name):
        known = ", ".join(_candidates(module)) or "no modules or functions"
        raise LoadError(f"{source} has no {name!r} (it defines: {known})")
    obj = getattr(module, name)
    origin = getattr(module, "__file__", None)
    if isinstance(obj, nn.Module):
        model = obj
    elif inspect.isclass(obj):
        if not issubclass(obj, nn.Module):
            raise LoadError(f"{source}:{name} is not a torch.nn.Module (it is the class {obj.__name__})")
        model = _call(obj, f"{name}()", origin)
    elif callable(obj):
        model = _call(obj, f"{name}()", origin)
        if not isinstance(model, nn.Module):
            raise LoadError(f"{source}:{name}() returned {type(model).__name__}, not a torch.nn.Module")
    else:
        raise LoadError(f"{source}:{name} is not a torch.nn.Module (it is {type(obj).__name__})")
    if weights is not None:
        load_weights(model, weights, name)
    return model.eval()


def _call(fn, what: str, origin: str | None):
    try:
        return fn()
    except TypeError as exc:
        if "required" in str(exc) and "argument" in str(exc):
            raise LoadError(f"{what} needs arguments: {_first_line(exc)}") from None
        raise LoadError(f"{what} raises: {_first_line(exc)}{_where(exc, origin)}") from None
    except BaseException as exc:  # noqa: BLE001
        raise LoadError(f"{what} raises: {_first_line(exc)}{_where(exc, origin)}") from None


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(s) for s in t.shape) or "scalar"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors` or `.pt` / `.pth` (weights_only; never unpickles code)."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"no such weights file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix in (".pt", ".pth"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise LoadError(f"weights {path}: expected .safetensors, .pt or .pth")
    except LoadError:
        raise
    except pickle.UnpicklingError as exc:
        raise LoadError(f"weights {path} hold more than tensors (refused: {_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - corrupt files raise all sorts
        raise LoadError(f"cannot read weights {path}: {_first_line(exc)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps its state dict
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LoadError(f"weights {path} are not a state dict (a mapping of names to tensors)")
    return state


def load_weights(model: nn.Module, path: str | Path, name: str = "the model") -> None:
    """Check `path` against `model`'s state dict (first bad key, both shapes; NaN), then load it."""
    state = read_state_dict(path)
    own = model.state_dict()
    for key, want in own.items():
        if key not in state:
            raise LoadError(f"weights {path} do not fit {name}: they lack {key!r} (shape {_shape(want)})")
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise LoadError(
                f"weights {path} do not fit {name}: {key!r} has shape {_shape(got)} in the file, "
                f"{_shape(want)} in the model"
            )
    for key in state:
        if key not in own:
            raise LoadError(f"weights {path} do not fit {name}: the file has {key!r}, the model does not")
    for key, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = "NaN" if bool(torch.isnan(t).any()) else "infinity"
            raise LoadError(f"weights {path}: {bad} in {key!r}")
    model.load_state_dict(state, strict=True)


def parse_shape(text: str) -> tuple[int, ...]:
    """'3,224,224' -> (3, 224, 224); LoadError for anything but positive integers."""
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise LoadError(f"input shape {text!r}: expected C,H,W (or N) of positive integers")
    return shape
