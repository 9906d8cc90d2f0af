"""The ReVACNN network (Chung et al. 2016) as a torch module whose architecture can change while it trains.

The paper's model: a 3x32x32 image -> three conv layers (5x5, stride 1, padding 2) with 16, 20 and 20
filters, each followed by ReLU and 2x2 max pooling -> one linear layer to 10 classes.  Here the list of
conv widths is data (`Arch.widths`): models/surgery.py adds and removes filters and whole conv layers on a
live instance, so nothing below caches a channel count or a spatial size — they are read off the modules.

Inputs are images in [0, 1], shape (B, C, H, W) with H = W = `Arch.size`.  They are not centred on purpose:
a non-negative input is what lets models/surgery.py insert a conv layer as an exact identity (ReLU(x) = x).

`describe()` lists every layer (input, conv, pool, ..., output) as LayerSpecs for a NetSpec;
`forward_all(x)` returns each of those layers' activations by name, in the same order; `forward(x)` returns
the logits only (for training).  Imported by the worker and the tools only, never by the render process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from convscope.engine.graph.spec import LayerSpec
from torch import nn

KERNEL = 5  # conv window, fixed by the paper's model
PADDING = 2  # keeps a 5x5 conv's output the size of its input
POOL = 2  # 2x2 max pooling, stride 2, after every conv layer
MAX_WIDTH = 256  # filters per layer; far above what the scene can draw, it only stops typos
MODEL_NAME = "revacnn"


@dataclass(frozen=True)
class Arch:
    """What a RevaCNN looks like; `to_dict()` is the JSON form stored in checkpoints."""

    in_channels: int = 3  # image channels: 3 for CIFAR-10 and the RGB digits, 1 for MNIST
    size: int = 32  # input height = width in pixels (the paper's 32x32)
    widths: tuple[int, ...] = (16, 20, 20)  # filters per conv layer, input side first (the paper's 16-20-20)
    classes: int = 10  # outputs of the linear head

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        for name in ("in_channels", "size", "classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"arch.{name} must be a positive integer, got {value!r}")
        if not self.widths:
            raise ValueError("arch.widths is empty: the network needs at least one conv layer")
        for i, w in enumerate(self.widths):
            if not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= MAX_WIDTH:
                raise ValueError(f"arch.widths[{i}] must be an integer in 1..{MAX_WIDTH}, got {w!r}")
        if self.final_size < 1:
            raise ValueError(
                f"arch: {len(self.widths)} conv layers pool a {self.size}x{self.size} input below 1x1; "
                f"at most {max_layers(self.size)} fit"
            )

    @property
    def final_size(self) -> int:
        """Side of the feature maps that reach the linear head (max pooling floors odd sizes)."""
        return self.size // POOL ** len(self.widths)

    @property
    def head_features(self) -> int:
        return self.widths[-1] * self.final_size**2

    def to_dict(self) -> dict:
        return {
            "model": MODEL_NAME,
            "in_channels": self.in_channels,
            "size": self.size,
            "widths": list(self.widths),
            "classes": self.classes,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Arch:
        """Inverse of `to_dict`; raises ValueError naming the bad or missing field."""
        if not isinstance(d, dict):
            raise ValueError(f"arch must be a JSON object, got {type(d).__name__}")
        if d.get("model", MODEL_NAME) != MODEL_NAME:
            raise ValueError(f"arch.model is {d.get('model')!r}, expected {MODEL_NAME!r}")
        missing = [k for k in ("in_channels", "size", "widths", "classes") if k not in d]
        if missing:
            raise ValueError(f"arch lacks {missing}")
        if not isinstance(d["widths"], list | tuple):
            raise ValueError(f"arch.widths must be a list of integers, got {d['widths']!r}")
        return cls(
            in_channels=d["in_channels"], size=d["size"], widths=tuple(d["widths"]), classes=d["classes"]
        )


def max_layers(size: int) -> int:
    """How many conv+pool stages a size x size input can take before the maps fall below 1x1."""
    n = 0
    while size // POOL ** (n + 1) >= 1:
        n += 1
    return n


def new_conv(cin: int, cout: int, generator: torch.Generator | None = None, device=None) -> nn.Conv2d:
    """A KERNELxKERNEL conv with torch's default init (U(+-1/sqrt(fan_in)) for weight and bias), drawn from
    `generator` so that a seed reproduces it without touching the global RNG."""
    conv = nn.Conv2d(cin, cout, KERNEL, padding=PADDING, device="meta").to_empty(device=device or "cpu")
    bound = 1.0 / math.sqrt(cin * KERNEL * KERNEL)
    with torch.no_grad():
        conv.weight.uniform_(-bound, bound, generator=generator)
        conv.bias.uniform_(-bound, bound, generator=generator)
    return conv


def new_linear(fin: int, fout: int, generator: torch.Generator | None = None, device=None) -> nn.Linear:
    """nn.Linear with torch's default init, drawn from `generator`."""
    lin = nn.Linear(fin, fout, device="meta").to_empty(device=device or "cpu")
    bound = 1.0 / math.sqrt(fin)
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound, generator=generator)
        lin.bias.uniform_(-bound, bound, generator=generator)
    return lin


