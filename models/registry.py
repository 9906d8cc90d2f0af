"""The networks convscope ships, by name: where each one's builder lives, its weights file and the name
the UI shows.  Importable without torch: the render process reads it for menus and config checks, and
only the worker process builds a model (`builder` is imported there, lazily).

Adding a network: a module with its nn.Module class, an entry here, and its weights beside this file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: str  # "module:Class" of the nn.Module, built with no arguments (imports torch)
    weights: str  # safetensors file in models/ (its model card: the same name, .json)
    display: str  # what menus show


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
