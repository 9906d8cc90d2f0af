"""ResNet-18 at 224 in the explorer's renderer: frame time fitted and zoomed into one map, GPU memory.

torchvision's resnet18(num_classes=10) is traced at 3x224x224 (models/trace.py: about 3.6 million nodes,
every conv, pool and residual add a layer), laid out by engine/graph/layout.py's `build_layout` (whatever
layout the tree has), and drawn by the explore view's SceneRenderer offscreen (background, nodes,
labels).  Every frame hands the renderer the activations of a different input (four real forward passes,
computed once beforehand), so the upload and the colour ranges are counted; the frame waits for the
GPU with ctx.finish().  Two cameras: the home view fitted to the whole network, and one 112x112 map of
conv1 filling the view.  Each case runs with far maps drawn opaque near to far (`NodeStyle.occlude`,
the default) and with every map blended far to near, interleaved.

    python tools/bench_resnet.py [--frames 60] [--repeats 3]      (also `tools/bench.py --only resnet`)

Imports torch and torchvision (a tool, never the render process); torch comes in before any llvmpipe
context exists (see tools/bench.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

TARGET_MS = 33.0  # p50 on llvmpipe, issue "millions of nodes"
INPUTS = 4  # distinct activation vectors cycled through, one per frame


def resnet18_case(seed: int = 0):
    """(Dag, [activations]) of resnet18(num_classes=10) at 3x224x224, seeded weights and inputs."""
    import torch
    import torchvision
    from convscope.models.trace import activations, trace

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10).eval()
    traced = trace(model, (3, 224, 224))
    rng = np.random.default_rng(seed)
    # Smooth random images (a blurred noise field), so the maps show structure as real photos do.
    acts = []
    for _ in range(INPUTS):
        x = torch.as_tensor(rng.standard_normal((1, 3, 56, 56), dtype=np.float32))
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        acts.append(activations(traced, x[0]).flat.copy())
    return traced.dag, acts


def zoom_camera(layout, layer: str, aspect: float):
    """The home camera, fitted to map 0 of `layer` instead of the whole network."""
    from convscope.engine.camera import OrbitCamera

    spec = layout.spec
    found = spec.layer(layer)
    per_map = found.count // found.shape[0]
    pos = layout.positions[found.start : found.start + per_map]
    half = float(layout.sizes[found.start]) / 2
    cam = OrbitCamera()
    cam.fit(pos.min(axis=0) - half, pos.max(axis=0) + half, aspect)
    return cam


def bench_view(ctx, layout, acts, camera, occlude: bool, size=(1280, 720), frames=60, warmup=3) -> dict:
    """Frame times of one camera: new activations + colour ranges + the whole frame, per frame."""
    from convscope.engine.gpu.frame import OffscreenTarget
    from convscope.engine.gpu.nodes import NodeStyle
    from convscope.engine.gpu.scene_renderer import RenderSettings, SceneRenderer

    w, h = size
    target = OffscreenTarget(ctx, w, h)
    renderer = SceneRenderer(ctx, layout, nodes=NodeStyle(occlude=occlude))
    settings = RenderSettings()
    total, upload, draw, cpu = [], [], [], []
    try:
        target.use()
        for i in range(warmup + frames):
            c0, t0 = time.process_time(), time.perf_counter()
            renderer.set_activations(acts[i % len(acts)])  # upload of the changed layers + colour ranges
            t1 = time.perf_counter()
            renderer.draw(camera, (w, h), settings)
            ctx.finish()
            t2, c2 = time.perf_counter(), time.process_time()
            if i >= warmup:
                total.append((t2 - t0) * 1e3)
                upload.append((t1 - t0) * 1e3)
                draw.append((t2 - t1) * 1e3)
                cpu.append((c2 - c0) * 1e3)
        opaque = renderer.nodes.last_opaque
        frame = target.read()
    finally:
        renderer.release()
        target.release()
    return {
        "p50_ms": float(np.percentile(total, 50)),
        "p99_ms": float(np.percentile(total, 99)),
        "upload_ranges_p50_ms": float(np.percentile(upload, 50)),
        "draw_p50_ms": float(np.percentile(draw, 50)),
        # CPU time of the whole process (llvmpipe's threads included): what the frame costs, whatever
        # else the machine runs; on an idle machine with 2 llvmpipe threads the wall time is below it.
        "cpu_p50_ms": float(np.percentile(cpu, 50)),
        "frames": len(total),
        "opaque_layers": int(opaque),
        "frame": frame,
    }


def memory_figures(ctx, layout) -> dict:
    """GPU bytes per node: whole batch (textures as allocated, rows padded) and per layer kind."""
    from convscope.engine.gpu.nodes import NodeBatch

    batch = NodeBatch(ctx, layout)
    try:
        spec = layout.spec
        textures = batch.gpu_bytes()
        per_layer = batch.layer_bytes()
        kinds: dict[str, dict] = {}
        for i, layer in enumerate(spec.layers):
            k = kinds.setdefault(layer.kind, {"layers": 0, "nodes": 0, "maps": 0, "bytes": 0})
            k["layers"] += 1
            k["nodes"] += layer.count
            k["maps"] += batch.grids[i].maps if i in batch.grids else 0
            k["bytes"] += int(per_layer[i])
        for k in kinds.values():
            k["bytes_per_node"] = k["bytes"] / k["nodes"]
        return {
            "nodes": spec.total_nodes,
            "textures": textures,
            "bytes_per_node": sum(textures.values()) / spec.total_nodes,
            "by_kind": kinds,
            "per_node_layers": len(spec.layers) - len(batch.grids),
        }
    finally:
        batch.release()


def bench_resnet(
    frames: int = 60, repeats: int = 3, size=(1280, 720), case=None, ctx=None, png_dir: str | None = None
) -> dict:
    """Fitted and zoomed views, occluding and all-blended, `repeats` times interleaved; medians.  With
    `png_dir`, the last frame of each view is written there (look at them)."""
    from convscope.engine.gpu.context import create_headless, renderer_string
    from convscope.engine.graph.layout import build_layout

    t0 = time.perf_counter()
    dag, acts = case or resnet18_case()
    t_trace = time.perf_counter() - t0 if case is None else float("nan")  # (traced by the caller)
    t0 = time.perf_counter()
    layout = build_layout(dag)
    t_layout = time.perf_counter() - t0
    own = ctx is None
    ctx = ctx or create_headless()
    from convscope.engine.camera import OrbitCamera

    fitted = OrbitCamera()
    fitted.fit(*layout.bounds, size[0] / size[1])
    cameras = {"fitted": fitted, "zoomed into conv1 map 0": zoom_camera(layout, "conv1", size[0] / size[1])}
    runs: dict[tuple, list[dict]] = {}
    frames_seen: dict[str, list[np.ndarray]] = {}
    for _ in range(repeats):
        for name, cam in cameras.items():
            for occlude in (True, False):
                r = bench_view(ctx, layout, acts, cam, occlude, size, frames)
                frames_seen.setdefault(name, []).append(r.pop("frame"))
                runs.setdefault((name, occlude), []).append(r)
    rows = []
    for (name, occlude), rs in runs.items():
        row = {"view": name, "maps": "opaque near to far" if occlude else "all blended", "repeats": len(rs)}
        for key in ("p50_ms", "p99_ms", "upload_ranges_p50_ms", "draw_p50_ms", "cpu_p50_ms"):
            row[key] = statistics.median(x[key] for x in rs)
        row["frames"] = sum(x["frames"] for x in rs)
        row["opaque_layers"] = rs[0]["opaque_layers"]
        rows.append(row)
    # Both ways of drawing give the same picture (the last frames of one view hold the same input).
    same = {name: int(np.abs(f[0].astype(int) - f[1].astype(int)).max()) for name, f in frames_seen.items()}
    if png_dir:
        from PIL import Image

        Path(png_dir).mkdir(parents=True, exist_ok=True)
        for name, f in frames_seen.items():
            Image.fromarray(f[0]).save(Path(png_dir) / f"resnet18_{name.split()[0]}.png")
    out = {
        "model": "torchvision resnet18(num_classes=10), 3x224x224",
        "nodes": dag.total_nodes,
        "layers": len(dag.layers),
        "size": f"{size[0]}x{size[1]}",
        "trace_s": t_trace,
        "layout_s": t_layout,
        "renderer": renderer_string(ctx),
        "load_average": os.getloadavg(),  # the machine is shared: frame times scale with its load
        "target_p50_ms": TARGET_MS,
        "rows": rows,
        "max_pixel_difference_opaque_vs_blended": same,
        "memory": memory_figures(ctx, layout),
    }
    if own:
        ctx.release()
    return out


def format_results(r: dict) -> str:
    lines = [
        f"{r['model']}: {r['nodes']:,} nodes in {r['layers']} layers, {r['size']}, {r['renderer']}",
        f"trace + 4 forward passes {r['trace_s']:.1f} s, layout {r['layout_s']:.2f} s,"
        f" load average {r['load_average'][0]:.1f}",
        f"{'view':<26}{'maps':<20}{'p50 ms':>8}{'p99 ms':>8}{'upload+ranges':>15}{'draw':>8}{'cpu ms':>8}"
        f"{'opaque':>8}",
    ]
    for x in r["rows"]:
        lines.append(
            f"{x['view']:<26}{x['maps']:<20}{x['p50_ms']:>8.1f}{x['p99_ms']:>8.1f}"
            f"{x['upload_ranges_p50_ms']:>15.1f}{x['draw_p50_ms']:>8.1f}{x['cpu_p50_ms']:>8.1f}{x['opaque_layers']:>8}"
        )
    lines.append(f"max pixel difference opaque vs blended: {r['max_pixel_difference_opaque_vs_blended']}")
    m = r["memory"]
    lines.append(f"GPU memory {m['bytes_per_node']:.3f} B/node ({m['textures']})")
    for kind, k in m["by_kind"].items():
        lines.append(
            f"  {kind:<8}{k['layers']:>3} layers {k['nodes']:>10,} nodes {k['maps']:>6} maps"
            f"  {k['bytes_per_node']:.3f} B/node"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--png-dir", help="write the last frame of each view here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    case = resnet18_case()  # torch before the llvmpipe context
    traced = time.perf_counter() - t0
    r = bench_resnet(args.frames, args.repeats, case=case, png_dir=args.png_dir)
    r["trace_s"] = traced
    print(format_results(r))


if __name__ == "__main__":
    main()
