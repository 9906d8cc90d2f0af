"""The soak run: the kiosk for MINUTES of real time, attract mode and synthetic visitors taking
turns, then a JSON report.

    convscope --kiosk --soak 60 --report soak.json [--headless]

A synthetic visitor arrives every few seconds of attract mode and uses the exhibit through the
same input path a finger does (engine.ui.input.InputCollector: pointer and touch events): draws a
digit or two on the pad, sometimes clears it, orbits the scene, taps a layer, presses the zoom /
fit / reset buttons, pinches; then leaves, the idle reset runs and attract resumes.  Idle timings
are shortened for the soak (attract after 3 s, reset after 6 s) so a session cycle takes seconds.

Report (all times in milliseconds, memory in kB):
    frame_ms: per time bucket (60 s; a quarter of the run when it is under 2 minutes)
              frames, p50, p99, max
    rss_kb:   render and worker process at start (first result), after warm-up, and at the end
    rss_growth_after_warmup_pct, gl_objects (live moderngl objects after warm-up and at the end),
    worker_restarts, worker_pids, sessions, resets, attract_digits,
    shm_segments_start / shm_segments_end (/dev/shm/convscope*, any process's; end is after
    shutdown), shm_leaked (those of this process at the end: should be none)

Frames are paced to 30 fps headless (a window paces itself by vsync); a frame's time is its work
including GPU completion (ctx.finish()), not the pacing sleep.  The soak's own bookkeeping is
bounded (`FrameTimes`): a run of hours must not grow the process it measures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.files import StagedOutput
from convscope.engine.gpu.context import GLVersionError, create_headless, renderer_string
from convscope.engine.proc.shm import segment_prefix
from convscope.engine.ui.input import MOUSE_LEFT, InputCollector
from convscope.scenes.explore.run import AppError, wait_until_ready
from convscope.scenes.kiosk.attract import place
from convscope.scenes.kiosk.config import KioskConfig
from convscope.scenes.kiosk.run import DEFAULT_DPI, make_window, monitor_px_per_mm, ui_config
from convscope.scenes.kiosk.scene import KioskScene, kiosk_ui_scale

HEADLESS_FPS = 30.0
SOAK_ATTRACT_AFTER = 3.0
SOAK_RESET_AFTER = 6.0
REPORT_RESERVE_BYTES = 4 << 20  # room kept for the report from the start: an hour's is ~15 kB, a week's ~2 MB


def rss_kb(pid: int | None) -> int | None:
    """Resident memory of a process (VmRSS from /proc), kB; None where there is no /proc or no process."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def gl_objects() -> int:
    """Live moderngl objects (buffers, textures, vertex arrays, framebuffers, programs ...) in this
    process: flat after warm-up, or something creates GL objects per frame without releasing them."""
    import gc

    import moderngl

    kinds = tuple(
        k for k in (getattr(moderngl, n, None) for n in ("Buffer", "Texture", "VertexArray", "Framebuffer",
                    "Program", "Renderbuffer", "Sampler", "Query")) if isinstance(k, type)
    )  # fmt: skip
    return sum(1 for o in gc.get_objects() if isinstance(o, kinds))


def shm_segments() -> list[str]:
    shm = Path("/dev/shm")
    return sorted(p.name for p in shm.glob("convscope*")) if shm.is_dir() else []


