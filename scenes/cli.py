"""The `convscope` command: parses the command line, loads the config and starts a window or a headless run.

    convscope [--model lenet|mlp|FILE.py:NAME|package.module:NAME|FILE.pt2|FILE.onnx] [--weights FILE]
              [--fullscreen] [--config FILE.toml] [--input-shape C,H,W] [--normalize MEAN[,..]/STD[,..]]
              [--classes NAMES] [--device auto|cpu|cuda|mps]
    convscope --headless --frames N --width W --height H --screenshot OUT.png
              [--input PICTURE.png] [--dump-activations OUT.npz]
    convscope --model FILE.py:NAME --headless [--input X.npy|PICTURE.png] [--dump-activations OUT.npz]
              [--explain LAYER:INDEX --explain-json OUT.json]   (no window, no OpenGL)
    convscope --kiosk [--config kiosk.toml] [--no-supervisor]
    convscope --kiosk --headless --frames N --screenshot OUT.png
    convscope --kiosk --soak MINUTES --report OUT.json [--headless]
    convscope --scene train [--dataset cifar10|mnist|digits] [--data-dir DIR]   (live training)
              [--data-mirror URL]   (download from an offline mirror instead of torchvision's URLs)
    convscope --scene train --headless --frames N --screenshot OUT.png

A user's model takes its input shape, normalisation, class names and weights from a model card: FILE.toml
beside FILE.py (or beside FILE.pt2 / FILE.onnx, whose input shape otherwise comes from the file itself), the
card fields of the --config file, then these flags, each overriding the one before (models/card.py).
`--input PICTURE` is checked here and read twice: as a drawing for the pad, and, once the worker says
what the model takes, as that model's tensor (scenes/explore/run.py).  Every user mistake (unknown
option, unreadable file, bad value, a model that does not load) and every failure while running (no
OpenGL, the network not answering, a full disk) ends with one line on stderr that starts with
"convscope: error:" and exit status 2, never a traceback.  Output paths are checked here, before
anything starts (engine/files.check_output); the scenes write them through engine/files.atomic_write.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convscope.models import registry

EXIT_USAGE = 2  # every failure the user sees: a mistake on the command line or one found while running
MAX_SOAK_MINUTES = 7 * 24 * 60  # a week: longer is a typo, and the report holds a bucket per minute
MAX_FRAMES = 10_000_000  # about two days at 60 frames/s


class UsageError(Exception):
    """A command-line mistake: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="convscope", description="See every node of a convolutional network work, in 3D.")
    p.add_argument(
        "--model",
        metavar="NAME",
        help=f"network to show first: {' or '.join(registry.names())} (default lenet), or your own as "
        "FILE.py:NAME or package.module:NAME (an nn.Module class or a function returning one), or a "
        "FILE.pt2 (torch.export) / FILE.onnx read without its source",
    )
    p.add_argument(
        "--fullscreen", action="store_true", default=None, help="fullscreen on the primary monitor"
    )
    p.add_argument("--config", metavar="FILE.toml", help="settings file (see README)")
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="weights for --model: .safetensors, or a .pt / .pth state dict (read with weights_only)",
    )
    p.add_argument("--input-shape", metavar="C,H,W", help="what --model takes, without the batch dimension")
    p.add_argument(
        "--normalize", metavar="MEAN[,MEAN..]/STD[,STD..]", help="per-channel normalisation of the input"
    )
    p.add_argument("--classes", metavar="NAMES", help="class names: a file (one a line) or comma-separated")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda", "mps"], help="where the model runs (default auto)"
    )
    p.add_argument("--colormap", choices=["harley", "viridis", "grayscale"], help="node colormap")
    p.add_argument("--frame-time", action="store_true", default=None, help="show the frame-time overlay")
    p.add_argument("--no-vsync", action="store_true", help="do not wait for the display refresh")
    p.add_argument("--headless", action="store_true", help="render offscreen through EGL, no window")
    p.add_argument("--frames", type=int, metavar="N", help="render N frames, then exit")
    p.add_argument("--width", type=int, metavar="W", help="window or image width in pixels")
    p.add_argument("--height", type=int, metavar="H", help="window or image height in pixels")
    p.add_argument("--screenshot", metavar="OUT.png", help="write the last frame as PNG")
    p.add_argument(
        "--input",
        metavar="PICTURE.png",
        help="start with this picture (any size): on the pad as a drawing (any polarity), and in the Image "
        "panel for a colour model; with --headless and no --screenshot also X.npy: the tensor handed to "
        "the model as it is (C,H,W, already normalised)",
    )
    p.add_argument(
        "--dump-activations",
        metavar="OUT.npz",
        help="write the activations the render process received, one array per layer (module path)",
    )
    p.add_argument(
        "--explain",
        metavar="LAYER:INDEX",
        help="with --explain-json: one node's calculation (INDEX or C,Y,X)",
    )
    p.add_argument("--explain-json", metavar="OUT.json", help="where --explain writes its numbers")
    k = p.add_argument_group("kiosk (docs/KIOSK.md)")
    k.add_argument("--kiosk", action="store_true", help="unattended exhibit: locked fullscreen, attract mode")
    k.add_argument("--no-supervisor", action="store_true", help="with --kiosk: run the app unsupervised")
    k.add_argument("--soak", type=float, metavar="MINUTES", help="with --kiosk: attract + synthetic visitors")
    k.add_argument("--report", metavar="OUT.json", help="where --soak writes its report")
    k.add_argument("--record-input", metavar="FILE", help="with --kiosk: record pointer and finger events")
    k.add_argument("--replay-input", metavar="FILE", help="with --kiosk: play a recording's events back")
    t = p.add_argument_group("live training (scenes/train)")
    t.add_argument(
        "--scene", choices=["explore", "train"], default="explore", help="scene to open (default explore)"
    )
    t.add_argument(
        "--dataset", choices=["cifar10", "mnist", "digits"], help="with --scene train (default cifar10)"
    )
    t.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data: what --scene train trains on; the explorer's morph takes MNIST test digits from it",
    )
    t.add_argument(
        "--data-mirror",
        metavar="URL",
        help="with --scene train: download a missing data set into --data-dir from this base URL (http(s)://,"
        " file:// or a folder holding torchvision's file names, e.g. cifar-10-python.tar.gz) instead of the"
        " official ones",
    )
    return p


