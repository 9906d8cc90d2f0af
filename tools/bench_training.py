"""Live-training benchmarks: does the visualization stall rendering, and what does it cost training?

    python tools/bench_training.py [--seconds 3] [--rounds 2] [--batch-sizes 4 32 128] [--frames 240]
                                   [--json OUT.json]

Functions tools/bench.py calls:
  bench_frame_times(frames, size)
      The whole TrainScene (panels, 31,562 nodes, paths, jitter) offscreen: frame time p50 / p99 with
      training paused and with it running (target: running p99 <= 1.5x paused p99), with the worker's core
      reserved (the scene's default, engine/cores.py) and, for comparison, shared.  Each frame is timed
      up to glFinish: a headless frame is not throttled by a swap, so without it llvmpipe's queue is timed.
  bench_throughput(batch_sizes, fps)
      images/s of the RevaCNN 16-20-20 on the built-in digits, one torch thread everywhere:
        bare    a hand-written torch loop in a process started like the worker (tools/bench_train.py's
                BareProcess: spawn, one thread, the worker's allocator settings)
        worker  the training worker, its snapshots read 60 times a second (as a render loop would), nothing
                drawn
        scene   the TrainScene drawn at `fps` frames/s (60: a vsynced window; 30: the scene's default
                cap, TrainConfig.max_fps), training in its worker (target: >= 90% of bare); with the
                worker's core reserved (the default), and at the first rate also shared ("60 shared")
      The worker's images/s comes from its snapshots (images trained / its own clock), not from the
      trainer's per-step estimate.  The machine is shared and drifts, so every case runs between two bare
      runs and its percentage is of their mean; `rounds` repeats the whole sequence and the medians are
      reported.  With 2 cores the render loop (llvmpipe rasterises on every core) and the worker compete
      for the CPU: that is what is measured.
Targets live here and in docs/BENCHMARKS.md, never in timed tests.
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

# Mesa's llvmpipe and triton each bring an LLVM; load triton (torchvision pulls it in) before any GL context,
# as tests/conftest.py does.
with contextlib.suppress(ImportError):
    import triton  # noqa: F401

WORKER_POLL_HZ = 60.0  # how often the 'worker' runs read snapshots (a render loop's rate)


def _scene_app(size: tuple[int, int], batch: int = 4, start_paused: bool = False):
    from convscope.engine.app import App
    from convscope.engine.gpu.context import create_headless
    from convscope.scenes.train.scene import TrainScene
    from convscope.scenes.train.state import TrainConfig

    ctx = create_headless()
    scene = TrainScene(
        TrainConfig(dataset="digits", val_every=0, batch_size=batch, start_paused=start_paused)
    )
    app = App(scene, ctx=ctx, size=size)
    return ctx, app, scene


def _frame(app) -> float:
    t0 = time.perf_counter()
    app.frame()
    app.ctx.finish()
    return time.perf_counter() - t0


def _until(app, cond, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"training scene: timed out (error: {app.scene.handle.error})")
        _frame(app)
        time.sleep(0.002)


def bench_frame_times(
    frames: int = 240, size: tuple[int, int] = (1280, 720), batch: int = 4, shared: bool = True
) -> dict:
    """Frame time of the whole training scene with training paused, then running (back-to-back frames);
    with the worker's core reserved, then (`shared`) with the render threads on every core."""
    ctx, app, scene = _scene_app(size, batch, start_paused=True)
    st = scene.state
    try:
        _until(app, lambda: scene.snapshot is not None)
        out: dict = {"frames": frames, "size": list(size), "nodes": st.nodes}
        for mode in ("reserved", "shared") if shared else ("reserved",):
            scene.reserve_core(mode == "reserved")
            res = out[mode] = {}
            for label, want_running in (("paused", False), ("running", True)):
                if st.running != want_running:
                    st.request("resume" if want_running else "pause")
                    _until(app, lambda w=want_running: st.running == w)
                for _ in range(10):
                    _frame(app)
                step0 = st.step
                ms = np.array([_frame(app) for _ in range(frames)]) * 1e3
                res[label] = {
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)),
                    "steps": st.step - step0,
                }
            res["ratio_p99"] = res["running"]["p99_ms"] / max(res["paused"]["p99_ms"], 1e-9)
            st.request("pause")
            _until(app, lambda: not st.running)
        return out
    finally:
        app.close()
        ctx.release()


