"""An Inception-style block: four branches (1x1; 1x1 then 3x3; a dilated 3x3 next to a 1x3; 3x3 max
pool then 1x1) concatenated along the channels, then a 2x2 adaptive pool, a permute to
channels-last and a reshape before the classifier (fc's edges land through both)."""

import torch
import torch.nn.functional as F
from torch import nn


class Inception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b2_reduce = nn.Conv2d(8, 4, 1)
        self.b2 = nn.Conv2d(4, 6, 3, padding=1)
        self.b3_dilated = nn.Conv2d(8, 3, 3, padding=2, dilation=2)
        self.b3_wide = nn.Conv2d(8, 2, (1, 3), padding=(0, 1))
        self.b4_pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.b4 = nn.Conv2d(8, 2, 1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(17 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        y = torch.cat(
            [
                F.relu(self.b1(x)),
                F.relu(self.b2(F.relu(self.b2_reduce(x)))),
                torch.sigmoid(self.b3_dilated(x)),
                self.b3_wide(x),
                F.relu(self.b4(self.b4_pool(x))),
            ],
            dim=1,
        )
        y = self.pool(y).permute(0, 2, 3, 1)
        return self.fc(y.reshape(x.size(0), -1))

    def reference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = {"input": x}
        a["stem"] = x = F.relu(self.stem(x))
        a["b1"] = b1 = F.relu(self.b1(x))
        a["b2_reduce"] = r = F.relu(self.b2_reduce(x))
        a["b2"] = b2 = F.relu(self.b2(r))
        a["b3_dilated"] = b3 = torch.sigmoid(self.b3_dilated(x))
        a["b3_wide"] = b3w = self.b3_wide(x)
        a["b4_pool"] = p = self.b4_pool(x)
        a["b4"] = b4 = F.relu(self.b4(p))
        a["cat"] = y = torch.cat([b1, b2, b3, b3w, b4], 1)
        a["pool"] = y = self.pool(y)
        a["fc"] = self.fc(y.permute(0, 2, 3, 1).reshape(1, -1))
        return a