def _check_output(path: str | None, flag: str, suffixes: tuple[str, ...]) -> Path | None:
    """Every output is tested before the run starts: a long run never ends in a write that cannot work."""
    from convscope.engine.files import OutputError, check_output

    if path is None:
        return None
    try:
        return check_output(path, flag, suffixes)
    except OutputError as exc:
        raise UsageError(str(exc)) from None


def _check_kiosk_options(opts) -> None:
    if not opts.kiosk:
        for flag, value in (
            ("--soak", opts.soak),
            ("--report", opts.report),
            ("--no-supervisor", opts.no_supervisor),
            ("--record-input", opts.record_input),
            ("--replay-input", opts.replay_input),
        ):
            if value:
                raise UsageError(f"{flag} needs --kiosk")
        return
    if getattr(opts, "scene", "explore") != "explore":
        raise UsageError("--kiosk shows the explorer; it takes no --scene")
    if opts.soak is not None and not 0 < opts.soak <= MAX_SOAK_MINUTES:
        raise UsageError(
            f"--soak must be more than 0 and at most {MAX_SOAK_MINUTES} minutes, got {opts.soak:g}"
        )
    if (opts.soak is None) != (opts.report is None):
        raise UsageError("--soak MINUTES and --report OUT.json go together")
    if opts.input or opts.dump_activations or opts.explain:
        raise UsageError(
            "--kiosk takes no --input, --dump-activations or --explain (the pad belongs to the visitors)"
        )
    if opts.headless and opts.soak is None and not opts.screenshot:
        raise UsageError("--kiosk --headless needs --screenshot OUT.png (or --soak)")
    if opts.soak is not None and (opts.record_input or opts.replay_input):
        raise UsageError("--soak brings its own visitors; it takes no --record-input or --replay-input")
    if opts.replay_input and not Path(opts.replay_input).is_file():
        raise UsageError(f"--replay-input: no file at {opts.replay_input}")


def _check_train_options(opts) -> None:
    if opts.scene != "train":
        if opts.dataset:
            raise UsageError("--dataset needs --scene train")
        if opts.data_mirror:
            raise UsageError("--data-mirror needs --scene train")
        if opts.data_dir and not Path(opts.data_dir).is_dir():
            raise UsageError(f"--data-dir: {opts.data_dir} is not a folder")
        return
    for flag, value in (
        ("--kiosk", opts.kiosk),
        ("--model", opts.model),
        ("--weights", opts.weights),
        ("--input", opts.input),
        ("--dump-activations", opts.dump_activations),
        ("--input-shape", opts.input_shape),
        ("--normalize", opts.normalize),
        ("--classes", opts.classes),
        ("--device", opts.device),
        ("--explain", opts.explain),
    ):
        if value:
            raise UsageError(f"--scene train takes no {flag}")
    if opts.data_dir and Path(opts.data_dir).exists() and not Path(opts.data_dir).is_dir():
        raise UsageError(f"--data-dir: {opts.data_dir} is not a folder")
    if opts.data_mirror:
        opts.data_mirror = _mirror_url(opts.data_mirror)
        if not opts.data_dir:
            raise UsageError("--data-mirror needs --data-dir DIR (the folder the data set is downloaded to)")


