"""KioskConfig: every setting of an unattended exhibit, with its default, loaded from the `[kiosk]`
table of the config file; plus the built-in English visitor texts.

One file configures both the app and the kiosk:

    model = "lenet"                  # AppConfig keys (engine/config.py) at the top level
    [kiosk]
    attract_after = 8                # KioskConfig keys
    exit_chord = "ctrl+alt+shift+q"
    [kiosk.text]                     # visitor text per layer, in the exhibit's language
    conv1 = "Six filters look for strokes..."
    [kiosk.strings]                  # the few words on the controls
    prompt = "Draw a digit"

Every mistake is a `KioskConfigError` whose message names the file, the line and the key
(`kiosk.toml:7: kiosk.attract_after: expected a number, got "soon"`); tomllib reports no line for
a well-formed file with a wrong value, so the line is found here by reading the text again.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import glfw
from convscope.engine.config import MAX_CONFIG_BYTES, AppConfig, ConfigError, load_config
from convscope.engine.files import read_regular

PANELS = ("pad", "guesses", "controls", "layer_text", "prompt", "captions", "explore")
BACKENDS = ("glfw", "sdl")

# The words on the screen, English built in; `[kiosk.strings]` replaces any of them.
STRINGS: dict[str, str] = {
    "title": "Draw a digit",
    "attract": "Touch the pad and draw a digit",
    "guess": "The network reads",
    "unsure": "draw a digit",  # where the reading goes while the pad is empty
    "clear": "Clear",
    "zoom_in": "+",
    "zoom_out": "-",
    "fit": "Fit",
    "reset": "Reset",
    "hint": "Drag to turn the network  ·  pinch or +/- to zoom  ·  tap a layer",
    "close": "Close",
    "starting": "Starting...",
    "restarting": "Restarting...",
    "pin": "Operator PIN",
}

# What each layer does, for visitors; `[kiosk.text]` replaces or adds entries.  Keys are layer names,
# or "model.layer" where the same name means something else in another network.
LAYER_TEXT: dict[str, str] = {
    "input": "What the network sees: your drawing shrunk to 28 x 28 pixels. Bright squares are ink.",
    "conv1": "Six filters slide over the picture. Each looks for one simple thing - a stroke in one "
    "direction, an edge - and lights up where it finds it.",
    "pool1": "Each map shrinks to half its size, keeping the strongest answer of every 2 x 2 patch, "
    "so a digit drawn a little to the side still looks the same.",
    "conv2": "Sixteen filters combine the strokes found below into bigger parts: corners, curves, "
    "crossings, loops.",
    "pool2": "Shrunk again: sixteen small maps that say roughly which parts are where.",
    "fc1": "120 nodes, each wired to every node below. Each one reacts to its own mix of parts.",
    "fc2": "100 nodes weigh those mixes up into evidence for whole digits.",
    "output": "One node per digit, 0 to 9. The brightest one is the network's answer - the brighter, "
    "the surer it is.",
    "mlp.fc1": "300 nodes, each looking at all 784 pixels at once, weighting every pixel by what it "
    "learned from 60,000 handwritten digits.",
    "mlp.fc2": "100 nodes combine the answers below into evidence for whole digits.",
}


class KioskConfigError(ConfigError):
    """A kiosk config file or value is invalid; the message names the file, line and key."""


@dataclass
class KioskConfig:
    # -- visitors ------------------------------------------------------------------------------
    attract_after: float = 8.0  # seconds with nobody at the exhibit before the network draws by itself
    reset_after: float = 45.0  # seconds without a touch before a visitor's session is reset
    panels: list[str] = field(
        default_factory=lambda: ["pad", "guesses", "controls", "layer_text", "prompt", "captions"]
    )
    # which panels show: any of PANELS; "explore" adds the full explorer panels (a staffed exhibit)
    control_mm: float = 10.0  # smallest edge of any touch target, in millimetres on the screen
    screen_dpi: float = 0.0  # pixels per inch of the screen; 0 = ask the monitor (96 when it will not say)
    language: str = "en"  # language at start, and of [kiosk.text] and [kiosk.strings]
    languages: list[str] = field(default_factory=lambda: ["en", "de"])  # the language button cycles these
    captions: dict[str, dict[str, str]] = field(default_factory=dict)  # language -> layer -> caption
    caption_s: float = 5.0  # seconds each layer's caption shows while attract mode tours the network
    font: str = ""  # a .ttf for scripts the built-in font lacks; "" = built-in (Latin-1)
    text: dict[str, str] = field(default_factory=dict)  # layer (or "model.layer") -> visitor text
    strings: dict[str, str] = field(default_factory=dict)  # STRINGS key -> word on the screen
    # -- attract mode --------------------------------------------------------------------------
    pen_speed: float = 1.3  # digit heights per second the pen travels
    orbit_speed: float = 5.0  # fastest turn of the attract camera, degrees per second
    orbit_yaw: float = 30.0  # degrees either side of the front the attract camera swings (maps never edge-on)
    brush_mm: float = 9.0  # width of a finger's stroke on the screen, mm (kept within MNIST-like widths)
    hold_digit: float = 2.5  # seconds a finished digit stays before the next one
    seed: int = 0  # order and jitter of the attract digits
    # -- the screen ----------------------------------------------------------------------------
    fullscreen: bool = True  # borderless, covering the monitor
    monitor: int = 0  # which monitor: 0 the primary, then in the system's order
    hide_cursor_after: float = 2.0  # seconds without pointer movement before the cursor hides; 0 = never
    backend: str = "glfw"  # window backend: "glfw", or "sdl" (pysdl2: pinch-zoom and two-finger pan)
    # -- the way out -----------------------------------------------------------------------------
    exit_chord: str = "ctrl+alt+shift+q"  # keys that close the kiosk; "" = none (then set a pin)
    pin: str = ""  # operator PIN (digits): typed then Enter, or on the keypad a long press opens; "" = off
    pin_hold: float = 3.0  # seconds to hold the top-right corner to open the PIN keypad
    # -- never down (scenes/kiosk/supervisor.py) -------------------------------------------------
    hang_after: float = 10.0  # seconds without a new frame before the supervisor restarts the app
    startup_grace: float = 60.0  # seconds a (re)started app has to show its first frame
    daily_restart: str = ""  # "HH:MM" local time the supervisor restarts the app every day; "" = never
    log_dir: str = ""  # "" = ~/.local/state/convscope (Windows: %LOCALAPPDATA%\convscope)
    log_max_bytes: int = 1_000_000  # one log file's size before it rotates
    log_backups: int = 5  # rotated log files kept

    def string(self, key: str) -> str:
        return self.strings.get(key) or STRINGS[key]

    def layer_text(self, model: str, layer: str) -> str | None:
        """The visitor text for a layer: the config's, else the built-in English; None when neither."""
        for table in (self.text, LAYER_TEXT):
            for key in (f"{model}.{layer}", layer):
                if table.get(key):
                    return table[key]
        return None

    @property
    def exit_keys(self) -> tuple[int, int] | None:
        """(GLFW modifier bits, GLFW key) of the exit chord; None when there is none."""
        return parse_chord(self.exit_chord) if self.exit_chord else None


