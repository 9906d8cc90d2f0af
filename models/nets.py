"""The two networks of Harley 2015 as torch modules: the LeNet-style CNN and the MLP.

Both take a batch of 28x28 MNIST-style images in [0, 1] (ink = 1), shape (B, 1, 28, 28).
`forward_all` returns every layer's activation by the layer names of `describe()`, which is what
the worker turns into a NetSpec; `forward` returns the logits only (for training).
Imported by the worker and the tools only — never by the render process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from convscope.engine.graph.spec import LayerSpec
from convscope.models import registry
from convscope.models.specs import LENET_LAYERS, MLP_LAYERS
from torch import nn


class LeNet(nn.Module):
    """32x32 input (28x28 padded by 2) -> conv 6@5x5 -> pool 2 -> conv 16@5x5 -> pool 2 -> 120 -> 100 -> 10"""

    name = "lenet"

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        # Pools as modules, not F.max_pool2d: the traced graph names layers by module path, so they
        # read pool1 / pool2 as in the paper (they hold no weights: the state dict is unchanged).
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 100)
        self.output = nn.Linear(100, 10)

    @staticmethod
    def describe() -> list[LayerSpec]:
        return list(LENET_LAYERS)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a: dict[str, torch.Tensor] = {}
        a["input"] = x = F.pad(x, (2, 2, 2, 2))
        a["conv1"] = x = F.relu(self.conv1(x))
        a["pool1"] = x = self.pool1(x)
        a["conv2"] = x = F.relu(self.conv2(x))
        a["pool2"] = x = self.pool2(x)
        a["fc1"] = x = F.relu(self.fc1(x.flatten(1)))
        a["fc2"] = x = F.relu(self.fc2(x))
        a["output"] = self.output(x)  # logits; probabilities are their softmax
        return a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2))
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.output(x)


class MLP(nn.Module):
    """784 -> 300 -> 100 -> 10, ReLU between."""

    name = "mlp"

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.output = nn.Linear(100, 10)

    @staticmethod
    def describe() -> list[LayerSpec]:
        return list(MLP_LAYERS)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a: dict[str, torch.Tensor] = {}
        a["input"] = x
        a["fc1"] = x = F.relu(self.fc1(x.flatten(1)))
        a["fc2"] = x = F.relu(self.fc2(x))
        a["output"] = self.output(x)
        return a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.output(x)


MODELS: dict[str, type[nn.Module]] = {"lenet": LeNet, "mlp": MLP}  # registry.py names them for the UI


def build(name: str) -> nn.Module:
    """A fresh model `name` of the registry (models/registry.py)."""
    return registry.builder(name)()
