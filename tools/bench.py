"""convscope's benchmark: the figures the issues set targets for, measured on this machine.

    python tools/bench.py --json OUT.json [--quick]

Sections (`--only NAME...`; all by default):
  * input -> activations visible in the render process, p50 / p99 ms (shared-memory round trip
    with the LeNet forward pass; target p99 <= 2 ms);
  * frame time p50 / p99 of the whole explore scene (panels included) offscreen at 1280x720 for
    the LeNet, with a new drawing sent every frame (target >= 30 fps on llvmpipe, >= 60 on a GPU);
  * frame time of synthetic layouts of 100k, 1M and 10M nodes (scene renderer, fresh activations
    every frame; feature maps as quads, and node by node up to 1M for comparison);
  * torchvision's ResNet-18 at 3x224x224 (3.6M nodes) in the explore view's renderer, fitted and zoomed
    into one map, fresh activations every frame (target p50 <= 33 ms on llvmpipe), and its GPU bytes
    per node by layer kind (target <= 8);
  * time from launch to first frame and to first activations (target first frame <= 2 s);
  * the GL renderer string and the CPU;
  * hover cost per hover change (pick + edges + upload), the training scene's frame time and training
    throughput with the visualization on vs a bare torch loop, and t-SNE embedding times;
  * the explorer's frame time and drawing latency while 20,000 digits are embedded (`--data-dir` with
    MNIST; without it the 1,797 built-in digits);
  * layout time of traced networks (ResNet-18 at 224, LeNet; target trace + layout <= 2 s).
  * a user's model (bench_own_model.py): ResNet-18 trace + graph at 224, its one-thread forward pass
    against submit -> activations, and drawing -> activations p99 of a model under 100k nodes.
Targets live here and in docs/BENCHMARKS.md, never in timed tests.  The machines are noisy: each
figure is the median over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from convscope.engine.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]

# Mesa's llvmpipe and triton each bring an LLVM: once a llvmpipe context exists, importing triton
# (torch pulls it in for the training and embedding sections) crashes the process; load it first.
try:
    import triton  # noqa: F401
except ImportError:
    pass


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


def bench_latency(n: int, repeats: int) -> dict:
    from convscope.features.inference import WorkerHandle, measure_latency

    with WorkerHandle("lenet") as handle:
        if handle.spec is None:
            raise SystemExit(f"worker failed: {handle.error}")
        runs = [measure_latency(handle, n) * 1e3 for _ in range(repeats)]
    return {
        "requests": n * repeats,
        "p50_ms": statistics.median(float(np.percentile(r, 50)) for r in runs),
        "p99_ms": statistics.median(float(np.percentile(r, 99)) for r in runs),
    }


def bench_explore_scene(frames: int, size: tuple[int, int]) -> dict:
    """The real scene, panels and all, with a changing drawing every frame (what a user drawing sees)."""
    from convscope.engine.app import App
    from convscope.engine.config import AppConfig
    from convscope.engine.gpu.context import create_headless
    from convscope.scenes.explore.run import wait_until_ready
    from convscope.scenes.explore.scene import ExploreScene

    ctx = create_headless()
    scene = ExploreScene(AppConfig())
    app = App(scene, ctx=ctx, size=size)
    rng = np.random.default_rng(0)
    drawings = [(rng.random((28, 28)) > 0.8).astype(np.float32) for _ in range(8)]
    try:
        wait_until_ready(app, scene, 60)
        times, results = [], 0
        for i in range(frames + 5):
            scene.pad.set_image(drawings[i % len(drawings)])
            seq = scene.result_seq
            t0 = time.perf_counter()
            app.frame()
            ctx.finish()
            if i >= 5:
                times.append((time.perf_counter() - t0) * 1e3)
                results += scene.result_seq > seq
    finally:
        app.close()
        ctx.release()
    t = np.array(times)
    return {
        "size": f"{size[0]}x{size[1]}",
        "frames": len(t),
        "p50_ms": float(np.percentile(t, 50)),
        "p99_ms": float(np.percentile(t, 99)),
        "fps_p50": 1000.0 / float(np.percentile(t, 50)),
        "frames_with_new_result": results,
    }


def bench_startup(repeats: int) -> dict:
    """Launch `convscope --headless` and read when its first frame and first result appeared."""
    first_frame, first_acts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            log = Path(tmp) / f"startup{i}.log"
            env = {**os.environ, "CONVSCOPE_STARTUP_LOG": str(log)}
            t0 = time.time()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "convscope.scenes.cli",
                    "--headless",
                    "--frames",
                    "1",
                    "--screenshot",
                    str(Path(tmp) / "s.png"),
                ],
                env=env,
                check=True,
                capture_output=True,
                cwd=ROOT,
            )
            events = dict(line.split() for line in log.read_text().splitlines())
            first_frame.append(float(events["first_frame"]) - t0)
            first_acts.append(float(events["first_activations"]) - t0)
    return {
        "first_frame_s": statistics.median(first_frame),
        "first_activations_s": statistics.median(first_acts),
        "runs": repeats,
    }


SECTIONS = (
    "latency",
    "explore",
    "render",
    "resnet",
    "startup",
    "hover",
    "training",
    "embed",
    "explore_embed",
    "layout",
    "own_model",
)


def run_section(name: str, quick: bool, skip_big: bool, data_dir: str | None = None) -> dict | list:
    if name == "latency":
        r = bench_latency(300 if quick else 2000, 1 if quick else 3)
        print(f"  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms")
        return r
    if name == "explore":
        runs = [bench_explore_scene(40 if quick else 200, (1280, 720)) for _ in range(1 if quick else 3)]
        r = dict(runs[0])
        r["p50_ms"] = statistics.median(x["p50_ms"] for x in runs)
        r["p99_ms"] = statistics.median(x["p99_ms"] for x in runs)
        r["fps_p50"] = 1000.0 / r["p50_ms"]
        print(f"  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  ({r['fps_p50']:.1f} fps)")
        return r
    if name == "render":
        from bench_render import bench_suite, format_table

        common = dict(repeats=1 if quick else 3, frames=20 if quick else 60, max_seconds=5 if quick else 15)
        rows = bench_suite(
            sizes=("lenet",) if skip_big else ("lenet", 100_000, 1_000_000),
            modes=("auto",),
            maps=(True, False),
            **common,
        )
        if not skip_big:  # node by node, 10M nodes take seconds per frame: maps only
            rows += bench_suite(sizes=(10_000_000,), modes=("auto",), **common)
        print(format_table(rows))
        return rows
    if name == "resnet":
        from bench_resnet import bench_resnet, format_results

        r = bench_resnet(frames=20 if quick else 60, repeats=1 if quick else 3)
        print(format_results(r))
        return r
    if name == "startup":
        r = bench_startup(1 if quick else 5)
        print(f"  first frame {r['first_frame_s']:.2f} s, first activations {r['first_activations_s']:.2f} s")
        return r
    if name == "hover":
        from bench_hover import bench_gpu_pick, bench_hover, format_table

        r = bench_hover(per_layer=40 if quick else 200)
        gpu = bench_gpu_pick(picks=20 if quick else 60)
        print(format_table(r, gpu))
        return {"cpu_pick": r, "gpu_pick": gpu}
    if name == "training":
        from bench_training import bench_frame_times, bench_throughput, format_results

        frames = bench_frame_times(frames=60 if quick else 240)
        rows = bench_throughput(seconds=2.0 if quick else 3.0, rounds=1 if quick else 2)
        print(format_results(frames, rows))
        return {"frame_times": frames, "throughput": rows}
    if name == "embed":
        from bench_embed import bench_all, format_embed

        r = bench_all(quick=quick)
        print(format_embed(r))
        return r
    if name == "explore_embed":
        from bench_explore_embed import bench_explore_images, format_results

        r = bench_explore_images(data_dir, 2_000 if quick else 20_000)
        print(format_results(r))
        return r
    if name == "layout":
        from bench_layout import bench_layout, format_table

        rows = bench_layout(repeats=2 if quick else 5)
        print(format_table(rows))
        return rows
    if name == "own_model":
        from bench_own_model import run

        return run(quick)
    raise SystemExit(f"unknown section {name!r} (choose from {', '.join(SECTIONS)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="OUT.json", help="also write the results here")
    p.add_argument("--quick", action="store_true", help="fewer frames and repeats (a smoke run)")
    p.add_argument("--skip-big", action="store_true", help="leave out the 100k / 1M layouts")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    p.add_argument(
        "--data-dir",
        help="explore_embed: a torchvision MNIST root (DIR/MNIST/raw/); else the built-in digits",
    )
    args = p.parse_args()
    results: dict = {
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    from convscope.engine.gpu.context import create_headless, renderer_string

    ctx = create_headless()
    results["gl_renderer"] = renderer_string(ctx)
    ctx.release()
    for name in args.only:
        print(f"== {name}", flush=True)
        results[name] = run_section(name, args.quick, args.skip_big, args.data_dir)
        if args.json:  # keep what is done even if a later section fails
            atomic_write(args.json, (json.dumps(results, indent=2) + "\n").encode())  # whole or not at all
    print(f"GL: {results['gl_renderer']}\nCPU: {results['cpu']}")


if __name__ == "__main__":
    main()