# -- chords ----------------------------------------------------------------------------------------

_MODS = {
    "ctrl": glfw.MOD_CONTROL,
    "control": glfw.MOD_CONTROL,
    "alt": glfw.MOD_ALT,
    "shift": glfw.MOD_SHIFT,
    "super": glfw.MOD_SUPER,
    "win": glfw.MOD_SUPER,
    "cmd": glfw.MOD_SUPER,
}


def parse_chord(text: str) -> tuple[int, int]:
    """'ctrl+alt+shift+q' -> (modifier bits, GLFW key); ValueError with the reason otherwise."""
    parts = [p.strip().lower() for p in text.split("+")]
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"{text!r} is not modifiers+key, e.g. 'ctrl+alt+shift+q'")
    mods = 0
    for p in parts[:-1]:
        if p not in _MODS:
            raise ValueError(f"{p!r} in {text!r} is not a modifier (ctrl, alt, shift, super)")
        mods |= _MODS[p]
    key = getattr(glfw, f"KEY_{parts[-1].upper()}", None)
    if not isinstance(key, int) or parts[-1] in _MODS:
        raise ValueError(f"{parts[-1]!r} in {text!r} is not a key name (a letter, digit, f1..f12, ...)")
    if not mods & (glfw.MOD_CONTROL | glfw.MOD_ALT | glfw.MOD_SUPER):
        raise ValueError(f"{text!r} needs ctrl, alt or super, or a visitor could type it")
    return mods, key


