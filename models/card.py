"""A model card: what a model expects as input and what its outputs mean, written once beside the model.

    # mnist_net.toml, next to mnist_net.py (or a [card] table in the --config settings file)
    input_shape = [1, 28, 28]        # or "1,28,28"
    normalize = "0.1307/0.3081"      # MEAN[,MEAN..]/STD[,STD..], or mean = [...] and std = [...]
    classes = "classes.txt"          # a file (one name a line), "a,b,c", or a list of names
    weights = "mnist_net.pt"         # relative to the card

`parse_card(values, where)` checks every field and raises CardError (one line naming the field and the
file) for each mistake; `read_card(path)` reads a TOML file; `card_beside(model)` finds FILE.toml next to
FILE.py (or next to a FILE.pt2 / FILE.onnx given as the model).  `merge` layers cards: the shipped or
beside-file card < --config's [card] < the command line.
Pure Python (tomllib): the render process reads cards for the command line's checks, the worker to load.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

MAX_CARD_BYTES = 1 << 20
MAX_CLASSES = 100_000
KEYS = ("input_shape", "normalize", "mean", "std", "classes", "weights")


class CardError(ValueError):
    """A model card field is wrong; the message is one line naming the field and where it came from."""


@dataclass(frozen=True)
class ModelCard:
    """The fields a card may set; None: not set here (a card below it in `merge`, or the model, decides)."""

    input_shape: tuple[int, ...] | None = None  # (C, H, W) or (N,), without the batch dim
    mean: tuple[float, ...] | None = None  # per channel (or one for all), subtracted first
    std: tuple[float, ...] | None = None  # per channel (or one for all), divided by next
    classes: tuple[str, ...] | None = None  # one name per output
    weights: str | None = None  # a weights file (absolute once parsed)

    def to_dict(self) -> dict:
        """Plain types, for the pipe (None fields left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def merge(*cards: ModelCard | None) -> ModelCard:
    """Later cards override earlier ones field by field."""
    out = ModelCard()
    for card in cards:
        if card is not None:
            out = replace(out, **card.to_dict())
    return out


def parse_shape(text, where: str = "input_shape") -> tuple[int, ...]:
    """'3,224,224' or [3, 224, 224] -> (3, 224, 224): one, or three, positive integers."""
    if isinstance(text, str):
        parts = [s.strip() for s in text.replace("x", ",").split(",")]
    elif isinstance(text, list | tuple):
        parts = list(text)
    else:
        raise CardError(f"{where}: expected C,H,W, got {text!r}")
    try:
        shape = tuple(int(p) for p in parts)
        if any(isinstance(p, float) and p != int(p) for p in parts) or any(
            isinstance(p, bool) for p in parts
        ):
            raise ValueError
    except (TypeError, ValueError):
        raise CardError(f"{where}: expected C,H,W of positive integers, got {text!r}") from None
    if len(shape) not in (1, 3) or any(s <= 0 for s in shape):
        raise CardError(f"{where}: expected C,H,W (or N) of positive integers, got {text!r}")
    return shape


def _floats(value, where: str) -> tuple[float, ...]:
    items = (
        value.split(",") if isinstance(value, str) else value if isinstance(value, list | tuple) else [value]
    )
    try:
        out = tuple(float(v) for v in items if not isinstance(v, bool))
    except (TypeError, ValueError):
        raise CardError(f"{where}: expected numbers, got {value!r}") from None
    if not out or len(out) != len(items) or not all(math.isfinite(v) for v in out):
        raise CardError(f"{where}: expected finite numbers, got {value!r}")
    return out


def parse_normalize(text, where: str = "normalize") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """'MEAN[,MEAN..]/STD[,STD..]' -> (means, stds); every std must be above 0."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise CardError(f"{where}: expected MEAN[,MEAN..]/STD[,STD..], got {text!r}")
    mean_text, std_text = text.split("/")
    mean, std = _floats(mean_text, f"{where} (mean)"), _floats(std_text, f"{where} (std)")
    _check_std(std, where)
    return mean, std


def _check_std(std: tuple[float, ...], where: str) -> None:
    if any(s <= 0 for s in std):
        raise CardError(f"{where}: every std must be above 0, got {', '.join(f'{s:g}' for s in std)}")


def parse_classes(value, base: Path | None = None, where: str = "classes") -> tuple[str, ...]:
    """A list of names, 'a,b,c', or a file (one name a line; relative to `base`)."""
    if isinstance(value, list | tuple):
        names = [str(v).strip() for v in value]
    elif isinstance(value, str):
        path = Path(value) if base is None or Path(value).is_absolute() else base / value
        if "," not in value and path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CardError(f"{where}: cannot read {path}: {exc}") from None
            names = [line.strip() for line in text.splitlines() if line.strip()]
        elif "," in value:
            names = [s.strip() for s in value.split(",")]
        else:
            raise CardError(f"{where}: no file {path} (give a file, or names separated by commas)")
    else:
        raise CardError(f"{where}: expected names or a file, got {value!r}")
    if not names or any(not n for n in names):
        raise CardError(f"{where}: an empty class name in {value!r}")
    if len(names) > MAX_CLASSES:
        raise CardError(f"{where}: {len(names)} names; at most {MAX_CLASSES}")
    return tuple(names)


def parse_card(values: dict, where: str, base: Path | None = None) -> ModelCard:
    """Check a card's fields (a TOML table); `where` names it in errors, `base` resolves relative files."""
    if not isinstance(values, dict):
        raise CardError(f"{where}: a model card is a table of {', '.join(KEYS)}")
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise CardError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    kw: dict = {}
    if "input_shape" in values:
        kw["input_shape"] = parse_shape(values["input_shape"], f"{where}: input_shape")
    if "normalize" in values:
        if "mean" in values or "std" in values:
            raise CardError(f"{where}: give normalize, or mean and std, not both")
        kw["mean"], kw["std"] = parse_normalize(values["normalize"], f"{where}: normalize")
    elif "mean" in values or "std" in values:
        if "mean" not in values or "std" not in values:
            raise CardError(f"{where}: mean and std go together")
        kw["mean"] = _floats(values["mean"], f"{where}: mean")
        kw["std"] = _floats(values["std"], f"{where}: std")
        _check_std(kw["std"], f"{where}: std")
    if "classes" in values:
        kw["classes"] = parse_classes(values["classes"], base, f"{where}: classes")
    if "weights" in values:
        w = values["weights"]
        if not isinstance(w, str) or not w:
            raise CardError(f"{where}: weights: expected a file name, got {w!r}")
        path = Path(w) if base is None or Path(w).is_absolute() else base / w
        if not path.is_file():
            raise CardError(f"{where}: weights: no file {path}")
        kw["weights"] = str(path.resolve())
    return ModelCard(**kw)


def read_card(path: str | Path) -> ModelCard:
    """The card in TOML file `path` (its relative file names are relative to the card)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_CARD_BYTES:
            raise CardError(f"model card {path}: larger than {MAX_CARD_BYTES} bytes")
        values = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise CardError(f"cannot read model card {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CardError(f"model card {path} is not valid TOML: {exc}") from None
    return parse_card(values, f"model card {path}", path.parent)


PROGRAM_SUFFIXES = (".pt2", ".onnx")  # models read from a file alone (models/formats.py), named without :NAME


def is_program_file(model: str) -> bool:
    """`model` names a .pt2 / .onnx file, not FILE.py:NAME or a shipped name (the file may not exist)."""
    return Path(model).suffix.lower() in PROGRAM_SUFFIXES


def card_beside(model: str) -> Path | None:
    """FILE.toml next to FILE.py for a model named 'FILE.py:NAME', or next to FILE.pt2 / FILE.onnx for a
    model given as that file, if there is one."""
    if is_program_file(model):
        where = model
    else:
        where, sep, _ = model.rpartition(":")
        if not sep or not where.endswith(".py"):
            return None
    path = Path(where).with_suffix(".toml")
    return path if path.is_file() else None


def check_against(card: ModelCard, where: str = "model card") -> None:
    """Fields that must agree with each other: mean / std count against the input's channels."""
    if card.input_shape is None or card.mean is None:
        return
    c = card.input_shape[0] if len(card.input_shape) == 3 else 1
    for name, vals in (("mean", card.mean), ("std", card.std)):
        if vals is not None and len(vals) not in (1, c):
            raise CardError(
                f"{where}: {len(vals)} {name} values for an input of {c} channel{'s' * (c != 1)} "
                f"(give 1 or {c})"
            )
