"""The explorer's Embedding window under load: 20,000 MNIST digits embedded
by one layer while the whole scene keeps drawing and answering drawings.

    python tools/bench_explore_embed.py [--data-dir DIR] [--images 20000] [--layer fc2] [--json OUT.json]

`bench_explore_images(data_dir, n, layer, size)` runs the ExploreScene offscreen (LeNet, every panel, the
Embedding window opened in images mode after the idle frames) paced at 60 Hz, with a new drawing submitted
every 6th frame, and measures, per phase (idle before the job; the worker computing activations; the
t-SNE process placing the points; idle again once the layout is final):
  frame time p50 / p99 (each frame timed up to glFinish: a headless frame has no swap to wait for),
  drawing -> activations on screen (submit to the result read by the scene), p50 / p99,
  and overall: seconds to the vectors, to the first partial layout, to the final one; the worker's slowest
  images batch (what a drawing can wait behind).
With no MNIST in `data_dir` the worker's built-in digits (1,797 images) stand in and the report says so.
Targets (docs/BENCHMARKS.md): at least 20,000 points, a progress indicator, the UI at its full frame rate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np
from convscope.engine.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]

with contextlib.suppress(ImportError):
    import triton  # noqa: F401  (before any GL context, as tests/conftest.py explains)

FRAME_S = 1.0 / 60.0
DRAW_EVERY = 6  # frames between new drawings: a pen moving at 10 updates a second
PHASES = ("idle", "activations", "tsne", "after")


def _scribble(rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((28, 28), np.float32)
    y, x = 14.0, 14.0
    for _ in range(40):
        y, x = np.clip(y + rng.normal(0, 1.5), 4, 23), np.clip(x + rng.normal(0, 1.5), 4, 23)
        img[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 1.0
    return img


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc (nan where unreadable)."""
    if pid is None:
        return float("nan")  # not started yet
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _stats(values: list[float]) -> dict:
    a = np.array(values) * 1e3
    if not len(a):
        return {"n": 0}
    return {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def bench_explore_images(
    data_dir: str | None,
    n: int = 20_000,
    layer: str = "fc2",
    size: tuple[int, int] = (1280, 720),
    idle_frames: int = 180,
    timeout: float = 1800.0,
) -> dict:
    from convscope.engine.app import App
    from convscope.engine.config import AppConfig
    from convscope.engine.gpu.context import create_headless
    from convscope.features.embedding.panel import IMAGES
    from convscope.scenes.explore.run import wait_until_ready
    from convscope.scenes.explore.scene import ExploreScene

    ctx = create_headless()
    app = App(ExploreScene(AppConfig(data_dir=data_dir)), ctx=ctx, size=size)
    scene, rng = app.scene, np.random.default_rng(0)
    st, p = scene.state, scene.state.embed
    frames: dict[str, list[float]] = {k: [] for k in PHASES}
    latency: dict[str, list[float]] = {k: [] for k in PHASES}
    marks: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}  # phase -> process -> CPU seconds used in it
    pending: dict[int, float] = {}  # drawing seq -> when it was submitted
    try:
        wait_until_ready(app, scene, 120)
        p.mode, p.image_layer, p.image_count = IMAGES, layer, n  # the window opens after the idle frames
        st.embed_include_train = True
        phase, count, t_start = "idle", 0, None
        next_t = time.perf_counter()

        def pids() -> dict:
            return {"render": os.getpid(), "worker": scene.worker.pid, "tsne": scene.embedding.embed.pid}

        def enter(name: str) -> str:
            now = {k: _cpu_s(v) for k, v in pids().items()}
            wall = time.perf_counter()
            if cpu.get("_at") is not None:
                prev, then = cpu.pop("_at")
                cpu[phase] = {k: now[k] - prev[k] for k in now} | {"wall": wall - then}
            cpu["_at"] = (now, wall)
            return name

        enter(phase)
        while True:
            if count % DRAW_EVERY == 0 and scene.ready:
                scene.pad.set_image(_scribble(rng))
            t0 = time.perf_counter()
            app.frame()
            app.ctx.finish()
            t1 = time.perf_counter()
            frames[phase].append(t1 - t0)
            if scene.sent_seq not in pending:
                pending[scene.sent_seq] = t0  # the frame that sent it
            for seq in [s for s in pending if s <= scene.result_seq]:
                latency[phase].append(t1 - pending.pop(seq))  # seen by the end of this frame
            count += 1
            view, job = scene.embedding, scene.embedding._job
            if phase == "idle" and count >= idle_frames:
                phase, t_start = enter("activations"), time.perf_counter()
                st.show_embedding = True  # its first frame asks for a layout, as the Compute button does
            elif phase == "activations" and job is not None and job.state == "done":
                marks["vectors_s"] = time.perf_counter() - t_start
                phase = enter("tsne")
            elif phase == "tsne":
                if len(p.ids) and "first_partial_s" not in marks:
                    marks["first_partial_s"] = time.perf_counter() - t_start
                if p.final and len(p.ids) == (job.n if job else -1) and p.shown_view == (IMAGES, layer):
                    marks["layout_s"] = time.perf_counter() - t_start
                    phase, after = enter("after"), count
            elif phase == "after" and count - after >= idle_frames:
                enter("")
                break
            if t_start is not None and time.perf_counter() - t_start > timeout:
                raise SystemExit(f"no final layout within {timeout:g} s (status: {p.status})")
            next_t = max(next_t + FRAME_S, time.perf_counter() - FRAME_S)
            time.sleep(max(0.0, next_t - time.perf_counter()))
        worker = scene.worker
        job = view._job
        return {
            "size": list(size),
            "dataset": (worker.image_data or {}).get("dataset", "?"),
            "images": job.n,
            "test_images": job.n_val,
            "layer": layer,
            "dims": job.d,
            **marks,
            "worker_images_s": worker.images_meta.get("seconds"),
            "worker_batches": worker.images_meta.get("batches"),
            "worker_longest_batch_ms": 1e3 * worker.images_meta.get("longest_batch_s", float("nan")),
            "frames": {k: _stats(v) for k, v in frames.items()},
            "drawing_latency": {k: _stats(v) for k, v in latency.items()},
            "cpu_s": {k: v for k, v in cpu.items() if k != "_at"},
            "status": p.status,
        }
    finally:
        app.close()
        ctx.release()