# -- finding a key's line --------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)", text)
    return tuple(next(x for x in p if x) if any(p) else "" for p in parts)


def find_line(text: str, path: tuple[str, ...]) -> int | None:
    """1-based line where the TOML key `path` (e.g. ("kiosk", "attract_after")) is set; for a key
    inside an inline table, the line of the table's key; for a table, its header.  None if absent."""
    table: tuple[str, ...] = ()
    header_line = None
    for number, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m:
            table = _split_key(m.group(1))
            if table == path and header_line is None:
                header_line = number
            continue
        m = _KEY.match(line)
        if m:
            full = table + _split_key(m.group(1))
            if full == path or (len(full) < len(path) and path[: len(full)] == full):
                return number
    return header_line


# -- loading ---------------------------------------------------------------------------------------


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, list):
        return "a list of strings"
    return "a table of strings"


def _coerce(value: Any, default: Any) -> Any:
    """`value` converted to the default's type; TypeError when it does not fit."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if not ok:
        raise TypeError
    return value


def _check(cfg: KioskConfig) -> tuple[str, str] | None:
    """The first invalid value as (key, reason), or None."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            return f.name, f"must be a finite number, got {value}"
    if not cfg.attract_after > 0:
        return "attract_after", f"must be more than 0 seconds, got {cfg.attract_after}"
    if not cfg.reset_after > 0:
        return "reset_after", f"must be more than 0 seconds, got {cfg.reset_after}"
    for name in cfg.panels:
        if name not in PANELS:
            return "panels", f"{name!r} is not one of {', '.join(PANELS)}"
    if not 5.0 <= cfg.control_mm <= 40.0:
        return "control_mm", f"{cfg.control_mm} is outside 5..40 mm"
    if cfg.screen_dpi != 0 and not 40.0 <= cfg.screen_dpi <= 1200.0:
        return "screen_dpi", f"{cfg.screen_dpi} is outside 40..1200 (or 0 to ask the monitor)"
    if cfg.font and not Path(cfg.font).is_file():
        return "font", f"no font file at {cfg.font}"
    for lang in [cfg.language, *cfg.languages, *cfg.captions]:
        if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z]{2,4})?", lang):
            return "languages", f"{lang!r} is not a language code such as en, de, fr or pt-BR"
    if not cfg.caption_s > 0:
        return "caption_s", f"must be more than 0 seconds, got {cfg.caption_s}"
    for key in cfg.strings:
        if key not in STRINGS:
            return f"strings.{key}", f"unknown string (known: {', '.join(STRINGS)})"
    if not 0.05 <= cfg.pen_speed <= 20:
        return "pen_speed", f"{cfg.pen_speed} is outside 0.05..20 digit heights per second"
    if not 0 <= cfg.orbit_speed <= 90:
        return "orbit_speed", f"{cfg.orbit_speed} is outside 0..90 degrees per second"
    if not 0 <= cfg.orbit_yaw <= 60:
        return "orbit_yaw", f"{cfg.orbit_yaw} is outside 0..60 degrees"
    if not 3 <= cfg.brush_mm <= 30:
        return "brush_mm", f"{cfg.brush_mm} is outside 3..30 mm"
    if cfg.hold_digit < 0:
        return "hold_digit", f"must not be negative, got {cfg.hold_digit}"
    if cfg.monitor < 0:
        return "monitor", f"must be 0 or more, got {cfg.monitor}"
    if cfg.hide_cursor_after < 0:
        return "hide_cursor_after", f"must not be negative, got {cfg.hide_cursor_after}"
    if cfg.backend not in BACKENDS:
        return "backend", f"{cfg.backend!r} is not one of {', '.join(BACKENDS)}"
    if cfg.exit_chord:
        try:
            parse_chord(cfg.exit_chord)
        except ValueError as exc:
            return "exit_chord", str(exc)
    if cfg.pin and not (cfg.pin.isdigit() and 4 <= len(cfg.pin) <= 12):
        return "pin", "must be 4 to 12 digits (or empty for none)"
    if not cfg.exit_chord and not cfg.pin:
        return "exit_chord", "with no exit chord, set a pin, or the kiosk cannot be closed"
    if cfg.pin_hold <= 0:
        return "pin_hold", f"must be more than 0 seconds, got {cfg.pin_hold}"
    if not cfg.hang_after >= 1:
        return "hang_after", f"must be at least 1 second, got {cfg.hang_after}"
    if not cfg.startup_grace >= cfg.hang_after:
        return "startup_grace", f"must be at least hang_after ({cfg.hang_after}), got {cfg.startup_grace}"
    if cfg.daily_restart:
        from convscope.scenes.kiosk.supervisor import parse_daily

        try:
            parse_daily(cfg.daily_restart)
        except ValueError as exc:
            return "daily_restart", str(exc)
    if cfg.log_max_bytes < 10_000:
        return "log_max_bytes", f"must be at least 10000, got {cfg.log_max_bytes}"
    if cfg.log_backups < 1:
        return "log_backups", f"must be at least 1, got {cfg.log_backups}"
    return None


