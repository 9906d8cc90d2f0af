"""The worker's loaded model: one load path for every network, shipped or the user's, and its device.

`load_traced(request, progress)` resolves the name (a shipped one through models/registry.py to its
builder, weights file and card; 'FILE.py:NAME' / 'package.module:NAME' / a '.pt2' or '.onnx' file through
models/loader.py, with the card beside the file), merges the cards (the model's own < the request's),
traces the model at the card's input shape (for a .pt2 / .onnx without one: the shape the file was
exported for) and moves it to the device.  Every failure is a LoadFailed with one
line.  `LoadedModel.run(x, out)` is one forward pass whose activations land in `out` (a shared-memory
view) in Dag node order; `forward_all` lets the embedding view's vector code (features/embedding/
vectors.py) use a traced model like the hand-written ones.  Worker side only: imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from convscope.features.inference.messages import DEVICES, InputSpec
from torch import nn


class LoadFailed(Exception):
    """The model cannot be loaded, traced or placed; the message is one line for the user."""


def pick_device(name: str) -> torch.device:
    """'auto': CUDA if torch finds it, else MPS, else the CPU.  A device named but absent is an error."""
    if name not in DEVICES:
        raise LoadFailed(f"device {name!r}: expected one of {', '.join(DEVICES)}")
    has_cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if name == "auto":
        return torch.device("cuda" if has_cuda else "mps" if has_mps else "cpu")
    if name == "cuda" and not has_cuda:
        raise LoadFailed("device cuda: torch finds no CUDA device here (try --device auto or cpu)")
    if name == "mps" and not has_mps:
        raise LoadFailed("device mps: torch finds no Apple MPS device here (try --device auto or cpu)")
    return torch.device(name)


@dataclass
class LoadedModel:
    """A traced model on its device, and what the render side is told about it."""

    name: str
    traced: object  # models.trace.Traced
    input_spec: InputSpec
    device: torch.device
    mean: torch.Tensor  # (C, 1, 1) or (1,), on the device: raw [0, 1] images -> model input
    std: torch.Tensor

    @property
    def dag(self):
        return self.traced.dag

    @property
    def n_classes(self) -> int:
        return len(self.input_spec.classes)

    def run(self, x: torch.Tensor, out: np.ndarray | None = None):
        """One forward pass of one model input (C, H, W) on the CPU; activations into `out` (one
        device-to-host copy from a GPU).  Returns models.trace.Activations."""
        from convscope.models.trace import activations

        return activations(self.traced, x.to(self.device), out=out)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities of a batch of model inputs (N, *shape), exactly as `run` computes them."""
        return torch.stack([torch.as_tensor(self.run(x).probabilities) for x in batch])

    # -- what features/embedding/vectors.py asks of a network ------------------------------------------

    def describe(self) -> list:
        """The conv layers that are nn.Conv2d modules (the filters vectors.py can take gradients of)."""
        mods = dict(self.traced.module.named_modules())
        return [x for x in self.dag.layers if x.kind == "conv" and isinstance(mods.get(x.name), nn.Conv2d)]

    def modules(self):
        mods = dict(self.traced.module.named_modules())
        return iter([mods[x.name] for x in self.describe()])

    def parameters(self):
        return self.traced.module.parameters()

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's value by name (batch first) and 'output': the model's output.  `x` is a batch
        of model inputs; images_adapter() takes raw [0, 1] images instead."""
        result, taps = self.traced.module(x.to(self.device))
        acts = {layer.name: t for layer, t in zip(self.dag.layers, taps, strict=True)}
        if not isinstance(result, torch.Tensor):
            found: list[torch.Tensor] = []
            torch.utils._pytree.tree_map(
                lambda v: found.append(v) if isinstance(v, torch.Tensor) else None, result
            )
            result = found[0]
        acts["output"] = result.reshape(result.shape[0], -1)
        return acts

    def images_adapter(self) -> _RawImages:
        return _RawImages(self)


class _RawImages(nn.Module):
    """The model as ImageVectors sees it: raw [0, 1] images in, normalised with the card, layers out."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.loaded = loaded
        self.inner = loaded.traced.module  # registered, so parameters() and deepcopy see it

    def describe(self) -> list:
        return self.loaded.describe()

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x.to(self.loaded.device) - self.loaded.mean) / self.loaded.std
        return self.loaded.forward_all(x)


def _resolve(model: str, weights: str | None, card_dict: dict):
    """(builder spec, weights file, merged card) of a shipped name or a user's model."""
    from convscope.models import card as C
    from convscope.models import registry

    request = C.ModelCard.from_dict(card_dict)
    if registry.is_shipped(model):
        entry = registry.entry(model)
        own = C.merge(entry.card, C.ModelCard(weights=str(entry.weights_path)))
        return entry.builder, weights, C.merge(own, request)
    beside = C.card_beside(model)
    own = C.read_card(beside) if beside is not None else None
    return model, weights, C.merge(own, request)


def load_traced(model: str, weights: str | None, card_dict: dict, device: str,
                progress: Callable[[str], None]) -> LoadedModel:  # fmt: skip
    """Load, check and trace `model`; see the module docstring.  Raises LoadFailed (one line)."""
    from convscope.models import card as C
    from convscope.models.loader import LoadError, load_model
    from convscope.models.trace import TraceError, trace

    try:
        builder, weights, card = _resolve(model, weights, card_dict)
        C.check_against(card, f"model {model}")
    except (C.CardError, ValueError) as exc:
        raise LoadFailed(str(exc)) from None
    program = C.is_program_file(model)
    if card.input_shape is None and not program:
        raise LoadFailed(f"model {model}: no input shape (give --input-shape C,H,W or a model card)")
    dev = pick_device(device)
    progress("reading..." if program else "importing...")
    try:
        net = load_model(builder, weights if weights is not None else card.weights)
    except LoadError as exc:
        raise LoadFailed(str(exc)) from None
    if card.input_shape is None:  # a .pt2 / .onnx file knows the input it was exported for
        from convscope.models.formats import program_input_shape

        shape = program_input_shape(net)
        if shape is None:
            raise LoadFailed(f"model {model}: the file names no input shape (give --input-shape C,H,W)")
        card = replace(card, input_shape=shape)
        try:
            C.check_against(card, f"model {model}")
        except C.CardError as exc:
            raise LoadFailed(str(exc)) from None
    progress("tracing...")
    try:
        traced = trace(net, card.input_shape, name=model)
    except TraceError as exc:
        raise LoadFailed(f"model {model}: {exc}") from None
    dag = traced.dag
    n_out = dag.layer(dag.output).count
    classes = card.classes if card.classes is not None else tuple(str(i) for i in range(n_out))
    if len(classes) != n_out:
        raise LoadFailed(f"model {model}: {len(classes)} class names for {n_out} outputs ({dag.output})")
    spec = InputSpec(card.input_shape, card.mean or (0.0,), card.std or (1.0,), classes).to_plain()
    traced.dag = replace(dag, classes=spec.classes)  # the render side names its guesses from the Dag too
    progress(f"moving to {dev.type}..." if dev.type != "cpu" else "warming up...")
    traced.module.to(dev)
    grid = len(spec.shape) == 3
    shape = (-1, 1, 1) if grid else (-1,)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=dev).reshape(shape)
    std = torch.tensor(spec.std, dtype=torch.float32, device=dev).reshape(shape)
    return LoadedModel(model, traced, spec, dev, mean, std)