def _rate(first, last) -> float:
    di = last.stats["images_total"] - first.stats["images_total"]
    dt = last.stats["clock"] - first.stats["clock"]
    return di / dt if dt > 0 else float("nan")


def _worker_rate(handle, seconds: float) -> tuple[float, int]:
    """images/s of a running worker over `seconds`, its snapshots read WORKER_POLL_HZ times a second."""
    first = handle.wait_snapshot(lambda s: not s.paused)
    n, last = 0, first
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        snap = handle.poll()
        if snap is not None:
            last, n = snap, n + 1
        time.sleep(1.0 / WORKER_POLL_HZ)
    return _rate(first, last), n


def _scene_rate(app, scene, seconds: float, fps: float) -> tuple[float, float]:
    """images/s with the scene drawn at `fps` frames/s; also the scene's frame p99 (ms) meanwhile."""
    _until(app, lambda: scene.snapshot is not None and not scene.snapshot.paused)
    for _ in range(5):  # a snapshot of this run, not one left from before the resume
        _frame(app)
    first = scene.snapshot
    times = []
    end = time.monotonic() + seconds
    next_t = time.monotonic()
    while time.monotonic() < end:
        times.append(_frame(app))
        next_t = max(next_t + 1.0 / fps, time.monotonic() - 1.0 / fps)  # no catching up after a slow frame
        time.sleep(max(0.0, next_t - time.monotonic()))
    return _rate(first, scene.snapshot), float(np.percentile(np.array(times) * 1e3, 99))


def bench_throughput(
    batch_sizes=(4, 32, 128),
    seconds: float = 3.0,
    fps=(60.0, 30.0),
    size: tuple[int, int] = (1280, 720),
    rounds: int = 2,
) -> list[dict]:
    from bench_train import BareProcess
    from convscope.features.training.handle import TrainHandle

    rows = []
    bare_proc = BareProcess(threads=1)
    handle = TrainHandle("digits", val_every=0, hyper={"batch_size": batch_sizes[0]}, start_paused=True)
    ctx, app, scene = _scene_app(size, batch_sizes[0], start_paused=True)
    st = scene.state
    try:
        if not handle.start(120):
            raise SystemExit(f"training worker failed: {handle.error}")
        _until(app, lambda: scene.snapshot is not None)
        keys = ["worker"] + [f"{f:g}" for f in fps] + [f"{fps[0]:g} shared"]
        for b in batch_sizes:  # one process trains at a time; the paused ones block on their pipes
            runs: dict[str, list[float]] = {k: [] for k in keys}
            pcts: dict[str, list[float]] = {k: [] for k in keys}
            p99s: dict[str, list[float]] = {k: [] for k in keys}
            bare_runs: list[float] = []
            snaps = 0
            for _ in range(rounds):
                before = bare_proc.images_per_s(b, seconds)
                bare_runs.append(before)
                for key in keys:
                    if key == "worker":
                        handle.wait_reply(handle.set_hyper(batch_size=b))
                        handle.wait_reply(handle.resume())
                        handle.wait_snapshot(lambda s, b=b: s.stats["batch_size"] == b and not s.paused)
                        rate, n = _worker_rate(handle, seconds)
                        snaps += n
                        handle.wait_reply(handle.pause())
                        p99 = float("nan")
                    else:
                        f = float(key.split()[0])
                        scene.reserve_core("shared" not in key)
                        st.request("set_hyper", batch_size=b)
                        st.request("resume")
                        _until(app, lambda b=b: scene.snapshot.stats["batch_size"] == b and st.running)
                        rate, p99 = _scene_rate(app, scene, seconds, f)
                        st.request("pause")
                        _until(app, lambda: not st.running)
                    scene.reserve_core(True)
                    after = bare_proc.images_per_s(b, seconds)
                    bare_runs.append(after)
                    runs[key].append(rate)
                    pcts[key].append(100 * rate / ((before + after) / 2))  # against the bare runs around it
                    p99s[key].append(p99)
                    before = after
            row = {
                "batch": b,
                "bare": float(np.median(bare_runs)),
                "bare_runs": bare_runs,
                "worker": float(np.median(runs["worker"])),
                "worker_pct": float(np.median(pcts["worker"])),
                "worker_pct_runs": pcts["worker"],
                "worker_snapshots_per_s": snaps / (seconds * rounds),
                "scene": {
                    k: {
                        "images_per_s": float(np.median(runs[k])),
                        "pct": float(np.median(pcts[k])),
                        "pct_runs": pcts[k],
                        "frame_p99_ms": float(np.median(p99s[k])),
                    }
                    for k in keys[1:]
                },
            }
            rows.append(row)
    finally:
        handle.close()
        bare_proc.close()
        app.close()
        ctx.release()
    return rows


