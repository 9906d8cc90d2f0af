"""Starting the training scene: in a window (with the Explore | Train switch), or headless for screenshots.

`convscope --scene train [--dataset cifar10|mnist|digits] [--data-dir DIR] [--data-mirror URL]` lands here
(scenes/cli.py).  The headless run waits for the first snapshot of the training worker (and, when it writes
a screenshot, for the Embedding window's first layout), lets it train for `frames` frames and writes the
last one as PNG.
"""

from __future__ import annotations

import time

from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.gpu.context import GLVersionError, create_headless
from convscope.engine.ui.backend import UiConfig
from convscope.scenes.explore.run import AppError, write_screenshot
from convscope.scenes.train.scene import TrainScene
from convscope.scenes.train.state import TrainConfig

EMBED_TIMEOUT_S = 30.0  # a screenshot waits this long at most for the Embedding window's first layout


def wait_for_training(app: App, scene: TrainScene, timeout: float) -> None:
    """Draw frames until the scene shows a snapshot of the worker (or fail with its error)."""
    deadline = time.monotonic() + timeout
    while scene.snapshot is None:
        if scene.handle.error and not scene.handle.alive and scene.handle.restarts >= 3:
            raise AppError(scene.handle.error)
        if time.monotonic() > deadline:
            raise AppError(scene.handle.error or f"the training process sent nothing within {timeout:g} s")
        app.frame()
        # Headless frames are not throttled by a swap: without this llvmpipe queues hundreds of them,
        # and the first texture upload then waits for all of them.
        app.ctx.finish()
        time.sleep(0.005)


def wait_for_embedding(app: App, scene: TrainScene, timeout: float) -> bool:
    """Draw frames until the Embedding window shows a finished layout (a screenshot should show one); False
    when none came within `timeout` (the picture is still worth writing)."""
    deadline = time.monotonic() + timeout
    panel = scene.state.embed
    while not (len(panel.ids) and panel.final and not panel.animating):
        if time.monotonic() > deadline:
            return False
        app.frame()
        app.ctx.finish()
        time.sleep(0.005)
    return True


def run_train_headless(cfg: TrainConfig, opts) -> None:
    """`opts`: width, height, frames, screenshot (argparse namespace or anything with those attributes)."""
    width, height = opts.width or 1280, opts.height or 720
    try:
        ctx = create_headless()
    except GLVersionError as exc:
        raise AppError(str(exc)) from None
    scene = TrainScene(cfg)
    app = App(scene, ctx=ctx, size=(width, height), ui_config=UiConfig(ui_scale=cfg.ui_scale))
    try:
        wait_for_training(app, scene, cfg.worker_timeout)
        if opts.screenshot is not None:
            wait_for_embedding(app, scene, EMBED_TIMEOUT_S)
        app.frames = 0
        app.run(opts.frames or 1)
        if opts.screenshot is not None:
            write_screenshot(app.read_pixels(), opts.screenshot)
    finally:
        app.close()
        ctx.release()


def run_train_window(cfg: TrainConfig, opts, explore: AppConfig | None = None) -> None:
    """A window with the training scene; the bottom selector switches to the explorer (`explore`'s
    settings) and back.  Training goes on behind the explorer (scenes/train/switch.py)."""
    from convscope.engine.window import Window, WindowConfig, WindowError
    from convscope.scenes.explore.scene import ExploreScene
    from convscope.scenes.train.switch import SceneSwitch

    explore = explore or AppConfig()
    try:
        window = Window(
            WindowConfig(
                title="convscope — training",
                width=explore.width,
                height=explore.height,
                vsync=explore.vsync,
                fullscreen=explore.fullscreen,
            )
        )
    except (WindowError, GLVersionError) as exc:
        raise AppError(str(exc)) from None
    scale = cfg.ui_scale * window.ui_scale_hint
    cfg.ui_scale = scale
    switch = SceneSwitch(
        {"Explore": lambda: ExploreScene(explore, None, scale), "Train": lambda: TrainScene(cfg)},
        "Train",
        scale,
    )
    app = App(switch, window=window, ui_config=UiConfig(ui_scale=scale), show_frame_time=cfg.show_frame_time)
    try:
        if opts.frames is not None and opts.screenshot is not None:
            wait_for_training(app, switch.scene, cfg.worker_timeout)  # a screenshot shows a trained net
            wait_for_embedding(app, switch.scene, EMBED_TIMEOUT_S)
            app.frames = 0
        run_capped(app, opts.frames, lambda: cfg.max_fps if switch.name == "Train" else 0.0)
        if opts.screenshot is not None:
            write_screenshot(app.read_pixels(), opts.screenshot)
    finally:
        app.close()
        window.close()


def run_capped(app: App, frames: int | None, max_fps) -> None:
    """App.run, with at most `max_fps()` frames a second (0: as fast as the swap allows)."""
    while frames is None or app.frames < frames:
        if app.window is not None and app.window.should_close:
            break
        t0 = time.perf_counter()
        app.frame()
        fps = max_fps()
        if fps > 0:
            left = 1.0 / fps - (time.perf_counter() - t0)
            if left > 0:
                time.sleep(left)


def train_config_from(cfg: AppConfig, opts) -> TrainConfig:
    """The training scene's settings from the command line (`opts`) and the app's config file (`cfg`)."""
    return TrainConfig(
        dataset=opts.dataset or "cifar10",
        data_dir=opts.data_dir,
        data_mirror=getattr(opts, "data_mirror", None),  # scenes/cli.py made it a URL
        colormap=cfg.colormap,
        show_frame_time=cfg.show_frame_time,
        ui_scale=cfg.ui_scale,
    )


def run_from_cli(cfg: AppConfig, opts) -> None:
    """`convscope --scene train ...` (scenes/cli.py has checked the options)."""
    train = train_config_from(cfg, opts)
    if opts.headless:
        run_train_headless(train, opts)
    else:
        run_train_window(train, opts, cfg)
