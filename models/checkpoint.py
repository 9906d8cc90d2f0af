"""Checkpoints of a live RevaCNN: weights + optimizer state (safetensors) and architecture + run state (JSON).

A checkpoint is two files in one folder:
  <name>.json                       the manifest: format, architecture, optimizer name, the caller's `meta`
                                    (hyperparameters, step counters, seeds), and the name + sha256 of ...
  <name>.<sha256[:16]>.safetensors  every tensor: `model/<param>`, `optim/<param>/<state key>` (SGD
                                    momentum_buffer, Adam exp_avg / exp_avg_sq / step, Adadelta square_avg /
                                    acc_delta / step), `extra/<key>` (the caller's, e.g. smoothed statistics).
Saving is atomic: the tensors go to a new, content-named file first, and replacing the manifest
(os.replace) is the commit — a crash at any point leaves the previous checkpoint whole and loadable.  The
previous tensor file is deleted only after the commit.

Loading validates everything (manifest fields, architecture, the sha256 of the tensor file, tensor names,
shapes, dtypes, finiteness, optimizer state keys) before anything is built, and turns every failure into a
CheckpointError that names the file and the problem; it returns a Checkpoint and touches no live object, so
a bad file leaves a running session as it was.  Nothing is ever unpickled.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import torch
from convscope.engine.files import atomic_write, read_regular, reason
from convscope.models.revacnn import Arch, RevaCNN
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

FORMAT = "convscope-checkpoint"
VERSION = 1
# Optimizer state keys per optimizer name; "step" is a 0-d tensor, every other key has its parameter's shape.
STATE_KEYS: dict[str, frozenset[str]] = {
    "sgd": frozenset({"momentum_buffer"}),
    "adam": frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
    "adadelta": frozenset({"step", "square_avg", "acc_delta"}),
}
SCALAR_KEYS = frozenset({"step"})
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few kB; a bigger "manifest" is some other file


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or does not match its architecture."""


@dataclass
class Checkpoint:
    """A validated checkpoint, not yet applied to anything."""

    path: Path  # the manifest
    arch: Arch
    model_state: dict[str, torch.Tensor]  # state-dict name -> tensor (float32, CPU)
    optimizer_name: str | None  # "sgd", "adam", "adadelta", another optimizer's class name, or None
    optimizer_state: dict[str, dict[str, torch.Tensor]]  # parameter name -> state key -> tensor
    meta: dict = field(default_factory=dict)  # the caller's JSON, as saved
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # the caller's tensors, as saved

    def build_model(self, device: torch.device | str | None = None) -> RevaCNN:
        model = RevaCNN(self.arch, device="meta").to_empty(device=device or "cpu")
        model.load_state_dict(self.model_state)
        return model


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    return type(optimizer).__name__.lower()


def manifest_path(path: str | os.PathLike) -> Path:
    """`run` and `run.json` both name the manifest run.json."""
    path = Path(path)
    return path if path.suffix == ".json" else path.with_name(path.name + ".json")


# -- optimizer state by parameter name (survives a rebuilt optimizer and a reordered parameter list) -------
def optimizer_state_by_name(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    """{param name: {key: tensor clone}} for every parameter with state; non-tensor entries are skipped."""
    out = {}
    for name, p in model.named_parameters():
        state = optimizer.state.get(p)
        if state:
            out[name] = {k: v.detach().clone() for k, v in state.items() if torch.is_tensor(v)}
    return out


def check_optimizer_state(
    model_shapes: dict[str, tuple[int, ...]], opt_name: str | None, state: dict[str, dict], where: str
) -> None:
    """Raise CheckpointError unless `state` fits parameters of `model_shapes` and optimizer `opt_name`."""
    allowed = STATE_KEYS.get(opt_name or "")
    for pname, entries in state.items():
        if pname not in model_shapes:
            raise CheckpointError(f"{where}: optimizer state for {pname!r}, which the model does not have")
        for key, t in entries.items():
            if allowed is not None and key not in allowed:
                raise CheckpointError(f"{where}: {opt_name} has no state {key!r} (found on {pname})")
            want = () if key in SCALAR_KEYS else model_shapes[pname]
            if tuple(t.shape) != tuple(want):
                raise CheckpointError(
                    f"{where}: optimizer state {pname}/{key} has shape {tuple(t.shape)}, "
                    f"expected {tuple(want)}"
                )
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise CheckpointError(f"{where}: optimizer state {pname}/{key} holds NaN or inf")


def load_optimizer_state_by_name(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, dict[str, torch.Tensor]]
) -> None:
    """Put `state` (optimizer_state_by_name's form) into `optimizer`, whose parameters are model's."""
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    check_optimizer_state(shapes, optimizer_name(optimizer), state, "optimizer state")
    params = dict(model.named_parameters())
    for name, entries in state.items():
        p = params[name]
        optimizer.state[p] = {
            k: v.to(device=p.device if k not in SCALAR_KEYS else v.device).clone() for k, v in entries.items()
        }


# -- save ------------------------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes) -> None:
    atomic_write(path, data)  # OutputError (an OSError): "cannot write PATH (the disk is full)"