class SyntheticVisitor:
    """Scripted visitors, one input step per `frame()` call, fed into `sink` like a window's events."""

    def __init__(self, scene: KioskScene, sink: InputCollector, seed: int = 0) -> None:
        self.scene = scene
        self.sink = sink
        self.rng = np.random.default_rng(seed)
        self.sessions = 0
        self.actions: dict[str, int] = {}
        self._script = self._visitors()

    def frame(self) -> None:
        next(self._script)

    # -- building blocks (each yields once per frame) --------------------------------------------------

    def _count(self, name: str) -> None:
        self.actions[name] = self.actions.get(name, 0) + 1

    def _wait(self, seconds: float) -> Iterator[None]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            yield

    def _tap(self, x: float, y: float) -> Iterator[None]:
        self.sink.on_cursor_pos(x, y)
        yield
        self.sink.on_mouse_button(MOUSE_LEFT, True, 0)
        yield
        self.sink.on_mouse_button(MOUSE_LEFT, False, 0)
        yield

    def _press(self, label: str) -> Iterator[None]:
        where = self.scene.ui.target(label)
        if where is not None:
            self._count(label)
            yield from self._tap(*where)

    def _draw_digit(self) -> Iterator[None]:
        lib = self.scene.attract.library
        digit = str(self.rng.integers(10))
        variants = lib[digit]
        strokes = place(
            variants[int(self.rng.integers(len(variants)))], 1000, float(self.rng.uniform(0.85, 1.05))
        )
        x0, y0, x1, y1 = self.scene.ui.pad_rect
        to_window = lambda p: (x0 + p[0] / 1000.0 * (x1 - x0), y0 + p[1] / 1000.0 * (y1 - y0))  # noqa: E731
        self._count("digit")
        for s in strokes:
            self.sink.on_cursor_pos(*to_window(s[0]))
            yield
            self.sink.on_mouse_button(MOUSE_LEFT, True, 0)
            for k in range(1, len(s), 5):  # a brisk finger: a few path points a frame
                self.sink.on_cursor_pos(*to_window(s[k]))
                yield
            self.sink.on_cursor_pos(*to_window(s[-1]))
            self.sink.on_mouse_button(MOUSE_LEFT, False, 0)
            yield

    def _orbit(self) -> Iterator[None]:
        w, h = self.sink.window_size
        left, right = self.scene.ui.left_edge, self.scene.ui.right_edge or w
        x, y = (left + right) / 2.0, h * 0.35
        self._count("orbit")
        self.sink.on_cursor_pos(x, y)
        yield
        self.sink.on_mouse_button(MOUSE_LEFT, True, 0)
        for _ in range(20):
            x += float(self.rng.uniform(-12, 18))
            y += float(self.rng.uniform(-4, 5))
            self.sink.on_cursor_pos(x, y)
            yield
        self.sink.on_mouse_button(MOUSE_LEFT, False, 0)
        yield

    def _tap_layer(self, double: bool) -> Iterator[None]:
        scene = self.scene
        layout = scene.layout
        if layout is None:
            return
        i = int(self.rng.integers(len(layout.layer_bounds)))
        w, h = scene._viewport
        px = scene.camera.project(layout.layer_center(i)[None], w, h)[0]
        if not np.all(np.isfinite(px)):
            return
        x, y = px / scene._fb_scale
        self._count("double_tap" if double else "tap")
        yield from self._tap(x, y)
        if double:
            yield from self._tap(x, y)

    def _pinch(self) -> Iterator[None]:
        w, h = self.sink.window_size
        left, right = self.scene.ui.left_edge, self.scene.ui.right_edge or w
        cx, cy = (left + right) / 2.0, h * 0.45
        spread = 60.0
        grow = float(self.rng.choice([-1.0, 1.0]))
        self._count("pinch")
        self.sink.on_touch_down(1, cx - spread, cy)
        self.sink.on_touch_down(2, cx + spread, cy)
        yield
        for _ in range(12):
            spread *= 1.0 + 0.04 * grow
            cx += 3.0
            self.sink.on_touch_move(1, cx - spread, cy)
            self.sink.on_touch_move(2, cx + spread, cy)
            yield
        self.sink.on_touch_up(1, cx - spread, cy)
        self.sink.on_touch_up(2, cx + spread, cy)
        yield

    # -- the visitors ------------------------------------------------------------------------------------

    def _visitors(self) -> Iterator[None]:
        first = True
        while True:
            # Attract mode runs (the first visitor comes soon, so even a short soak sees a reset).
            yield from self._wait(float(self.rng.uniform(2.0, 4.0) if first else self.rng.uniform(3.0, 8.0)))
            first = False
            self.sessions += 1
            for _ in range(int(self.rng.integers(1, 3))):
                yield from self._draw_digit()
                yield from self._wait(float(self.rng.uniform(0.5, 1.5)))
                if self.rng.random() < 0.5:
                    yield from self._press("Clear")
            yield from self._orbit()
            yield from self._tap_layer(double=bool(self.rng.random() < 0.5))
            yield from self._wait(float(self.rng.uniform(0.3, 1.0)))
            for label in self.rng.permutation(["+", "-", "Fit", "Reset"]):
                yield from self._press(str(label))
            yield from self._pinch()
            resets = self.scene.idle.resets
            while self.scene.idle.resets == resets:  # the visitor leaves; attract, then the idle reset
                yield


def _percentiles(times) -> dict:
    if len(times) == 0:
        return {"frames": 0, "p50": None, "p99": None, "max": None}
    a = np.asarray(times) * 1e3
    return {
        "frames": len(a),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "max": round(float(a.max()), 3),
    }


