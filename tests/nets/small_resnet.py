"""A small ResNet: batch norm after every conv, residual adds, and stride-2 1x1 shortcuts (conv +
batch norm) where the block changes shape.  Input 3x32x32."""

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.block1 = Block(16, 16, 1)
        self.block2 = Block(16, 32, 2)
        self.block3 = Block(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))

    def reference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = {"input": x}
        a["conv"] = x = F.relu(self.bn(self.conv(x)))
        for name in ("block1", "block2", "block3"):
            b = getattr(self, name)
            a[f"{name}.conv1"] = h = F.relu(b.bn1(b.conv1(x)))
            a[f"{name}.conv2"] = h = b.bn2(b.conv2(h))
            if len(b.shortcut):
                a[f"{name}.shortcut.0"] = s = b.shortcut(x)
            else:
                s = x
            a[f"{name}.add"] = x = F.relu(h + s)
        a["pool"] = p = self.pool(x)
        a["fc"] = self.fc(p.flatten(1))
        return a


def randomize_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters away from 0 / 1, so folding them is really tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return model
