"""Starting the kiosk: under its supervisor, as the supervised app in a locked fullscreen window,
or headless for screenshots (and, from soak.py, for the soak run).

    convscope --kiosk [--config kiosk.toml]           supervisor -> app (this module's run_window)
    convscope --kiosk --no-supervisor                 the app alone (systemd / a task watches it)
    convscope --kiosk --headless --frames N --screenshot OUT.png
    convscope --kiosk --soak MINUTES --report OUT.json [--headless]
    ... [--record-input FILE] [--replay-input FILE]   a visitor's touches to a file, or back from one

The window: fullscreen and borderless on KioskConfig.monitor, close box and Alt+F4 swallowed,
Ctrl+Q off, cursor hidden after a moment; only the exit chord or the operator PIN close it (exit
status 0, which tells the supervisor to stop too).  The UI scale follows the screen's millimetres,
so every touch target is at least KioskConfig.control_mm.

The headless run uses a frame clock (1/30 s a frame) so `--frames 300` shows the kiosk as it is
ten seconds after start, whatever the machine's speed.
"""

from __future__ import annotations

import os
import sys
import time

from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.gpu.context import GLVersionError, create_headless
from convscope.engine.ui.backend import UiConfig
from convscope.engine.ui.input import InputCollector
from convscope.engine.ui.recording import InputRecorder, InputReplay
from convscope.scenes.explore.run import AppError, wait_until_ready, write_screenshot
from convscope.scenes.kiosk.config import KioskConfig
from convscope.scenes.kiosk.scene import KioskScene, kiosk_ui_scale
from convscope.scenes.kiosk.supervisor import RESTARTS_ENV, Heartbeat, supervise

DEFAULT_DPI = 96.0  # when neither the config nor the monitor says


class FrameClock:
    """A clock that moves `step` seconds each time `tick()` is called: headless runs see the same
    kiosk at the same frame on any machine."""

    def __init__(self, step: float = 1.0 / 30.0) -> None:
        self.step = step
        self.now = 0.0

    def tick(self) -> None:
        self.now += self.step

    def __call__(self) -> float:
        return self.now


def monitor_px_per_mm(window, kiosk: KioskConfig) -> float:
    """Window units per millimetre on the kiosk's screen: from KioskConfig.screen_dpi, else the
    monitor's reported physical size (many touch monitors report none: then 96 dpi)."""
    fb_scale = window.framebuffer_scale[0] or 1.0
    if kiosk.screen_dpi > 0:
        return kiosk.screen_dpi / 25.4 / fb_scale  # dpi counts pixels; a Retina window unit is two
    reported = window.units_per_mm()  # the monitor's video mode is in window units already
    return reported if reported else DEFAULT_DPI / 25.4 / fb_scale


def ui_config(kiosk: KioskConfig, scale: float) -> UiConfig:
    return UiConfig(ui_scale=scale, font_path=kiosk.font or None)


def make_window(cfg: AppConfig, kiosk: KioskConfig, fullscreen: bool | None = None):
    """The kiosk's window, GLFW or SDL2 (KioskConfig.backend); AppError when it cannot open."""
    from convscope.engine.window import WindowConfig, WindowError

    wc = WindowConfig(
        title="convscope",
        width=cfg.width,
        height=cfg.height,
        vsync=cfg.vsync,
        fullscreen=kiosk.fullscreen if fullscreen is None else fullscreen,
        monitor=kiosk.monitor,
        lock_close=True,
        hide_cursor_after=kiosk.hide_cursor_after,
        resizable=False,
    )
    try:
        if kiosk.backend == "sdl":
            from convscope.engine.window_sdl import SdlWindow

            return SdlWindow(wc)
        from convscope.engine.window import Window

        return Window(wc)
    except (WindowError, GLVersionError) as exc:
        raise AppError(str(exc)) from None


