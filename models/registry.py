"""The networks convscope ships, by name: where each one's builder lives, its weights file, its model card
(input shape, normalisation, class names) and the name the UI shows.  Importable without torch: the render
process reads it for menus and config checks; the worker loads a shipped name exactly like a user's model
(models/loader.py with `builder` and the weights file, then models/trace.py), so there is one load path.

Adding a network: a module with its nn.Module class, an entry here, and its weights beside this file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from convscope.models.card import ModelCard

MODELS_DIR = Path(__file__).resolve().parent
# What the shipped networks were trained on: 28x28 MNIST digits in [0, 1], ink = 1, not normalised.
MNIST_CARD = ModelCard(
    input_shape=(1, 28, 28), mean=(0.0,), std=(1.0,), classes=tuple(str(i) for i in range(10))
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: str  # "module:Class" of the nn.Module, built with no arguments (imports torch)
    weights: str  # safetensors file in models/ (its model card: the same name, .json)
    display: str  # what menus show
    card: ModelCard = field(default=MNIST_CARD)  # input shape, normalisation, class names

    @property
    def weights_path(self) -> Path:
        return MODELS_DIR / self.weights


MODELS: dict[str, ModelEntry] = {
    "lenet": ModelEntry("lenet", "convscope.models.nets:LeNet", "lenet.safetensors", "LeNet (CNN)"),
    "mlp": ModelEntry("mlp", "convscope.models.nets:MLP", "mlp.safetensors", "MLP (784-300-100-10)"),
}


def names() -> tuple[str, ...]:
    """The networks' names, in menu order."""
    return tuple(MODELS)


def entry(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None


def builder(name: str):
    """The nn.Module class of `name` (imports its module, and so torch)."""
    module, _, attr = entry(name).builder.partition(":")
    return getattr(importlib.import_module(module), attr)


def is_shipped(model: str) -> bool:
    """True for a registry name, False for 'FILE.py:NAME' / 'package.module:NAME'."""
    return model in MODELS