class FrameTimes:
    """Frame times in bounded memory: the open bucket's raw times (one reused buffer), a summary per
    closed bucket, and one log-spaced histogram for the whole run's percentiles (about 1 %
    resolution).  Keeping every frame's time as a Python float cost 32 bytes a frame, ~60 KB a
    minute at 30 fps: the render-process growth earlier soaks reported was this list."""

    EDGES = np.geomspace(1e-5, 100.0, 1601)  # seconds: 10 us .. 100 s

    def __init__(self) -> None:
        self.summaries: list[dict] = []  # closed buckets
        self.frames = 0
        self._buf = np.empty(4096)
        self._n = 0
        self._open = False
        self._hist = np.zeros(len(self.EDGES) + 1, np.int64)
        self._max = 0.0

    @property
    def buckets(self) -> int:
        return len(self.summaries) + (1 if self._open else 0)

    def next_bucket(self) -> None:
        self.close()
        self._open = True

    def add(self, seconds: float) -> None:
        if self._n == len(self._buf):
            self._buf = np.concatenate([self._buf, np.empty(len(self._buf))])
        self._buf[self._n] = seconds
        self._n += 1
        self.frames += 1
        self._hist[np.searchsorted(self.EDGES, seconds)] += 1
        self._max = max(self._max, seconds)

    def close(self) -> None:
        if self._open:
            self.summaries.append(_percentiles(self._buf[: self._n]))
            self._n, self._open = 0, False

    def overall(self) -> dict:
        """p50 / p99 from the histogram (the geometric middle of the bin), max exact."""
        if self.frames == 0:
            return _percentiles([])
        cum = np.cumsum(self._hist)
        mids = np.sqrt(self.EDGES[:-1] * self.EDGES[1:])
        mids = np.concatenate([[self.EDGES[0]], mids, [self.EDGES[-1]]])

        def q(frac: float) -> float:
            return round(float(mids[int(np.searchsorted(cum, frac * self.frames))]) * 1e3, 3)

        return {"frames": self.frames, "p50": q(0.5), "p99": q(0.99), "max": round(self._max * 1e3, 3)}


