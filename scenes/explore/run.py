"""Starting the explorer: in a window, or headless for screenshots and activation dumps.

Both paths build the same ExploreScene and drive it with the same engine.app.App; the headless
one renders into an offscreen framebuffer through EGL and, before its N frames, waits until the
worker has answered the starting drawing, so a screenshot always shows a real result.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.files import atomic_write, write_screenshot
from convscope.engine.gpu.context import GLVersionError, create_headless
from convscope.engine.ui.backend import UiConfig
from convscope.scenes.explore.scene import ExploreScene


class AppError(Exception):
    """A failure the user can act on (no OpenGL, no display, no network loaded): one line."""


def wait_until_ready(app: App, scene: ExploreScene, timeout: float) -> None:
    """Draw frames until the newest drawing has come back from the worker (or fail clearly)."""
    deadline = time.monotonic() + timeout
    while not scene.ready:
        if scene.worker.spec is None and scene.worker.error and scene.worker.state == "failed":
            raise AppError(scene.worker.error)
        if time.monotonic() > deadline:
            raise AppError(scene.worker.error or f"the network did not answer within {timeout:g} s")
        app.frame()
        time.sleep(1 / 60)  # a display's pace: the worker starting up needs the CPU more than we do


def save_outputs(app: App, scene: ExploreScene, screenshot: Path | None, dump: Path | None) -> None:
    if screenshot is not None:
        write_screenshot(app.read_pixels(), screenshot)
    if dump is not None:
        write_activations(scene, dump)


def nonfinite_layers(arrays: dict[str, np.ndarray]) -> list[str]:
    """Names of the arrays holding inf or NaN (weights too large for float32 overflow into them)."""
    return [name for name, a in arrays.items() if a is not None and not np.all(np.isfinite(a))]


def write_activations(scene: ExploreScene, path: Path) -> None:
    """One array per layer, shaped and named as in the spec, plus `probabilities`; the layer
    named "input" is the network input.  Non-finite values are written as they came, listed in the
    array `nonfinite` (names; empty when all is finite) and in one warning line on stderr."""
    if scene.activations is None:
        raise AppError("no activations to write: the network has not answered")
    arrays = {x.name: scene.activations[x.start : x.stop].reshape(x.shape) for x in scene.spec.layers}
    arrays["probabilities"] = scene.state.probabilities
    if "input" not in arrays:
        arrays["input"] = scene.state.network_input
    bad = nonfinite_layers(arrays)
    arrays["nonfinite"] = np.array(bad, dtype=str)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    if bad:
        print(
            f"convscope: warning: {path}: {', '.join(bad)} hold inf or NaN (the weights overflow float32)",
            file=sys.stderr,
        )


def run_headless(cfg: AppConfig, opts, drawing: np.ndarray | None) -> None:
    width, height = opts.width or 1280, opts.height or 720
    try:
        ctx = create_headless()
    except GLVersionError as exc:
        raise AppError(str(exc)) from None
    scene = ExploreScene(cfg, drawing, cfg.ui_scale)
    app = App(scene, ctx=ctx, size=(width, height), ui_config=UiConfig(ui_scale=cfg.ui_scale))
    app.show_frame_time = cfg.show_frame_time
    try:
        wait_until_ready(app, scene, cfg.worker_timeout)
        app.frames = 0
        app.run(opts.frames or 1)
        save_outputs(app, scene, opts.screenshot, opts.dump_activations)
    finally:
        app.close()
        ctx.release()


def run_window(cfg: AppConfig, opts, drawing: np.ndarray | None) -> None:
    from convscope.engine.window import Window, WindowConfig, WindowError

    try:
        window = Window(
            WindowConfig(
                title="convscope",
                width=cfg.width,
                height=cfg.height,
                vsync=cfg.vsync,
                fullscreen=cfg.fullscreen,
            )
        )
    except (WindowError, GLVersionError) as exc:
        raise AppError(str(exc)) from None
    scale = cfg.ui_scale * window.ui_scale_hint
    scene = ExploreScene(cfg, drawing, scale)
    app = App(scene, window=window, ui_config=UiConfig(ui_scale=scale), show_frame_time=cfg.show_frame_time)
    try:
        if opts.frames is not None and (opts.screenshot or opts.dump_activations):
            wait_until_ready(app, scene, cfg.worker_timeout)
            app.frames = 0
        app.run(opts.frames)
        save_outputs(app, scene, opts.screenshot, opts.dump_activations)
    finally:
        app.close()
        window.close()
