"""Models the tracer must not crash on: an op it cannot draw (a pass-through block), and one with
data-dependent control flow (a clear error naming the line)."""

import torch
import torch.nn.functional as F
from torch import nn


class WithRoll(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        x = torch.roll(x, 1, dims=3)
        x = x * x
        return self.fc(x.flatten(1))


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.sum() > 0:
            x = -x
        return self.fc(x)


class NotAModule:
    pass


def not_a_module() -> int:
    return 3


LENGTH = 4