def _previous_weights(manifest: Path) -> Path | None:
    try:
        name = json.loads(read_regular(manifest, limit=MAX_MANIFEST_BYTES))["weights_file"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest.parent / name if isinstance(name, str) and Path(name).name == name else None


def _refuse_special(path: Path) -> None:
    """A FIFO, device, socket or folder where a checkpoint file should go: one clear error, before
    anything is opened (opening a FIFO blocks until someone writes to it)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"checkpoint {path} is not a regular file (a folder, FIFO, device or socket)")


def save_checkpoint(
    path: str | os.PathLike,
    model: RevaCNN,
    optimizer: torch.optim.Optimizer | None = None,
    meta: dict | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write model, optimizer state, `meta` (JSON) and `extra` tensors atomically; return the manifest."""
    manifest = manifest_path(path)
    _refuse_special(manifest)
    try:
        manifest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"checkpoint: cannot make the folder {manifest.parent} ({reason(exc)})"
        ) from None
    tensors = {
        f"model/{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    opt_name = None
    if optimizer is not None:
        opt_name = optimizer_name(optimizer)
        for pname, entries in optimizer_state_by_name(model, optimizer).items():
            for key, v in entries.items():
                tensors[f"optim/{pname}/{key}"] = v.detach().cpu().contiguous()
    for key, v in (extra or {}).items():
        tensors[f"extra/{key}"] = v.detach().cpu().contiguous()
    blob = st_save(tensors)
    digest = hashlib.sha256(blob).hexdigest()
    weights = manifest.with_name(f"{manifest.stem}.{digest[:16]}.safetensors")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch,
        "optimizer": opt_name,
        "weights_file": weights.name,
        "weights_sha256": digest,
        "meta": meta or {},
        "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"  # fails here, before any write, on bad meta
    previous = _previous_weights(manifest)
    existed = weights.exists()  # the same content saved before: the file is shared, never ours to delete
    _write_atomic(weights, blob)
    try:
        _write_atomic(manifest, text.encode())  # the commit
    except BaseException:
        if not existed and weights != previous:
            weights.unlink(missing_ok=True)  # no manifest names it: leave the folder as it was
        raise
    if previous is not None and previous != weights and previous.is_file():
        previous.unlink()
    return manifest


# -- load ------------------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint; raises CheckpointError and changes nothing on any problem."""
    manifest = manifest_path(path)
    where = str(manifest)
    if not manifest.exists():
        raise CheckpointError(f"checkpoint {where} not found")
    try:
        doc = json.loads(read_regular(manifest, limit=MAX_MANIFEST_BYTES))  # a FIFO is refused, not waited on
    except OSError as exc:
        raise CheckpointError(f"checkpoint: {exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {where} is not readable JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a convscope checkpoint (no format {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise CheckpointError(
            f"{where} has checkpoint version {doc.get('version')!r}; this build reads {VERSION}"
        )
    try:
        arch = Arch.from_dict(doc.get("arch"))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: bad architecture ({exc})") from None
    opt_name = doc.get("optimizer")
    meta = doc.get("meta", {})
    if (opt_name is not None and not isinstance(opt_name, str)) or not isinstance(meta, dict):
        raise CheckpointError(f"{where}: 'optimizer' must be a name or null and 'meta' an object")

    wname = doc.get("weights_file")
    if not isinstance(wname, str) or Path(wname).name != wname or not wname.endswith(".safetensors"):
        raise CheckpointError(
            f"{where}: bad weights_file {wname!r} (must be a file name beside the manifest)"
        )
    wpath = manifest.parent / wname
    try:
        blob = read_regular(wpath)
    except OSError as exc:
        raise CheckpointError(f"{where}: its tensor file is unreadable ({exc})") from None
    if hashlib.sha256(blob).hexdigest() != doc.get("weights_sha256"):
        raise CheckpointError(
            f"{where}: tensor file {wpath} is corrupt (its sha256 differs from the manifest's)"
        )
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: tensor file {wpath} is not valid safetensors ({exc})") from None

    expected = {k: tuple(v.shape) for k, v in RevaCNN(arch, device="meta").state_dict().items()}
    model_state, opt_state, extra = {}, {}, {}
    for key, t in tensors.items():
        kind, _, rest = key.partition("/")
        if kind == "model":
            model_state[rest] = t
        elif kind == "optim" and rest.count("/") == 1:
            pname, sname = rest.split("/")
            opt_state.setdefault(pname, {})[sname] = t
        elif kind == "extra":
            extra[rest] = t
        else:
            raise CheckpointError(f"{where}: unexpected tensor {key!r}")
    missing, unexpected = sorted(set(expected) - set(model_state)), sorted(set(model_state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: weights do not match architecture {arch.to_dict()}: missing {missing or 'nothing'}, "
            f"unexpected {unexpected or 'nothing'}"
        )
    for key, shape in expected.items():
        t = model_state[key]
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            raise CheckpointError(
                f"{where}: {key} is {t.dtype} {tuple(t.shape)} but architecture {arch.to_dict()} needs "
                f"float32 {shape}"
            )
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{where}: {key} holds NaN or inf values")
    check_optimizer_state(expected, opt_name, opt_state, where)
    return Checkpoint(manifest, arch, model_state, opt_name, opt_state, meta, extra)
