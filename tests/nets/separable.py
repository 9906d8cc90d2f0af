"""A depthwise-separable block (MobileNet style): a depthwise 3x3 stride-2 conv with ReLU6, a
pointwise 1x1 conv with batch norm and ReLU, then a global mean over H and W into a classifier."""

import torch
import torch.nn.functional as F
from torch import nn


class Separable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.ReLU6()
        self.pointwise = nn.Conv2d(8, 16, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = self.act1(self.bn1(self.depthwise(x)))
        x = F.relu(self.bn2(self.pointwise(x)))
        return self.fc(x.mean((2, 3)))

    def reference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = {"input": x}
        a["stem"] = x = F.relu(self.stem(x))
        a["depthwise"] = x = self.act1(self.bn1(self.depthwise(x)))
        a["pointwise"] = x = F.relu(self.bn2(self.pointwise(x)))
        a["mean"] = m = x.mean((2, 3))
        a["fc"] = self.fc(m)
        return a
