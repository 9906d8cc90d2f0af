"""Starting the explorer: in a window, or headless for screenshots, activation dumps and explanations.

The window and the headless screenshot build the same ExploreScene and drive it with the same
engine.app.App; the headless one renders into an offscreen framebuffer through EGL and, before its N
frames, waits until the worker has answered the starting input, so a screenshot always shows a real
result.  Without a screenshot, `run_dump` needs no OpenGL: it talks to the worker through the same
WorkerHandle the scene uses and writes what the render process received (`--dump-activations`, by Dag
layer name) and one node's calculation (`--explain`, engine/graph/dag_explain.py).

`--input PICTURE` is known before the model is: the command line makes a 28 x 28 drawing of it for the
pad.  Once the worker reports the model's InputSpec, a model that does not take that drawing as it is
gets the picture itself (preprocess.file_to_model_input): in `run_dump` directly, in the scene through
the image panel (colour models) or the pad (grey ones).  A dump's `input` is the tensor handed over.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.files import atomic_write, write_screenshot
from convscope.engine.gpu.context import GLVersionError, create_headless
from convscope.engine.ui.backend import UiConfig
from convscope.scenes.explore.preprocess import INPUT_SIZE
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
    """One array per layer, shaped and named as in the spec, plus `probabilities` and `input`: the tensor
    handed to the model (`scene.model_input`).  Non-finite values are written as they came, listed in the
    array `nonfinite` (names; empty when all is finite) and in one warning line on stderr."""
    if scene.activations is None:
        raise AppError("no activations to write: the network has not answered")
    arrays = {x.name: scene.activations[x.start : x.stop].reshape(x.shape) for x in scene.spec.layers}
    arrays["probabilities"] = scene.state.probabilities
    first = scene.spec.layers[0]
    sent = scene.model_input
    if sent is not None and np.shape(sent) == tuple(first.shape):
        arrays["input"] = np.asarray(sent, np.float32)
    else:  # a drawing sent before the worker described its input: the model got it converted
        arrays["input"] = scene.activations[first.start : first.stop].reshape(first.shape)
    bad = nonfinite_layers(arrays)
    arrays["nonfinite"] = np.array(bad, dtype=str)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    if bad:
        print(
            f"convscope: warning: {path}: {', '.join(bad)} hold inf or NaN (the weights overflow float32)",
            file=sys.stderr,
        )


def explain_index(dag, layer: str, index: tuple[int, ...]) -> int:
    """The node id of `layer`'s node at a flat INDEX or at C,Y,X; AppError naming the layer's range."""
    try:
        lay = dag.layer(layer)
    except (KeyError, ValueError):
        names = ", ".join(x.name for x in dag.layers)
        raise AppError(f"--explain: the model has no layer {layer!r} (it has {names})") from None
    if len(index) == 3:
        if not lay.is_grid:
            raise AppError(f"--explain: {layer} is a vector of {lay.count}; give one flat INDEX")
        if any(i >= s for i, s in zip(index, lay.shape, strict=True)):
            raise AppError(f"--explain: {layer} is {lay.shape}; {index} is outside it")
        flat = int(np.ravel_multi_index(index, lay.shape))
    else:
        flat = index[0]
        if flat >= lay.count:
            raise AppError(f"--explain: {layer} has {lay.count} nodes; index {flat} is outside it")
    return lay.start + flat


def input_picture(opts) -> str | None:
    """The `--input` file when it is a picture (not a .npy tensor)."""
    path = getattr(opts, "input", None)
    return None if not path or Path(path).suffix.lower() == ".npy" else str(path)


def takes_drawing_as_is(shape: tuple[int, ...] | None) -> bool:
    """The model takes the pad's 28 x 28 drawing without resampling (the shipped LeNet and MLP)."""
    return shape in ((1, INPUT_SIZE, INPUT_SIZE), (INPUT_SIZE * INPUT_SIZE,))