def format_results(frames: dict | None, rows: list[dict] | None) -> str:
    lines = []
    if frames:
        lines.append(
            f"frame time, TrainScene {frames['nodes']:,} nodes {frames['size'][0]}x{frames['size'][1]}:"
        )
        for mode in ("reserved", "shared"):
            if mode not in frames:
                continue
            m = frames[mode]
            p, r = m["paused"], m["running"]
            lines.append(
                f"  worker core {mode:8}: paused p50 {p['p50_ms']:.1f} / p99 {p['p99_ms']:.1f} ms; running "
                f"p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} ms ({r['steps']} steps meanwhile); p99 ratio "
                f"{m['ratio_p99']:.2f} (target <= 1.5)"
            )
    if rows:
        fps = list(rows[0]["scene"])
        head = "".join(f"  {'scene@' + f + ' img/s':>24}  {'%':>4}  {'frame p99':>9}" for f in fps)
        lines.append(f"{'batch':>5}  {'bare img/s':>10}  {'worker img/s':>12}  {'%':>4}{head}")
        for x in rows:
            line = f"{x['batch']:>5}  {x['bare']:>10.0f}  {x['worker']:>12.0f}  {x['worker_pct']:>4.0f}"
            for f in fps:
                v = x["scene"][f]
                line += f"  {v['images_per_s']:>24.0f}  {v['pct']:>4.0f}  {v['frame_p99_ms']:>7.1f}ms"
            lines.append(line)
        lines.append(
            "(target: scene >= 90% of bare; each % is of the two bare runs around that case, median over "
            "the rounds; 'shared': the render threads may use the worker's core)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time per run")
    ap.add_argument("--rounds", type=int, default=2, help="repeats of each batch size's sequence")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 32, 128])
    ap.add_argument("--fps", type=float, nargs="+", default=[60.0, 30.0], help="scene render rates")
    ap.add_argument("--frames", type=int, default=240, help="frames per frame-time run")
    ap.add_argument("--skip-frames", action="store_true", help="only the throughput runs")
    ap.add_argument("--skip-throughput", action="store_true", help="only the frame-time runs")
    ap.add_argument("--json", metavar="OUT.json", help="also write the results as JSON")
    args = ap.parse_args(argv)
    frames = None if args.skip_frames else bench_frame_times(args.frames)
    if frames:
        print(format_results(frames, None), flush=True)
    rows = None
    if not args.skip_throughput:
        rows = bench_throughput(tuple(args.batch_sizes), args.seconds, tuple(args.fps), rounds=args.rounds)
    if rows:
        print(format_results(None, rows))
    if args.json:
        doc = {"frame_times": frames, "throughput": rows, "cpus": os.cpu_count()}
        atomic_write(args.json, (json.dumps(doc, indent=2) + "\n").encode())  # whole or not at all
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
