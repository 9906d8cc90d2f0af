"""Hover benchmark: the CPU cost of one hover change, and the GPU id-buffer pick it was chosen over.

A hover change is what the explore scene does when the pointer moves onto another node:
    pick (engine/graph/picking.py, CPU ray cast)  +  incoming edges of the node (engine/graph/edges.py)
    +  their values (weight, or weight x input)    +  EdgeBatch.set_edges (one buffer write)
timed per LeNet layer over nodes spread across the layer, at 1280x720 from the home view (camera
still, as while the pointer sweeps).  Times are CPU time of the calling thread (`time.thread_time`):
on a shared 2-core machine wall-clock p99s measure the scheduler (a 4 ms preemption now and
then); the wall-clock figure is kept as "hover_wall".  The edges' colour scale is cached per
result in the scene, so it is timed on its own ("scale"), like a pick right after the camera moved
("pick_new_camera").
Target: <= 1 ms per hover change for any LeNet node.

The alternative, a GPU id buffer, is timed as its two usual forms, with the real node pass
(NodeBatch.draw; an id pass writes ids instead of colours but does the same work):
    "full"   the node pass into a viewport-sized target, then glReadPixels of the one pixel
    "1x1"    the node pass into a 1x1 target through a pick matrix (every vertex still runs)
both ending in a read that waits for the GPU.  Functions for tools/bench.py; CLI here:

    python tools/bench_hover.py            # LeNet, 1280x720
    python tools/bench_hover.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from convscope.engine.camera import OrbitCamera  # noqa: E402
from convscope.engine.graph.dag import Dag  # noqa: E402
from convscope.engine.graph.edges import edge_scale, edge_values, incoming  # noqa: E402
from convscope.engine.graph.layout import build_layout  # noqa: E402
from convscope.engine.graph.picking import Picker  # noqa: E402
from convscope.engine.graph.spec import NetSpec  # noqa: E402


def lenet_spec() -> Dag:
    from convscope.models.nets import LeNet  # torch: fine in a tool, never in the render process

    return NetSpec.build("lenet", LeNet.describe()).to_dag()


def lenet_weights() -> dict:
    """The shipped LeNet weights as the worker sends them: {layer: {"weight", "bias"}} numpy."""
    from safetensors.numpy import load_file

    out: dict = {}
    for name, array in load_file(str(ROOT / "models" / "lenet.safetensors")).items():
        layer, key = name.split(".")
        out.setdefault(layer, {})[key] = array
    return out


def _cpu() -> float:
    """Seconds of CPU this thread has used: a hover change's cost without the time the (shared,
    busy) machine spent running something else in between, which wall-clock p99s mostly measure."""
    return time.thread_time()


def _pct(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def bench_hover(
    ctx=None, size: tuple[int, int] = (1280, 720), per_layer: int = 200, mode: str = "weight", seed: int = 0
) -> dict:
    """Per LeNet layer: p50 / p99 ms of a hover change (pick + edges + values + upload) and of its
    parts.  Makes its own headless context unless `ctx` is given."""
    from convscope.engine.gpu.context import create_headless
    from convscope.engine.gpu.edges import EdgeBatch

    own = ctx is None
    ctx = ctx or create_headless()
    spec = lenet_spec()
    layout = build_layout(spec)
    weights = lenet_weights()
    rng = np.random.default_rng(seed)
    acts = rng.random(spec.total_nodes, dtype=np.float32)
    w, h = size
    cam = OrbitCamera()
    cam.fit(*layout.bounds, w / h)
    picker = Picker(layout)
    batch = EdgeBatch(ctx)
    pts = cam.project(layout.positions, w, h)
    scales = {x.name: edge_scale(spec, x, weights, acts, mode, "layer") for x in spec.layers}
    rows = {}
    try:
        for layer in spec.layers:
            ids = np.arange(layer.start, layer.stop)
            ids = ids[np.isfinite(pts[ids]).all(axis=1)]
            nodes = rng.choice(ids, min(per_layer, len(ids)), replace=False)
            total, wall, pick_ms, edge_ms, upload_ms, scale_ms = [], [], [], [], [], []
            prev = -1
            for i, node in enumerate(np.concatenate([nodes[:10], nodes])):  # 10 warm-up changes
                x, y = pts[node]
                w0 = time.perf_counter()
                t0 = _cpu()
                got = picker.pick(cam, x, y, size, highlight=prev)
                t1 = _cpu()
                edges = incoming(spec, got)
                values = edge_values(edges, weights, acts, mode)
                t2 = _cpu()
                batch.set_edges(
                    layout.positions[edges.sources], values, layout.positions[got], scales[layer.name]
                )
                t3 = _cpu()
                w1 = time.perf_counter()
                edge_scale(spec, layer, weights, acts, mode, "layer")
                t4 = _cpu()
                was, prev = prev, got
                if i < 10:
                    continue
                if got not in (node, was):  # the previous node's outline ring may cover a neighbour
                    raise AssertionError(f"picked {got} at the centre of node {node}")
                total.append((t3 - t0) * 1e3)
                wall.append((w1 - w0) * 1e3)
                pick_ms.append((t1 - t0) * 1e3)
                edge_ms.append((t2 - t1) * 1e3)
                upload_ms.append((t3 - t2) * 1e3)
                scale_ms.append((t4 - t3) * 1e3)
            rows[layer.name] = {
                "edges": incoming(spec, int(nodes[0])).count,
                "hover": _pct(total),
                "hover_wall": _pct(wall),
                "pick": _pct(pick_ms),
                "edges_values": _pct(edge_ms),
                "upload": _pct(upload_ms),
                "scale": _pct(scale_ms),
            }
        # A pick right after the camera moved recomputes the camera-facing nodes' screen discs.
        fresh = []
        for _ in range(60):
            cam.orbit(1.0, 0.0)
            node = int(rng.integers(spec.total_nodes))
            x, y = cam.project(layout.positions[node], w, h)[0]
            t0 = _cpu()
            picker.pick(cam, x, y, size)
            fresh.append((_cpu() - t0) * 1e3)
        worst = max(rows.values(), key=lambda r: r["hover"]["p99_ms"])  # CPU time
        return {
            "size": f"{w}x{h}",
            "edge_mode": mode,
            "layers": rows,
            "pick_new_camera": _pct(fresh),
            "worst_layer_p99_ms": worst["hover"]["p99_ms"],
        }
    finally:
        batch.release()
        if own:
            ctx.release()


def bench_gpu_pick(ctx=None, size: tuple[int, int] = (1280, 720), picks: int = 60) -> dict:
    """p50 / p99 ms of the GPU alternative: the node pass drawn again (viewport-sized, or 1x1 through
    a pick matrix) and one pixel read back."""
    from convscope.engine.gpu.context import create_headless
    from convscope.engine.gpu.frame import OffscreenTarget
    from convscope.engine.gpu.nodes import NodeBatch

    own = ctx is None
    ctx = ctx or create_headless()
    spec = lenet_spec()
    layout = build_layout(spec)
    w, h = size
    cam = OrbitCamera()
    cam.fit(*layout.bounds, w / h)
    batch = NodeBatch(ctx, layout)
    batch.set_activations(np.random.default_rng(0).random(spec.total_nodes, dtype=np.float32))
    full = OffscreenTarget(ctx, w, h)
    one = OffscreenTarget(ctx, 1, 1)
    rng = np.random.default_rng(1)
    view, proj = cam.view_matrix(), cam.projection(w / h)
    out = {}
    try:
        for name in ("full", "1x1"):
            times = []
            for i in range(picks + 5):
                x, y = rng.uniform(0, w), rng.uniform(0, h)
                t0 = time.perf_counter()
                if name == "full":
                    full.use()
                    full.clear()
                    batch.draw(view, proj, (w, h), mode="auto")
                    full.fbo.read(viewport=(int(x), h - 1 - int(y), 1, 1), components=4)
                else:
                    # Pick matrix: scale and shift clip space so pixel (x, y) fills the 1x1 target.
                    ndc_x, ndc_y = 2.0 * (x / w) - 1.0, 1.0 - 2.0 * (y / h)
                    pick = np.eye(4)
                    pick[0, 0], pick[1, 1] = w, h
                    pick[0, 3], pick[1, 3] = -ndc_x * w, -ndc_y * h
                    one.use()
                    one.clear()
                    batch.draw(view, pick @ proj, (w, h), mode="quads")
                    one.fbo.read(components=4)
                if i >= 5:
                    times.append((time.perf_counter() - t0) * 1e3)
            out[name] = _pct(times)
    finally:
        full.release()
        one.release()
        batch.release()
        if own:
            ctx.release()
    return out


def format_table(result: dict, gpu: dict | None = None) -> str:
    lines = [f"hover change, LeNet {result['size']}, edges by {result['edge_mode']} (CPU ms, p50 / p99):"]
    keys = ("hover", "pick", "edges_values", "upload", "hover_wall")
    head = ("hover", "pick", "edges+values", "upload", "hover (wall)")
    lines.append(f"  {'layer':8} {'edges':>5}  " + "  ".join(f"{k:>15}" for k in head))
    for name, r in result["layers"].items():
        cells = [f"{r[k]['p50_ms']:6.3f} / {r[k]['p99_ms']:6.3f}" for k in keys]
        lines.append(f"  {name:8} {r['edges']:5d}  " + "  ".join(cells))
    f = result["pick_new_camera"]
    lines.append(f"  pick right after a camera move: {f['p50_ms']:.3f} / {f['p99_ms']:.3f}")
    if gpu:
        for name, r in gpu.items():
            lines.append(
                f"  GPU id-buffer pick ({name}; wall ms, it waits for the GPU): "
                f"{r['p50_ms']:.3f} / {r['p99_ms']:.3f}"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer nodes per layer")
    p.add_argument("--repeats", type=int, default=3, help="runs; the medians of their p50 / p99 are shown")
    args = p.parse_args()
    from convscope.engine.gpu.context import create_headless

    ctx = create_headless()
    n = 40 if args.quick else 200
    runs = [bench_hover(ctx, per_layer=n, seed=i) for i in range(1 if args.quick else args.repeats)]
    result = runs[0]
    for name in result["layers"]:
        for part in ("hover", "hover_wall", "pick", "edges_values", "upload", "scale"):
            for q in ("p50_ms", "p99_ms"):
                result["layers"][name][part][q] = statistics.median(r["layers"][name][part][q] for r in runs)
    gpu = bench_gpu_pick(ctx, picks=20 if args.quick else 60)
    print(format_table(result, gpu))
    ctx.release()


if __name__ == "__main__":
    main()
