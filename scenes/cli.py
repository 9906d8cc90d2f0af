"""The `convscope` command: parses the command line, loads the config and starts a window or a headless run.

    convscope [--model lenet|mlp] [--fullscreen] [--config FILE.toml]
    convscope --headless --frames N --width W --height H --screenshot OUT.png
              [--input DRAWING.png] [--dump-activations OUT.npz]
    convscope --kiosk [--config kiosk.toml] [--no-supervisor]
    convscope --kiosk --headless --frames N --screenshot OUT.png
    convscope --kiosk --soak MINUTES --report OUT.json [--headless]
    convscope --scene train [--dataset cifar10|mnist|digits] [--data-dir DIR]   (live training)
              [--data-mirror URL]   (download from an offline mirror instead of torchvision's URLs)
    convscope --scene train --headless --frames N --screenshot OUT.png

Every user mistake (unknown option, unreadable file, bad value) and every failure while running (no
OpenGL, the network not answering, a full disk) ends with one line on stderr that starts with
"convscope: error:" and exit status 2, never a traceback.  Output paths are checked here, before anything
starts (engine/files.check_output); the scenes write them through engine/files.atomic_write.
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
    p.add_argument("--model", choices=registry.names(), help="network to show first (default lenet)")
    p.add_argument(
        "--fullscreen", action="store_true", default=None, help="fullscreen on the primary monitor"
    )
    p.add_argument("--config", metavar="FILE.toml", help="settings file (see README)")
    p.add_argument(
        "--weights", metavar="FILE.safetensors", help="weights for --model instead of the shipped ones"
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
        "--input", metavar="DRAWING.png", help="start with this drawing on the pad (any size, any polarity)"
    )
    p.add_argument(
        "--dump-activations", metavar="OUT.npz", help="write the activations the render process received"
    )
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
    if opts.input or opts.dump_activations:
        raise UsageError("--kiosk takes no --input or --dump-activations (the pad belongs to the visitors)")
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
    if opts.headless and not opts.screenshot and not opts.dump_activations and opts.soak is None:
        raise UsageError("--headless needs --screenshot OUT.png and/or --dump-activations OUT.npz")
    opts.screenshot = _check_output(opts.screenshot, "--screenshot", IMAGE_SUFFIXES)
    opts.dump_activations = _check_output(opts.dump_activations, "--dump-activations", DUMP_SUFFIXES)
    opts.report = _check_output(opts.report, "--report", JSON_SUFFIXES)
    weights = None
    if opts.weights:
        if not Path(opts.weights).is_file():
            raise UsageError(f"--weights: cannot read {opts.weights}")
        weights = {opts.model or "lenet": str(Path(opts.weights).resolve())}
    overrides = dict(
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
            cfg = load_config(opts.config, **overrides)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if weights:
        cfg.weights.update(weights)
    if opts.no_vsync:
        cfg.vsync = False
    drawing = None
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
    from convscope.scenes.explore.run import AppError, run_headless, run_window

    try:
        if opts.scene == "train":
            from convscope.scenes.train.run import run_from_cli

            run_from_cli(cfg, opts)
            return 0
        if opts.kiosk:
            from convscope.scenes.kiosk.run import main as kiosk_main

            return kiosk_main(cfg, opts.kiosk_config, opts, argv)
        if opts.headless:
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
