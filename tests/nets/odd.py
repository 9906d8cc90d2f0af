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


class Shared(nn.Module):
    """conv's value before the activation is read twice (relu and a skip), so the relu cannot be
    folded into conv: it gets an elementwise layer of its own.  Returns a dict, like some libraries."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm1d(12)
        self.fc = nn.Linear(3 * 4 * 4, 12)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.conv(x)
        z = y + F.relu(y)
        return {"logits": torch.sigmoid(self.bn(self.fc(z.flatten(1)))), "features": z}


class Pieces(nn.Module):
    """Channel split (chunk) and a ShuffleNet channel shuffle (view, transpose, view), a strided
    slice and an int index: all index maps, no layers of their own."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.left = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(8 * 3 * 3 + 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        a, b = x.chunk(2, dim=1)
        y = torch.cat([self.left(a), b], dim=1)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        corner = y[:, :, ::2, 1::2]
        first = y[:, 0]
        return self.fc(torch.cat([corner.flatten(1), first.flatten(1)], dim=1))


class ShapeBranch(nn.Module):
    """A branch on the input's shape: torch.fx cannot trace it symbolically, torch.export can (it
    sees this input's concrete size)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 16:
            x = F.max_pool2d(x, 2)
        x = F.relu(self.bn(self.conv(x)))
        x = x[:, :, ::2, ::2]
        return self.fc(x.flatten(1))


class Pools(nn.Module):
    """Pooling at the borders: average with padding counted and not counted, ceil mode, a dilated max."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.avg_in = nn.AvgPool2d(3, 2, 1)
        self.avg_out = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)
        self.max = nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        crop = (slice(None), slice(None), slice(0, 5), slice(0, 5))
        return torch.cat([self.avg_in(x), self.avg_out(x)[crop], self.max(F.pad(x, (1, 0, 2, 1)))[crop]], 1)


class Normalized(nn.Module):
    """Input normalisation inside the model ((x - mean) / std with per-channel buffers: an
    elementwise layer over the input, which stays the tensor handed in) and a per-channel layer
    scale after a conv (folded into the conv's chain)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 4, 3)
        self.gamma = nn.Parameter(torch.linspace(0.5, 2.0, 4).reshape(4, 1, 1))
        self.fc = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = F.relu(self.conv(x) * self.gamma) + 0.5
        return self.fc(x.flatten(1))