def picture_for_model(path: str, spec) -> np.ndarray:
    """`--input PICTURE` as the tensor `spec`'s model takes (resized, cropped, normalised); AppError."""
    from convscope.scenes.explore.preprocess import InputImageError, file_to_model_input

    try:
        return file_to_model_input(path, spec)
    except InputImageError as exc:
        raise AppError(str(exc)) from None


def run_dump(cfg: AppConfig, opts, model_input: np.ndarray | None) -> None:
    """Load the model in a worker, run one input, write the dump and / or the explanation; no OpenGL.
    `model_input`: the tensor handed to the model (input_shape), a 2D drawing, or None (a blank pad).
    A `--input` picture is read again once the model's input is known, unless the model takes the
    28 x 28 drawing as it is: a colour or larger model gets the picture, not the drawing made of it."""
    from convscope.engine.graph.dag_explain import explain_node
    from convscope.features.inference.handle import WorkerHandle

    handle = WorkerHandle(
        cfg.model, cfg.weights or None, card=cfg.card or None, device=cfg.device, hang_timeout=None
    )
    try:
        if not handle.start(cfg.worker_timeout):
            raise AppError(handle.error or f"model {cfg.model} did not load")
        picture = input_picture(opts)
        if picture is not None and not takes_drawing_as_is(handle.input_shape):
            model_input = picture_for_model(picture, handle.input_spec)
        x = model_input if model_input is not None else np.zeros((INPUT_SIZE, INPUT_SIZE), np.float32)
        x = np.asarray(x, np.float32)
        if x.ndim != 2 and x.shape != handle.input_shape:
            raise AppError(f"--input holds shape {x.shape}; {cfg.model} takes {handle.input_shape}")
        try:
            result = handle.infer_sync(x, timeout=cfg.worker_timeout)
        except (RuntimeError, TimeoutError, ValueError) as exc:
            raise AppError(str(exc)) from None
        dag = handle.spec
        weights = handle.wait_for_weights(cfg.worker_timeout) if opts.explain else None
        if opts.explain and weights is None:
            raise AppError(handle.error or "the model's weights did not arrive")
        node = explain_index(dag, *opts.explain) if opts.explain else None
    finally:
        handle.close()
    flat = result.activations
    if opts.dump_activations is not None:
        arrays = {layer.name: flat[layer.start : layer.stop].reshape(layer.shape) for layer in dag.layers}
        first = dag.layers[0]
        arrays["input"] = flat[first.start : first.stop].reshape(first.shape)  # what the model was handed
        arrays["probabilities"] = result.probabilities
        bad = nonfinite_layers(arrays)
        arrays["nonfinite"] = np.array(bad, dtype=str)
        atomic_write(opts.dump_activations, lambda f: np.savez(f, **arrays))
        if bad:
            print(
                f"convscope: warning: {opts.dump_activations}: {', '.join(bad)} hold inf or NaN",
                file=sys.stderr,
            )
    if node is not None:
        info = explain_node(dag, node, flat, weights).to_dict()
        text = json.dumps(info, indent=1, allow_nan=True)
        atomic_write(opts.explain_json, lambda f: f.write(text.encode()))


def offer_picture(scene: ExploreScene, opts) -> None:
    """`--input PICTURE` in the scene: the pad holds its drawing already (a grey model draws from it); the
    image panel gets the picture itself, which it feeds to a colour model once the worker describes it."""
    picture = input_picture(opts)
    if picture is not None and not scene.images.state.open_path(picture):
        raise AppError(scene.images.state.error or f"--input: cannot read {picture}")


def run_headless(cfg: AppConfig, opts, drawing: np.ndarray | None) -> None:
    width, height = opts.width or 1280, opts.height or 720
    try:
        ctx = create_headless()
    except GLVersionError as exc:
        raise AppError(str(exc)) from None
    scene = ExploreScene(cfg, drawing, cfg.ui_scale)
    offer_picture(scene, opts)
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
    offer_picture(scene, opts)
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