class RevaCNN(nn.Module):
    """conv(5x5, pad 2) -> ReLU -> maxpool 2, once per entry of `widths`, then a linear head.

    Parameters live in `convs` (an nn.ModuleList, one Conv2d per layer) and `head` (nn.Linear); their
    state-dict names are `convs.<i>.weight`, `convs.<i>.bias`, `head.weight`, `head.bias`.
    """

    name = MODEL_NAME

    def __init__(
        self, arch: Arch | dict | None = None, generator: torch.Generator | None = None, device=None
    ) -> None:
        super().__init__()
        arch = Arch.from_dict(arch) if isinstance(arch, dict) else (arch or Arch())
        self.in_channels = arch.in_channels
        self.size = arch.size
        self.classes = arch.classes
        chans = (arch.in_channels, *arch.widths)
        self.convs = nn.ModuleList(
            new_conv(chans[i], chans[i + 1], generator, device) for i in range(len(arch.widths))
        )
        self.head = new_linear(arch.head_features, arch.classes, generator, device)

    # -- architecture, read off the live modules ------------------------------------------------------
    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(int(c.weight.shape[0]) for c in self.convs)

    @property
    def spec(self) -> Arch:
        return Arch(in_channels=self.in_channels, size=self.size, widths=self.widths, classes=self.classes)

    @property
    def arch(self) -> dict:
        """The JSON-able architecture; `RevaCNN(model.arch)` builds the same shapes."""
        return self.spec.to_dict()

    def describe(self) -> list[LayerSpec]:
        return describe_arch(self.spec)

    # -- forward ---------------------------------------------------------------------------------------
    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a: dict[str, torch.Tensor] = {"input": x}
        for i, conv in enumerate(self.convs, start=1):
            a[f"conv{i}"] = x = F.relu(conv(x))
            a[f"pool{i}"] = x = F.max_pool2d(x, POOL)
        a["output"] = self.head(x.flatten(1))  # logits; probabilities are their softmax
        return a

    def head_input(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened last pool map, (B, head.in_features): what the linear head reads."""
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), POOL)
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_input(x))


def describe_arch(arch: Arch) -> list[LayerSpec]:
    """The layers of a RevaCNN with `arch`, in forward_all order; needs no torch (only its module does)."""
    layers = [LayerSpec("input", "input", (arch.in_channels, arch.size, arch.size))]
    for i, w in enumerate(arch.widths):
        s = arch.size // POOL**i
        name = i + 1
        layers.append(
            LayerSpec(f"conv{name}", "conv", (w, s, s), activation="relu", kernel=KERNEL, padding=PADDING)
        )
        layers.append(LayerSpec(f"pool{name}", "pool", (w, s // POOL, s // POOL), kernel=POOL, stride=POOL))
    layers.append(LayerSpec("output", "output", (arch.classes,), activation="softmax"))
    return layers


def node_count(arch: Arch) -> int:
    """Nodes the scene draws for `arch` (input, every conv and pool map, output)."""
    n = arch.in_channels * arch.size**2 + arch.classes
    for i, w in enumerate(arch.widths):
        s = arch.size // POOL**i
        n += w * s * s + w * (s // POOL) ** 2
    return n


__all__ = [
    "Arch",
    "RevaCNN",
    "KERNEL",
    "PADDING",
    "POOL",
    "MAX_WIDTH",
    "describe_arch",
    "max_layers",
    "node_count",
]