def attach_input(collector: InputCollector, opts, restarts: int = 0) -> InputRecorder | None:
    """--replay-input and --record-input on the collector a window (or a headless app) feeds; the
    recorder is returned for the caller to close.  After a restart the supervisor runs the same
    command again: the new recording goes to FILE.1, FILE.2 ..., never over the first."""
    replay = getattr(opts, "replay_input", None)
    record = getattr(opts, "record_input", None)
    if replay:
        try:
            collector.replay = InputReplay(replay, collector.window_size)
        except (OSError, ValueError) as exc:
            raise AppError(f"--replay-input: {exc}") from None
    if not record:
        return None
    path = f"{record}.{restarts}" if restarts else record
    try:
        recorder = InputRecorder(path, collector.window_size, collector.framebuffer_size)
    except OSError as exc:
        raise AppError(f"--record-input: cannot write {path}: {exc.strerror or exc}") from None
    collector.recorder = recorder
    return recorder


def run_window(cfg: AppConfig, kiosk: KioskConfig, opts=None) -> None:
    """The supervised app: frames until the exit chord / PIN; a heartbeat every frame."""
    window = make_window(cfg, kiosk)
    px_per_mm = monitor_px_per_mm(window, kiosk)
    scale = kiosk_ui_scale(kiosk.control_mm, px_per_mm, cfg.ui_scale * window.ui_scale_hint)
    restarts = int(os.environ.get(RESTARTS_ENV, "0") or 0)
    scene = KioskScene(cfg, kiosk, ui_scale=scale, px_per_mm=px_per_mm, restarts=restarts)
    app = App(scene, window=window, ui_config=ui_config(kiosk, scale), quit_chord=False)
    heartbeat = Heartbeat.from_env()
    recorder = None
    try:
        recorder = attach_input(window.input, opts, restarts)
        while not window.should_close:
            app.frame()
            heartbeat.beat()
    finally:
        if recorder is not None:
            recorder.close()
        app.close()
        window.close()


def run_headless(cfg: AppConfig, kiosk: KioskConfig, opts) -> None:
    """N frames of the kiosk on a frame clock, then the screenshot (the newest drawing answered)."""
    width, height = opts.width or 1280, opts.height or 720
    try:
        ctx = create_headless()
    except GLVersionError as exc:
        raise AppError(str(exc)) from None
    px_per_mm = (kiosk.screen_dpi or DEFAULT_DPI) / 25.4
    scale = kiosk_ui_scale(kiosk.control_mm, px_per_mm, cfg.ui_scale)
    clock = FrameClock()
    scene = KioskScene(cfg, kiosk, ui_scale=scale, px_per_mm=px_per_mm, clock=clock)
    app = App(scene, ctx=ctx, size=(width, height), ui_config=ui_config(kiosk, scale), quit_chord=False)
    recorder = None
    try:
        wait_until_ready(app, scene.inner, cfg.worker_timeout)
        recorder = attach_input(app.headless_input, opts)
        replay = app.headless_input.replay
        frames = max(opts.frames or 1, len(replay.frames) if replay is not None else 0)
        for _ in range(frames):
            clock.tick()
            app.frame()
            # Pace the pen to the worker, so every frame's drawing has come back before the next.
            deadline = time.monotonic() + 5.0
            while not scene.ready and time.monotonic() < deadline:
                time.sleep(0.002)
                app.frame()
        if opts.screenshot is not None:
            write_screenshot(app.read_pixels(), opts.screenshot)
    finally:
        if recorder is not None:
            recorder.close()
        app.close()
        ctx.release()


def main(cfg: AppConfig, kiosk: KioskConfig, opts, argv: list[str]) -> int:
    """The `--kiosk` branch of the command line; returns the exit status."""
    if opts.soak is not None:
        from convscope.scenes.kiosk.soak import run_soak

        run_soak(cfg, kiosk, opts)
        return 0
    if opts.headless:
        run_headless(cfg, kiosk, opts)
        return 0
    if not opts.no_supervisor:
        try:
            return supervise([sys.executable, "-m", "convscope.scenes.cli", *argv, "--no-supervisor"], kiosk)
        except OSError as exc:  # the log folder cannot be made, or the app cannot be started
            raise AppError(f"kiosk supervisor: {exc}") from None
    run_window(cfg, kiosk, opts)
    return 0
