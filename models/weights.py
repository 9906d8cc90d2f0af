"""Loading and saving model weights as safetensors, with checks that turn bad files into clear errors.

Never unpickles anything: a weights file is data, not code.  Every failure raises WeightsError with
a message that names the file, says what is wrong and how to get good weights back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from convscope.engine.files import atomic_write
from convscope.models import registry
from convscope.models.nets import build
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

MODELS_DIR = Path(__file__).resolve().parent


class WeightsError(Exception):
    """A weights file is missing, unreadable, or does not fit its model."""


def default_path(name: str) -> Path:
    return MODELS_DIR / registry.entry(name).weights


def card_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def _retrain_hint(name: str) -> str:
    return f"retrain with: python tools/train.py --model {name} --data-dir DATA_DIR"


def load_model(name: str, path: str | os.PathLike | None = None) -> nn.Module:
    """Build model `name` and load its weights from `path` (default: the shipped file), in eval mode."""
    model = build(name)
    path = Path(path) if path is not None else default_path(name)
    if not path.is_file():  # also a FIFO or a device, which safetensors would block on or read forever
        what = "is not a regular file" if path.exists() else "not found"
        raise WeightsError(f"weights file {path} {what}; {_retrain_hint(name)}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(
            f"weights file {path} is corrupt or not safetensors ({exc}); {_retrain_hint(name)}"
        ) from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise WeightsError(
            f"weights file {path} does not fit model {name!r}: missing {missing or 'nothing'}, "
            f"unexpected {extra or 'nothing'}; {_retrain_hint(name)}"
        )
    for key, ref in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(ref.shape):
            raise WeightsError(
                f"weights file {path} does not fit model {name!r}: {key} has shape {tuple(got.shape)}, "
                f"the model needs {tuple(ref.shape)}; {_retrain_hint(name)}"
            )
        if not torch.isfinite(got).all():
            raise WeightsError(f"weights file {path}: {key} holds NaN or inf values; {_retrain_hint(name)}")
    model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
    return model.eval()


def save_model(model: nn.Module, path: str | os.PathLike, card: dict | None = None) -> None:
    """Write weights (and the JSON model card beside them) atomically: a crash leaves the old files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, save(state))
    if card is not None:
        atomic_write(card_path(path), (json.dumps(card, indent=2) + "\n").encode())
