"""AppConfig: every user setting with its default, loadable from a TOML file and overridden by the CLI.

Precedence: defaults < `--config FILE.toml` < command-line flags.  Unknown keys and wrong types
are errors that name the key, so a typo in a kiosk's config file never goes unnoticed.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from convscope.engine.files import read_regular

MAX_CONFIG_BYTES = 1 << 20  # a settings file of a megabyte is not one


MAX_WORKER_TIMEOUT_S = 3600.0  # an hour: a worker that needs longer to start is stuck, not slow


class ConfigError(ValueError):
    """A config file or value is unreadable or invalid; the message names the file and key."""


# A model read from a file alone (models/formats.py): named by the file, with no :NAME.
_PROGRAM_SUFFIXES = (".pt2", ".onnx")


def _user_model(name: str) -> bool:
    """FILE.py:NAME, package.module:NAME or a FILE.pt2 / FILE.onnx: the worker says if it loads."""
    return ":" in name or name.lower().endswith(_PROGRAM_SUFFIXES)


# The networks `model` may name.  The engine knows no particular network: whoever does (the scenes,
# from models/registry.py) says which with set_model_names; until then any name passes here.
_model_names: tuple[str, ...] = ()


def set_model_names(names) -> None:
    global _model_names
    _model_names = tuple(names)


@dataclass
class AppConfig:
    model: str = "lenet"  # network shown first: a registry name, FILE.py:NAME, pkg.mod:NAME, FILE.pt2/.onnx
    width: int = 1600  # window size in screen coordinates (pixels on a non-HiDPI screen)
    height: int = 900
    fullscreen: bool = False  # fullscreen on the primary monitor
    vsync: bool = True  # lock to the display's refresh rate; off for benchmarks
    show_frame_time: bool = False  # frame-time overlay in a corner
    colormap: str = "harley"  # node colormap: "harley" (the paper's rainbow variant) or "viridis"
    normalize: str = "layer"  # colour range per "layer" or "global" over the network
    ui_scale: float = 1.0  # scales ImGui fonts and widgets (touch screens want 1.5 - 2)
    pad_size: int = 280  # drawing pad edge in pixels (>= 280: ten pad pixels per network pixel)
    brush: float = 18.0  # default pen radius in pad pixels
    weights: dict[str, str] = field(default_factory=dict)  # model name -> safetensors path override
    data_dir: str = ""  # torchvision data root; the explorer's morph offers MNIST test digits from it
    worker_timeout: float = 60.0  # seconds to wait for the worker to load a model before reporting failure
    device: str = "auto"  # where the worker runs the model: auto (CUDA, else MPS, else CPU), cpu, cuda, mps
    # Model card fields for `model` (input_shape, normalize or mean + std, classes), as plain values;
    # the scenes check them (models/card.py): they override the card beside the model file.
    card: dict = field(default_factory=dict)

    def validate(self) -> AppConfig:
        if _model_names and self.model not in _model_names and not _user_model(self.model):
            raise ConfigError(f"model: {self.model!r} is not one of {', '.join(map(repr, _model_names))}")
        if self.colormap not in ("harley", "viridis", "grayscale"):
            raise ConfigError(f"colormap: {self.colormap!r} is not one of 'harley', 'viridis', 'grayscale'")
        if self.normalize not in ("layer", "global"):
            raise ConfigError(f"normalize: {self.normalize!r} is not one of 'layer', 'global'")
        if not (64 <= self.width <= 16384 and 64 <= self.height <= 16384):
            raise ConfigError(f"width/height: {self.width}x{self.height} is outside 64..16384")
        if not 0.5 <= self.ui_scale <= 4.0:
            raise ConfigError(f"ui_scale: {self.ui_scale} is outside 0.5..4")
        if not 112 <= self.pad_size <= 2048:
            raise ConfigError(f"pad_size: {self.pad_size} is outside 112..2048")
        if not 1.0 <= self.brush <= self.pad_size / 4:
            raise ConfigError(f"brush: {self.brush} is outside 1..{self.pad_size / 4}")
        # nan fails every comparison: written this way round, it is refused like any value out of range.
        if not 1.0 <= self.worker_timeout <= MAX_WORKER_TIMEOUT_S:
            raise ConfigError(
                f"worker_timeout: {self.worker_timeout} is outside 1..{MAX_WORKER_TIMEOUT_S:g} s"
            )
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"device: {self.device!r} is not one of 'auto', 'cpu', 'cuda', 'mps'")
        for name, path in self.weights.items():
            if name not in ("lenet", "mlp") and not _user_model(name):
                raise ConfigError(f"weights: {name!r} is not one of 'lenet', 'mlp'")
            if not Path(path).is_file():  # also refuses a FIFO or a device: the worker would block on it
                raise ConfigError(f"weights: cannot read {path} (for {name})")
        if self.data_dir and not Path(self.data_dir).is_dir():
            raise ConfigError(f"data_dir: {self.data_dir} is not a folder")
        return self


def _check_type(name: str, value, default):
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, dict) and name == "card":
        ok = isinstance(value, dict)  # numbers, lists and strings: models/card.py checks each field
    elif isinstance(default, dict):
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{name}: expected {type(default).__name__}, got {value!r}")
    return value


def load_config(path: str | Path | None = None, skip: frozenset[str] = frozenset(), **overrides) -> AppConfig:
    """Defaults, then the TOML file (if any), then the non-None `overrides`.  Keys of the file in `skip`
    are left to the caller (the model card's fields, read by the scenes)."""
    cfg = AppConfig()
    defaults = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    values: dict = {}
    if path is not None:
        path = Path(path)
        try:
            # A regular file only, read with a timeout: `--config` on a FIFO must not hang the start.
            values = tomllib.loads(read_regular(path, limit=MAX_CONFIG_BYTES).decode("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values = {k: v for k, v in values.items() if k not in skip}
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key, value in values.items():
        if key not in defaults:
            where = f" in {path}" if path else ""
            raise ConfigError(f"unknown config key {key!r}{where} (known: {', '.join(sorted(defaults))})")
        setattr(cfg, key, _check_type(key, value, defaults[key]))
    return cfg.validate()