def _mirror_url(value: str) -> str:
    """--data-mirror as a base URL: http(s):// and file:// as given, an existing folder as a file:// URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        return value
    if parts.scheme == "file" and parts.path:
        return value
    if not parts.scheme and Path(value).is_dir():
        return Path(value).resolve().as_uri()
    raise UsageError(f"--data-mirror: {value} is not an http(s):// or file:// URL, nor a folder")


def _check_model(model: str | None) -> str | None:
    """A shipped name, FILE.py:NAME / package.module:NAME, or a FILE.pt2 / FILE.onnx (the file must
    exist).  Returns the card file beside FILE.py (or the .pt2 / .onnx file), if any."""
    from convscope.models.card import card_beside, is_program_file

    if model is None or registry.is_shipped(model):
        return None
    if is_program_file(model):  # a program read without its source: no :NAME
        if not Path(model).is_file():
            raise UsageError(f"--model: no file {model}")
        return card_beside(model)
    where, sep, name = model.rpartition(":")
    if not sep or not where or not name:
        raise UsageError(
            f"--model: {model!r} is neither a shipped network ({', '.join(registry.names())}) "
            "nor FILE.py:NAME / package.module:NAME / FILE.pt2 / FILE.onnx"
        )
    if (where.endswith(".py") or "/" in where) and not Path(where).is_file():
        raise UsageError(f"--model: no file {where}")
    return card_beside(model)


def _parse_explain(text: str | None) -> tuple[str, tuple[int, ...]] | None:
    """'LAYER:INDEX' or 'LAYER:C,Y,X' -> (layer, index tuple); the layer is checked once the model is."""
    if text is None:
        return None
    layer, sep, index = text.rpartition(":")
    try:
        idx = tuple(int(s) for s in index.split(","))
    except ValueError:
        idx = ()
    if not sep or not layer or len(idx) not in (1, 3) or any(i < 0 for i in idx):
        raise UsageError(
            f"--explain: expected LAYER:INDEX or LAYER:C,Y,X of non-negative integers, got {text!r}"
        )
    return layer, idx


def _config_card(path: str | None) -> tuple[dict, frozenset[str]]:
    """The model card fields of the --config file (input_shape, normalize, mean, std, classes, and weights
    when it names one file), and the keys the settings loader should leave alone."""
    import tomllib

    from convscope.models.card import KEYS

    if path is None or not Path(path).is_file():
        return {}, frozenset()  # load_config reports an unreadable file
    try:
        values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}, frozenset()  # likewise
    # `weights` as a table and `normalize` without a "/" are the settings' own keys (weights per shipped
    # model; the colour range per layer or global), not card fields.
    card = {
        k: v
        for k, v in values.items()
        if k in KEYS
        and not (k == "weights" and isinstance(v, dict))
        and not (k == "normalize" and "/" not in str(v))
    }
    return card, frozenset(card)


def _model_card(cfg, opts, file_card: dict, beside) -> dict:
    """The card fields the worker gets for cfg.model: the --config file's, then the flags' (each field
    checked here, so a mistake is a usage error before anything starts); the card beside the model file
    is read by the worker and checked here too."""
    from convscope.models import card as C

    try:
        own = C.read_card(beside) if beside is not None else None
        base = Path(opts.config).parent if opts.config else None
        parts = [own, C.parse_card(file_card, f"config {opts.config}", base) if file_card else None]
        if cfg.card:
            parts.append(C.parse_card(cfg.card, f"config {opts.config}: card", base))
        flags = C.ModelCard(
            input_shape=C.parse_shape(opts.input_shape, "--input-shape") if opts.input_shape else None,
            classes=C.parse_classes(opts.classes, None, "--classes") if opts.classes else None,
        )
        if opts.normalize:
            mean, std = C.parse_normalize(opts.normalize, "--normalize")
            flags = C.merge(flags, C.ModelCard(mean=mean, std=std))
        parts.append(flags)
        merged = C.merge(*parts)
        C.check_against(merged)
        if merged.weights and cfg.model not in cfg.weights:
            cfg.weights[cfg.model] = merged.weights
    except C.CardError as exc:
        raise UsageError(str(exc)) from None
    requested = C.merge(*parts[1:])  # what the worker adds to the card it reads itself
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in requested.to_dict().items()}


def _read_tensor(path: str):
    """A model input saved with numpy.save: float, finite, (C, H, W) or (N,)."""
    import numpy as np

    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--input: cannot read {path}: {exc}") from None
    if x.dtype.kind not in "fiu" or x.ndim not in (1, 3) or not np.isfinite(x).all():
        raise UsageError(
            f"--input: {path} holds {x.dtype} {x.shape}; expected finite numbers shaped C,H,W or N"
        )
    return x.astype(np.float32)


def parse(argv: list[str] | None = None):
    """Parse and check the command line; returns (options, AppConfig, initial drawing or None)."""
    from convscope.engine.config import ConfigError, load_config
    from convscope.engine.files import DUMP_SUFFIXES, IMAGE_SUFFIXES, JSON_SUFFIXES
    from convscope.scenes.explore.preprocess import InputImageError, image_file_to_input

    opts = build_parser().parse_args(argv)
    if opts.frames is not None and not 1 <= opts.frames <= MAX_FRAMES:
        raise UsageError(f"--frames must be 1 to {MAX_FRAMES}, got {opts.frames}")
    _check_kiosk_options(opts)
    _check_train_options(opts)
    if (opts.explain is None) != (opts.explain_json is None):
        raise UsageError("--explain LAYER:INDEX and --explain-json OUT.json go together")
    if opts.explain and not opts.headless:
        raise UsageError("--explain needs --headless")
    outputs = opts.screenshot or opts.dump_activations or opts.explain
    if opts.headless and not outputs and opts.soak is None:
        raise UsageError(
            "--headless needs --screenshot OUT.png, --dump-activations OUT.npz and/or --explain-json OUT.json"
        )
    opts.screenshot = _check_output(opts.screenshot, "--screenshot", IMAGE_SUFFIXES)
    opts.dump_activations = _check_output(opts.dump_activations, "--dump-activations", DUMP_SUFFIXES)
    opts.explain_json = _check_output(opts.explain_json, "--explain-json", JSON_SUFFIXES)
    opts.report = _check_output(opts.report, "--report", JSON_SUFFIXES)
    opts.explain = _parse_explain(opts.explain)
    model_check = _check_model(opts.model)
    weights = None
    if opts.weights:
        if not Path(opts.weights).is_file():
            raise UsageError(f"--weights: cannot read {opts.weights}")
        if Path(opts.weights).suffix.lower() not in (".safetensors", ".pt", ".pth"):
            raise UsageError(f"--weights: {opts.weights} is not .safetensors, .pt or .pth")
        weights = {opts.model or "lenet": str(Path(opts.weights).resolve())}
    file_card, skip = _config_card(opts.config)
    overrides = dict(
        device=opts.device,
        model=opts.model,
        fullscreen=opts.fullscreen,
        colormap=opts.colormap,
        show_frame_time=opts.frame_time,
        width=opts.width,
        height=opts.height,
        data_dir=opts.data_dir if opts.scene != "train" else None,
    )
    opts.kiosk_config = None
    try:
        if opts.kiosk:
            from convscope.scenes.kiosk.config import (
                load_kiosk_config,  # the file's [kiosk] table, errors with lines
            )

            cfg, opts.kiosk_config = load_kiosk_config(opts.config, **overrides)
        else:
            cfg = load_config(opts.config, skip=skip, **overrides)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if weights:
        cfg.weights.update(weights)
    if opts.scene != "train":
        cfg.card = _model_card(cfg, opts, file_card, model_check)
    drawing = None
    if opts.input and Path(opts.input).suffix.lower() == ".npy":
        if not opts.headless or opts.screenshot:
            # the scene feeds the model from its pad or image panel, which hold pictures, not tensors
            raise UsageError("--input X.npy (a model input tensor) needs --headless without --screenshot")
        return opts, cfg, _read_tensor(opts.input)
    if opts.no_vsync:
        cfg.vsync = False
    if opts.input:
        try:
            drawing = image_file_to_input(opts.input)
        except InputImageError as exc:
            raise UsageError(str(exc)) from None
    return opts, cfg, drawing


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        opts, cfg, drawing = parse(argv)
    except UsageError as exc:
        print(f"convscope: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from convscope.engine.files import OutputError
    from convscope.scenes.explore.run import AppError, run_dump, run_headless, run_window

    try:
        if opts.scene == "train":
            from convscope.scenes.train.run import run_from_cli

            run_from_cli(cfg, opts)
            return 0
        if opts.kiosk:
            from convscope.scenes.kiosk.run import main as kiosk_main

            return kiosk_main(cfg, opts.kiosk_config, opts, argv)
        if opts.headless and not opts.screenshot:
            run_dump(cfg, opts, drawing)  # activations and explanations need no window and no OpenGL
        elif opts.headless:
            run_headless(cfg, opts, drawing)
        else:
            run_window(cfg, opts, drawing)
    except (AppError, OutputError) as exc:
        print(f"convscope: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
