"""The classic two-conv MNIST network of the PyTorch examples: dropout (identity in eval) and a
log_softmax output, so the probabilities are the exponential of the output."""

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)

    def reference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = {"input": x}
        a["conv1"] = c1 = F.relu(self.conv1(x))
        a["conv2"] = c2 = F.relu(self.conv2(c1))
        a["max_pool2d"] = p = F.max_pool2d(c2, 2)
        a["fc1"] = f1 = F.relu(self.fc1(p.flatten(1)))
        a["fc2"] = F.log_softmax(self.fc2(f1), dim=1)
        return a


def build() -> nn.Module:
    """A function that returns the module (the loader accepts these too)."""
    return Net()