def run_soak(cfg: AppConfig, kiosk: KioskConfig, opts) -> dict:
    """Run the soak and write opts.report; returns the report.  The report is kept in `<report>.partial`
    while the soak runs (rewritten once per bucket, its room reserved at the start), so a failure at the
    end, or a killed run, loses at most one bucket."""
    total = float(opts.soak) * 60.0
    kiosk = dataclasses.replace(
        kiosk,
        attract_after=min(kiosk.attract_after, SOAK_ATTRACT_AFTER),
        reset_after=min(kiosk.reset_after, SOAK_RESET_AFTER),
    )
    out = StagedOutput(opts.report, reserve=REPORT_RESERVE_BYTES)
    committed = False
    shm_start = shm_segments()
    window = ctx = app = None
    bucket_s = 60.0 if total >= 120.0 else total / 4.0
    warm_s = min(60.0, 0.25 * total)
    times = FrameTimes()
    rss_series: list[dict] = []
    worker_pids: list[int] = []
    run = {"renderer": None, "start": None, "warm": None, "end": None, "elapsed": 0.0, "restarts": 0}
    gl_counts = {"after_warmup": None, "end": None}
    stats: dict = {}
    shm_end: list[str] | None = None

    def growth(key: str) -> float | None:
        a, b = (run["warm"] or run["start"] or {}).get(key), (run["end"] or {}).get(key)
        return round(100.0 * (b - a) / a, 2) if a and b else None

    def report() -> dict:
        return {
            "minutes": float(opts.soak),
            "complete": shm_end is not None,  # false in the .partial file of a run still going (or killed)
            "elapsed_s": round(run["elapsed"], 1),
            "mode": "headless" if window is None else "window",
            "renderer": run["renderer"],
            "python": platform.python_version(),
            "platform": sys.platform,
            "frames": times.frames,
            "bucket_s": bucket_s,
            "frame_ms": [
                {"bucket": i, "t0_s": round(i * bucket_s, 1), **b} for i, b in enumerate(times.summaries)
            ],
            "frame_ms_all": times.overall(),
            "rss_kb": {
                "start": run["start"],
                "after_warmup": run["warm"],
                "end": run["end"],
                "series": rss_series,
            },
            "warmup_s": warm_s,
            "rss_growth_after_warmup_pct": {"render": growth("render"), "worker": growth("worker")},
            "gl_objects": gl_counts,
            "worker_restarts": run["restarts"],
            "worker_pids": worker_pids,
            **stats,
            "timings": {"attract_after_s": kiosk.attract_after, "reset_after_s": kiosk.reset_after},
            "shm_segments_start": shm_start,
            "shm_segments_end": shm_end,
            # Ours: the render process creates every segment of its worker, named after its own pid.
            "shm_leaked": [name for name in shm_end or () if name.startswith(segment_prefix())],
        }

    def encode() -> bytes:
        return (json.dumps(report(), indent=2) + "\n").encode("utf-8")

    try:
        if opts.headless:
            width, height = opts.width or 1280, opts.height or 720
            try:
                ctx = create_headless()
            except GLVersionError as exc:
                raise AppError(str(exc)) from None
            px_per_mm = (kiosk.screen_dpi or DEFAULT_DPI) / 25.4
            scale = kiosk_ui_scale(kiosk.control_mm, px_per_mm, cfg.ui_scale)
        else:
            window = make_window(cfg, kiosk)
            ctx = window.ctx
            px_per_mm = monitor_px_per_mm(window, kiosk)
            scale = kiosk_ui_scale(kiosk.control_mm, px_per_mm, cfg.ui_scale * window.ui_scale_hint)
        scene = KioskScene(cfg, kiosk, ui_scale=scale, px_per_mm=px_per_mm)
        if window is None:
            app = App(
                scene, ctx=ctx, size=(width, height), ui_config=ui_config(kiosk, scale), quit_chord=False
            )
            sink = app.headless_input
        else:
            app = App(scene, window=window, ui_config=ui_config(kiosk, scale), quit_chord=False)
            sink = window.input
        visitor = SyntheticVisitor(scene, sink, seed=kiosk.seed)
        try:
            wait_until_ready(app, scene.inner, cfg.worker_timeout)
            run["renderer"] = renderer_string(ctx)
            run["start"] = {"render": rss_kb(os.getpid()), "worker": rss_kb(scene.worker.pid)}
            t0 = time.monotonic()
            next_frame = t0
            while (now := time.monotonic()) - t0 < total:
                if scene.worker.pid is not None and scene.worker.pid not in worker_pids:
                    worker_pids.append(scene.worker.pid)
                visitor.frame()
                f0 = time.perf_counter()
                app.frame()
                ctx.finish()
                spent = time.perf_counter() - f0
                k = int((now - t0) / bucket_s)
                while times.buckets <= k:
                    closing = times.buckets > 0
                    times.next_bucket()
                    if closing:  # a bucket is complete: the partial report gets it
                        run["elapsed"], run["restarts"] = now - t0, scene.worker.restarts
                        out.write(encode())
                    rss_series.append(
                        {
                            "t_s": round(now - t0, 1),
                            "render": rss_kb(os.getpid()),
                            "worker": rss_kb(scene.worker.pid),
                        }
                    )
                times.add(spent)
                if run["warm"] is None and now - t0 >= warm_s:
                    run["warm"] = {"render": rss_kb(os.getpid()), "worker": rss_kb(scene.worker.pid)}
                    gl_counts["after_warmup"] = gl_objects()
                if window is None:
                    next_frame = max(next_frame + 1.0 / HEADLESS_FPS, time.monotonic())
                    time.sleep(max(next_frame - time.monotonic(), 0.0))
                elif window.should_close:
                    break  # the operator's exit chord ends a windowed soak early
            run["end"] = {"render": rss_kb(os.getpid()), "worker": rss_kb(scene.worker.pid)}
            gl_counts["end"] = gl_objects()
            times.close()
            run["elapsed"] = time.monotonic() - t0
            run["restarts"] = scene.worker.restarts
            stats.update(
                {
                    "sessions": visitor.sessions,
                    "visitor_actions": visitor.actions,
                    "resets": scene.idle.resets,
                    "attract_digits": scene.attract.digits_drawn,
                }
            )
        finally:
            app.close()
        time.sleep(0.2)  # the worker has been joined; give the OS a moment before listing /dev/shm
        shm_end = shm_segments()
        out.commit(encode())
        committed = True
    finally:
        if window is not None:
            window.close()
        elif ctx is not None:
            ctx.release()
        if not committed and not times.frames:
            out.discard()  # nothing measured: no report to keep
    result = report()
    a = result["frame_ms_all"]
    elapsed, restarts = run["elapsed"], run["restarts"]
    print(
        f"soak {elapsed / 60:.2f} min: {result['frames']} frames, p50 {a['p50']} ms, p99 {a['p99']} ms; "
        f"RSS growth after warm-up render {result['rss_growth_after_warmup_pct']['render']} %, "
        f"worker {result['rss_growth_after_warmup_pct']['worker']} %; restarts {restarts}; "
        f"leaked segments {len(result['shm_leaked'])}; report {opts.report}"
    )
    return result
