"""Measure the tracer: ResNet-18 at 224 (trace + graph time, nodes, edges, Dag size on the pipe,
activations against a plain forward pass), and which of torch.fx / torch.export gets through a set
of models and constructs users write.

  PYTHONPATH=... python tools/bench_trace.py [--skip-export] [--repeat 3]

One torch thread, like the worker.  Prints a small table; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from convscope.engine.graph.dag import Dag, total_edges
from convscope.models.loader import load_model
from convscope.models.trace import activations, trace
from torch import nn

NETS = Path(__file__).resolve().parents[1] / "tests" / "nets"


class ShapeBranch(nn.Module):
    """Control flow on a shape: fine once shapes are concrete, a dead end for symbolic tracing."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.shape[-1] > 16:
            x = F.max_pool2d(x, 2)
        return self.conv(x)


class SizeLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        out = 0
        for i in range(x.size(1)):
            out = out + x[:, i : i + 1]
        return self.conv(x) + out[:, :, 1:-1, 1:-1]


class DataBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.mean() > 0.5:
            x = -x
        return self.conv(x)


class ItemScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x / x.abs().max().item())


def _cases() -> list[tuple[str, callable, tuple[int, ...]]]:
    import torchvision

    return [
        ("shipped LeNet", lambda: load_model("convscope.models.nets:LeNet"), (1, 28, 28)),
        ("LeNet-5 (C3 mask)", lambda: load_model(f"{NETS / 'lenet5.py'}:LeNet5"), (1, 32, 32)),
        ("MNIST net", lambda: load_model(f"{NETS / 'mnist_net.py'}:Net"), (1, 28, 28)),
        ("small ResNet", lambda: load_model(f"{NETS / 'small_resnet.py'}:SmallResNet"), (3, 32, 32)),
        ("separable", lambda: load_model(f"{NETS / 'separable.py'}:Separable"), (3, 16, 16)),
        ("inception", lambda: load_model(f"{NETS / 'inception.py'}:Inception"), (3, 12, 12)),
        ("resnet18", lambda: torchvision.models.resnet18(num_classes=10), (3, 224, 224)),
        ("mobilenet_v3_small", lambda: torchvision.models.mobilenet_v3_small(num_classes=10), (3, 224, 224)),
        ("if on a shape", ShapeBranch, (3, 32, 32)),
        ("loop over x.size(1)", SizeLoop, (3, 32, 32)),
        ("if on a value", DataBranch, (3, 32, 32)),
        (".item() on a value", ItemScale, (3, 32, 32)),
    ]


def coverage(skip_export: bool) -> None:
    print(f"{'model':24s} {'fx':>10s} {'export':>10s}")
    for name, make, shape in _cases():
        torch.manual_seed(0)
        model = make().eval()
        x = torch.rand(1, *shape)
        t0 = time.perf_counter()
        try:
            torch.fx.symbolic_trace(model)
            fx_ok = f"ok {time.perf_counter() - t0:5.2f}s"
        except Exception as exc:  # noqa: BLE001 - recording what fails, not handling it
            fx_ok = "FAILS"
            why_fx = type(exc).__name__
        ex_ok = "-"
        if not skip_export:
            t0 = time.perf_counter()
            try:
                torch.export.export(model, (x,))
                ex_ok = f"ok {time.perf_counter() - t0:5.2f}s"
            except Exception as exc:  # noqa: BLE001
                ex_ok = "FAILS"
                why_ex = type(exc).__name__
        line = f"{name:24s} {fx_ok:>10s} {ex_ok:>10s}"
        if fx_ok == "FAILS":
            line += f"  fx: {why_fx}"
        if ex_ok == "FAILS":
            line += f"  export: {why_ex}"
        print(line, flush=True)


def resnet18(repeat: int) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        traced = trace(model, (3, 224, 224))
        times.append(time.perf_counter() - t0)
    dag = traced.dag
    t0 = time.perf_counter()
    text = json.dumps(dag.to_dict())
    back = Dag.from_dict(json.loads(text))
    pipe = time.perf_counter() - t0
    t0 = time.perf_counter()
    edges = total_edges(back)
    t_edges = time.perf_counter() - t0
    x = torch.rand(1, 3, 224, 224)
    fwd, act = [], []
    with torch.no_grad():
        for _ in range(repeat):
            t0 = time.perf_counter()
            model(x)
            fwd.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            activations(traced, x)
            act.append(time.perf_counter() - t0)
    print(f"resnet18 @ 3x224x224: {dag.total_nodes:,} nodes in {len(dag.layers)} layers, {edges:,} edges")
    runs = ", ".join(f"{t:.3f}" for t in times)
    print(f"  trace + graph       median {statistics.median(times):.3f} s  (runs: {runs})")
    kib = len(text) / 1024
    print(f"  Dag as JSON         {kib:.1f} KiB; to_dict, dumps, loads, from_dict: {pipe * 1000:.1f} ms")
    print(f"  total_edges         {t_edges * 1000:.1f} ms")
    print(f"  forward             median {statistics.median(fwd) * 1000:.1f} ms")
    print(f"  activations         median {statistics.median(act) * 1000:.1f} ms (every layer, flat buffer)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-export", action="store_true", help="only torch.fx in the coverage table")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    resnet18(args.repeat)
    coverage(args.skip_export)


if __name__ == "__main__":
    main()