def kiosk_from_table(table: dict, where=lambda key: "") -> KioskConfig:
    """A KioskConfig from the `[kiosk]` table; `where(key)` gives "file:line: " for messages."""
    cfg = KioskConfig()
    defaults = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for key, value in table.items():
        if key == "captions":
            ok = isinstance(value, dict) and all(
                isinstance(t, dict) and all(isinstance(v, str) for v in t.values()) for t in value.values()
            )
            if not ok:
                raise KioskConfigError(
                    f"{where(key)}kiosk.captions: expected tables of strings, got {value!r}"
                )
            cfg.captions = {lang: dict(t) for lang, t in value.items()}
            continue
        if key not in defaults:
            raise KioskConfigError(
                f"{where(key)}unknown key kiosk.{key} (known: {', '.join(sorted(defaults))})"
            )
        try:
            setattr(cfg, key, _coerce(value, defaults[key]))
        except TypeError:
            raise KioskConfigError(
                f"{where(key)}kiosk.{key}: expected {_type_name(defaults[key])}, got {value!r}"
            ) from None
    problem = _check(cfg)
    if problem is not None:
        key, reason = problem
        raise KioskConfigError(f"{where(key)}kiosk.{key}: {reason}")
    return cfg


def load_kiosk_config(path: str | Path | None, **app_overrides) -> tuple[AppConfig, KioskConfig]:
    """The app's and the kiosk's settings from one file (defaults when `path` is None); the
    non-None `app_overrides` (command-line flags) win over the file's top-level keys."""
    if path is None:
        return load_config(None, **app_overrides), KioskConfig()
    path = Path(path)
    try:
        text = read_regular(path, limit=MAX_CONFIG_BYTES).decode("utf-8")  # never blocks on a FIFO
    except OSError as exc:
        raise KioskConfigError(f"cannot read config file: {exc}") from None
    except UnicodeDecodeError as exc:
        raise KioskConfigError(f"config file {path} is not UTF-8 text: {exc.reason}") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message already says "(at line N, column M)"
        raise KioskConfigError(f"{path}: not valid TOML: {exc}") from None

    def where(*key: str) -> str:
        line = find_line(text, key)
        return f"{path}:{line}: " if line else f"{path}: "

    table = values.pop("kiosk", {})
    if not isinstance(table, dict):
        raise KioskConfigError(f"{where('kiosk')}kiosk: expected a table ([kiosk]), got {table!r}")
    kiosk = kiosk_from_table(table, lambda key: where("kiosk", *key.split(".")))

    known = {f.name for f in dataclasses.fields(AppConfig)}
    for key in values:
        if key not in known:
            raise KioskConfigError(
                f"{where(key)}unknown key {key!r} (known: {', '.join(sorted(known))}, and the [kiosk] table)"
            )
    try:
        load_config(None, **values)  # the file's own values, so a mistake is pinned on the file's line
    except ConfigError as exc:
        message = str(exc)
        key = message.split(":", 1)[0].split("/", 1)[0].strip()
        raise KioskConfigError(f"{where(key) if key in values else f'{path}: '}{message}") from None
    return load_config(None, **{**values, **{k: v for k, v in app_overrides.items() if v is not None}}), kiosk
