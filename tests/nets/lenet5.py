"""LeNet-5 as LeCun et al. 1998 drew it: C3's fixed connection table between conv1 and conv2, the
scaled tanh 1.7159 tanh(2x/3) after every layer (the last included), average subsampling, and a
transpose of H and W before the flatten (so fc1's edges must land through an index map)."""

import torch
import torch.nn.functional as F
from torch import nn

# C3: which of S2's 6 maps feed each of C3's 16 maps (Table I of the paper).
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5),
)  # fmt: skip


def scaled_tanh(x: torch.Tensor) -> torch.Tensor:
    return 1.7159 * torch.tanh(2 * x / 3)


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        mask = torch.zeros(16, 6, 1, 1)
        for out, ins in enumerate(C3_TABLE):
            mask[out, list(ins)] = 1.0
        self.register_buffer("mask", mask)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(scaled_tanh(self.conv1(x)), 2)
        x = scaled_tanh(F.conv2d(x, self.conv2.weight * self.mask, self.conv2.bias))
        x = F.avg_pool2d(x, 2)
        x = torch.flatten(x.transpose(2, 3), 1)
        x = scaled_tanh(self.fc1(x))
        x = scaled_tanh(self.fc2(x))
        return scaled_tanh(self.fc3(x))

    def reference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's value, written out by hand (names as the tracer gives them)."""
        a = {"input": x}
        a["conv1"] = c1 = scaled_tanh(self.conv1(x))
        a["avg_pool2d"] = p1 = F.avg_pool2d(c1, 2)
        a["conv2d"] = c2 = scaled_tanh(F.conv2d(p1, self.conv2.weight * self.mask, self.conv2.bias))
        a["avg_pool2d_1"] = p2 = F.avg_pool2d(c2, 2)
        a["fc1"] = f1 = scaled_tanh(self.fc1(p2.transpose(2, 3).flatten(1)))
        a["fc2"] = f2 = scaled_tanh(self.fc2(f1))
        a["fc3"] = scaled_tanh(self.fc3(f2))
        return a