def format_results(r: dict) -> str:
    lines = [
        f"explorer, {r['images']:,} {r['dataset']} images ({r['test_images']:,} test) by {r['layer']} "
        f"({r['dims']} values), {r['size'][0]}x{r['size'][1]}, a drawing every {DRAW_EVERY} frames:",
        f"  vectors {r['vectors_s']:.1f} s (worker {r['worker_images_s']:.1f} s in {r['worker_batches']} "
        f"batches, slowest {r['worker_longest_batch_ms']:.1f} ms); first partial layout "
        f"{r.get('first_partial_s', float('nan')):.1f} s; final layout {r['layout_s']:.1f} s",
    ]
    for k in PHASES:
        f, d = r["frames"][k], r["drawing_latency"][k]
        if not f.get("n"):
            continue
        lat = f"drawing -> activations p50 {d['p50_ms']:.1f} / p99 {d['p99_ms']:.1f} ms" if d.get("n") else ""
        c = r["cpu_s"].get(k, {})
        use = ", ".join(
            f"{p} {c[p] / c['wall']:.2f}"
            for p in ("render", "worker", "tsne")
            if np.isfinite(c.get(p, np.nan))
        )
        lines.append(
            f"  {k:11s} {f['n']:6d} frames: p50 {f['p50_ms']:.1f} / p99 {f['p99_ms']:.1f} ms; {lat}"
            + (f"; cores busy: {use}" if use else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir", help="a torchvision MNIST root (DIR/MNIST/raw/*.gz); else the built-in digits"
    )
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--layer", default="fc2")
    ap.add_argument("--json", metavar="OUT.json", help="also write the results as JSON")
    args = ap.parse_args(argv)
    r = bench_explore_images(args.data_dir, args.images, args.layer)
    print(format_results(r))
    if args.json:
        atomic_write(args.json, (json.dumps(r, indent=2) + "\n").encode())  # whole or not at all
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
