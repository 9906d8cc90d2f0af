"""Render benchmark: frame time of a whole frame (background, nodes, labels) drawn offscreen.

Functions for tools/bench.py (and a small CLI here): each frame uploads a fresh activation
vector (so the per-result upload is counted), draws the home view and waits for the GPU with
ctx.finish(), so the time is real work, not queued commands.  On Mesa llvmpipe the "GPU" is the
CPU; run with nothing else busy, and repeat (`repeats`) to take medians.

    python tools/bench_render.py                  # LeNet, 100k, 1M x quads, points at 1280x720
    python tools/bench_render.py --sizes lenet --modes quads --frames 200
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.gpu.context import create_headless, renderer_string
from convscope.engine.gpu.frame import OffscreenTarget
from convscope.engine.gpu.nodes import NodeStyle
from convscope.engine.gpu.scene_renderer import RenderSettings, SceneRenderer
from convscope.engine.graph.layout import Layout, build_layout
from convscope.engine.graph.spec import NetSpec, synthetic_spec


def lenet_spec() -> NetSpec:
    """LeNet's NetSpec from models.nets (imports torch: fine in a tool, never in the renderer)."""
    from convscope.models.nets import LeNet

    return NetSpec.build("lenet", LeNet.describe())


def layout_for(size: str | int) -> Layout:
    """The layout of LeNet (size "lenet") or of a synthetic network of about `size` nodes."""
    spec = lenet_spec() if size == "lenet" else synthetic_spec(int(size))
    return build_layout(spec)


def bench_layout(
    ctx,
    layout: Layout,
    mode: str = "quads",
    size: tuple[int, int] = (1280, 720),
    frames: int = 60,
    max_seconds: float = 20.0,
    warmup: int = 3,
    flat: str = "grids",
    samples: int = 0,
    seed: int = 0,
    maps: bool = True,
) -> dict:
    """Frame times of `layout` drawn with node `mode` (feature maps as quads unless `maps` is False):
    stops after `frames` frames or `max_seconds`."""
    w, h = size
    target = OffscreenTarget(ctx, w, h, samples=samples)
    renderer = SceneRenderer(ctx, layout, nodes=NodeStyle(flat=flat, maps=maps))
    camera = OrbitCamera()
    camera.fit(*layout.bounds, w / h)
    settings = RenderSettings(node_mode=mode)
    rng = np.random.default_rng(seed)
    n = layout.spec.total_nodes
    fresh = [rng.random(n, dtype=np.float32) for _ in range(4)]
    times = []
    try:
        target.use()
        start = time.perf_counter()
        for i in range(warmup + frames):
            t0 = time.perf_counter()
            renderer.set_activations(fresh[i % len(fresh)])
            used = renderer.draw(camera, (w, h), settings)
            ctx.finish()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
                if time.perf_counter() - start > max_seconds and len(times) >= 5:
                    break
    finally:
        renderer.release()
        target.release()
    times_a = np.array(times)
    return {
        "model": layout.spec.model,
        "nodes": n,
        "mode": mode if mode != "auto" else "auto:" + ",".join(sorted(set(used) - {""})),
        "flat": flat,
        "maps": maps,
        "size": f"{w}x{h}",
        "samples": samples,
        "frames": len(times),
        "p50_ms": float(np.percentile(times_a, 50)),
        "p99_ms": float(np.percentile(times_a, 99)),
        "fps_p50": 1000.0 / float(np.percentile(times_a, 50)),
    }


def bench_suite(
    ctx=None,
    sizes: tuple = ("lenet", 100_000, 1_000_000),
    modes: tuple[str, ...] = ("quads", "points", "auto"),
    repeats: int = 3,
    frames: int = 60,
    max_seconds: float = 15.0,
    size: tuple[int, int] = (1280, 720),
    layouts: dict | None = None,
    maps: tuple[bool, ...] = (True,),
) -> list[dict]:
    """Each size x mode x maps (feature maps as quads, or node by node) `repeats` times (interleaved,
    so a burst of load elsewhere hits all alike); returns one dict per combination with the median
    p50 / p99 over the repeats."""
    own = ctx is None
    ctx = ctx or create_headless()
    layouts = dict(layouts or {})
    for s in sizes:
        if s not in layouts:
            layouts[s] = layout_for(s)
    runs: dict[tuple, list[dict]] = {}
    for _ in range(repeats):
        for s in sizes:
            for m in modes:
                for q in maps:
                    r = bench_layout(ctx, layouts[s], m, size, frames, max_seconds, maps=q)
                    runs.setdefault((s, m, q), []).append(r)
    out = []
    for rs in runs.values():
        r = dict(rs[0])
        r["p50_ms"] = statistics.median(x["p50_ms"] for x in rs)
        r["p99_ms"] = statistics.median(x["p99_ms"] for x in rs)
        r["fps_p50"] = 1000.0 / r["p50_ms"]
        r["frames"] = sum(x["frames"] for x in rs)
        r["repeats"] = len(rs)
        r["renderer"] = renderer_string(ctx)
        out.append(r)
    if own:
        ctx.release()
    return out


def format_table(rows: list[dict]) -> str:
    head = f"{'model':<18}{'nodes':>9}  {'mode':<22}{'p50 ms':>9}{'p99 ms':>9}{'fps':>8}{'frames':>8}"
    lines = [head]
    for r in rows:
        mode = r["mode"] + ("" if r.get("maps", True) else " (no maps)")
        lines.append(
            f"{r['model']:<18}{r['nodes']:>9}  {mode:<22}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['fps_p50']:>8.1f}{r['frames']:>8}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["lenet", "100000", "1000000"])
    ap.add_argument("--modes", nargs="+", default=["quads", "points", "auto"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--max-seconds", type=float, default=15.0)
    ap.add_argument("--compare-maps", action="store_true", help="also draw feature maps node by node")
    args = ap.parse_args()
    sizes = tuple(s if s == "lenet" else int(s) for s in args.sizes)
    # Layouts first: LeNet's spec comes from models.nets, and torch (with its own LLVM) is safer
    # imported before a llvmpipe context exists (see tests/conftest.py).
    layouts = {s: layout_for(s) for s in sizes}
    ctx = create_headless()
    print(renderer_string(ctx))
    rows = bench_suite(
        ctx,
        sizes,
        tuple(args.modes),
        args.repeats,
        args.frames,
        args.max_seconds,
        layouts=layouts,
        maps=(True, False) if args.compare_maps else (True,),
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
