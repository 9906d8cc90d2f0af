"""Benchmark of a user's model in the app (issue "your own network"): the figures its targets name.

  * trace + graph of torchvision's ResNet-18 at 3x224x224 (load_model + trace -> Dag), and the Dag's
    trip through the pipe (to_dict / from_dict); target <= 2 s (layout: see docs/BENCHMARKS.md);
  * ResNet-18's forward pass on one CPU thread (the floor) against submit() -> activations seen by
    poll() in the render process, through the worker and shared memory; target <= 1.5x the floor;
  * a model under 100k nodes (tests/nets/mnist_net.py, 68,634 nodes): submit -> poll p50 / p99 ms;
    target p99 <= 5 ms.

  PYTHONPATH=... python tools/bench_own_model.py [--quick] [--device cpu|cuda|auto]

Medians over repeats; one torch thread here and in the worker.  `bench.py --only own_model` runs it too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

NETS = Path(__file__).resolve().parents[1] / "tests" / "nets"
RESNET = "torchvision.models:resnet18"  # 1000 classes, random weights: timing only
SMALL = f"{NETS / 'mnist_net.py'}:Net"


def bench_trace(repeats: int) -> dict:
    import torch
    from convscope.engine.graph.dag import Dag
    from convscope.models.loader import load_model
    from convscope.models.trace import trace

    torch.set_num_threads(1)
    torch.manual_seed(0)
    times, trips = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        traced = trace(load_model(RESNET), (3, 224, 224))
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        Dag.from_dict(traced.dag.to_dict())
        trips.append(time.perf_counter() - t0)
    layout_s = None
    try:  # the automatic layout of a Dag, once it is merged (engine/graph/layout.py)
        from convscope.engine.graph.layout import build_layout

        t0 = time.perf_counter()
        build_layout(traced.dag)
        layout_s = time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - a NetSpec-only layout: reported as not measured
        layout_s = None
    return {
        "model": "resnet18 3x224x224",
        "nodes": traced.dag.total_nodes,
        "layers": len(traced.dag.layers),
        "trace_graph_s": statistics.median(times),
        "dag_pipe_s": statistics.median(trips),
        "layout_s": layout_s,
    }


def bench_floor_vs_app(repeats: int, device: str) -> dict:
    import torch
    import torchvision
    from convscope.features.inference import WorkerHandle

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x)  # warm-up
        floor = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            floor.append(time.perf_counter() - t0)
    card = {"input_shape": [3, 224, 224], "classes": [str(i) for i in range(1000)]}
    handle = WorkerHandle(RESNET, card=card, device=device, hang_timeout=None)
    try:
        if not handle.start(300):
            raise SystemExit(f"worker failed: {handle.error}")
        xs = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
        handle.infer_sync(xs[0], timeout=120)  # warm-up
        app, compute = [], []
        for i in range(repeats):
            r = handle.infer_sync(xs[(i + 1) % 2], timeout=120)
            app.append(r.latency_s)
            compute.append(r.compute_s)
        dev = handle.device
    finally:
        handle.close()
    f, a = statistics.median(floor), statistics.median(app)
    return {
        "nodes": 3_588_106 + 990,
        "device": dev,
        "floor_forward_ms": f * 1e3,
        "worker_compute_ms": statistics.median(compute) * 1e3,
        "submit_to_activations_ms": a * 1e3,
        "ratio": a / f,
    }


def bench_small(n: int, repeats: int, device: str) -> dict:
    import torch
    from convscope.features.inference import WorkerHandle, measure_latency
    from convscope.models.loader import load_model

    torch.set_num_threads(1)
    model, x = load_model(SMALL), torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x)
        floor = []
        for _ in range(50):
            t0 = time.perf_counter()
            model(x)
            floor.append(time.perf_counter() - t0)

    handle = WorkerHandle(SMALL, card={"input_shape": [1, 28, 28]}, device=device, hang_timeout=None)
    try:
        if not handle.start(120):
            raise SystemExit(f"worker failed: {handle.error}")
        nodes = handle.spec.total_nodes
        runs = [measure_latency(handle, n) * 1e3 for _ in range(repeats)]
    finally:
        handle.close()
    return {
        "model": "mnist_net 1x28x28",
        "nodes": nodes,
        "requests": n * repeats,
        "floor_forward_ms": statistics.median(floor) * 1e3,
        "p50_ms": statistics.median(float(np.percentile(r, 50)) for r in runs),
        "p99_ms": statistics.median(float(np.percentile(r, 99)) for r in runs),
    }


def run(quick: bool, device: str = "cpu") -> dict:
    out = {"trace": bench_trace(1 if quick else 3)}
    t = out["trace"]
    lay = "not measured" if t["layout_s"] is None else f"{t['layout_s']:.2f} s"
    what = f"{t['nodes']:,} nodes, {t['layers']} layers"
    print(f"  resnet18 trace + graph {t['trace_graph_s']:.2f} s ({what}), "
          f"Dag through the pipe {t['dag_pipe_s'] * 1e3:.1f} ms, layout {lay}")  # fmt: skip
    out["forward"] = bench_floor_vs_app(3 if quick else 7, device)
    f = out["forward"]
    print(f"  resnet18 forward, one thread {f['floor_forward_ms']:.1f} ms; submit -> activations "
          f"{f['submit_to_activations_ms']:.1f} ms on {f['device']} (x{f['ratio']:.2f}; "
          f"worker compute {f['worker_compute_ms']:.1f} ms)")  # fmt: skip
    out["small"] = bench_small(300 if quick else 1000, 1 if quick else 3, device)
    s = out["small"]
    print(f"  {s['model']} ({s['nodes']:,} nodes): p50 {s['p50_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms "
          f"(its forward pass alone {s['floor_forward_ms']:.2f} ms)")  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    args = p.parse_args()
    run(args.quick, args.device)


if __name__ == "__main__":
    main()
