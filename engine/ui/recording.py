"""Input recordings: every pointer and finger event of a window written down, and played back.

`InputRecorder` writes the events an `InputCollector` (engine/ui/input.py) receives from its window,
with their times, as JSON lines, and each snapshot as a frame mark; keys and typed text are not
recorded (an operator's PIN stays out of the file).  `InputReplay` reads a recording back and feeds it,
frame by frame, into a collector's `on_*` methods, the same path a window's events take, scaled to the
window it plays in.  A visitor's minute on the exhibit's own screen becomes a regression test this way
(docs/KIOSK.md says how to record one).
"""

from __future__ import annotations

import json
import time as _time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from convscope.engine.ui.input import InputCollector

# The collector's event sinks a recording holds: the pointer and the fingers.
RECORDED = ("cursor_pos", "cursor_enter", "mouse_button", "scroll", "touch_down", "touch_move", "touch_up")

RECORDING_VERSION = 1


class InputRecorder:
    """Writes the pointer and finger events of one collector to `path` as JSON lines:

        {"convscope_input": 1, "window_size": [w, h], "framebuffer_size": [fw, fh]}   the header
        {"t": 1.234, "e": "touch_down", "a": [0, 412.0, 300.5]}   an event: seconds, on_<e>(*a)
        {"t": 1.250, "frames": 3}                                 three snapshots (frames) here

    Empty frames are counted, not written one by one, so an idle hour is a few lines.  Whoever
    creates it closes it."""

    def __init__(self, path: str | Path, window_size=(0, 0), framebuffer_size=(0, 0)) -> None:
        self.path = Path(path)
        self._file = self.path.open("w", encoding="utf-8")
        self._t0 = _time.monotonic()
        self._frames = 0  # snapshots since the last line
        self._dirty = False  # events written since the last frame mark
        self.events = 0
        header = {
            "convscope_input": RECORDING_VERSION,
            "window_size": [int(v) for v in window_size],
            "framebuffer_size": [int(v) for v in framebuffer_size],
        }
        self._file.write(json.dumps(header) + "\n")

    def _now(self) -> float:
        return round(_time.monotonic() - self._t0, 4)

    def _flush_frames(self) -> None:
        if self._frames:
            self._file.write(json.dumps({"t": self._now(), "frames": self._frames}) + "\n")
            self._frames = 0

    def event(self, name: str, args: tuple) -> None:
        self._flush_frames()
        values = [
            v if isinstance(v, bool) else (round(v, 3) if isinstance(v, float) else int(v)) for v in args
        ]
        self._file.write(json.dumps({"t": self._now(), "e": name, "a": values}) + "\n")
        self.events += 1
        self._dirty = True

    def frame(self) -> None:
        self._frames += 1
        if self._dirty:  # a frame with events: on disk now, so a crash loses at most the idle tail
            self._flush_frames()
            self._file.flush()
            self._dirty = False

    def close(self) -> None:
        if not self._file.closed:
            self._flush_frames()
            self._file.close()


class InputReplay:
    """A recording read back: `frames[k]` is the events before snapshot k.  Coordinates are scaled
    to `window_size` when the recording was made in a window of another size."""

    def __init__(self, path: str | Path, window_size: tuple[int, int] | None = None) -> None:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if header.get("convscope_input") != RECORDING_VERSION:
            raise ValueError(f"{path}: not a convscope input recording (version {RECORDING_VERSION})")
        self.recorded_size = tuple(header.get("window_size") or (0, 0))
        self.frames: list[list[tuple[str, list]]] = []
        current: list[tuple[str, list]] = []
        for number, line in enumerate(lines[1:], start=2):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON: {exc.msg}") from None
            if "frames" in item:
                self.frames.append(current)
                self.frames.extend([] for _ in range(int(item["frames"]) - 1))
                current = []
            elif item.get("e") in RECORDED:
                current.append((item["e"], list(item["a"])))
            else:
                raise ValueError(f"{path}:{number}: unknown event {item.get('e')!r}")
        if current:
            self.frames.append(current)
        self.scale = (1.0, 1.0)
        if window_size and all(self.recorded_size):
            self.scale = (window_size[0] / self.recorded_size[0], window_size[1] / self.recorded_size[1])
        self.position = 0  # frames played

    @property
    def done(self) -> bool:
        return self.position >= len(self.frames)

    def _scaled(self, name: str, args: list) -> list:
        sx, sy = self.scale
        if name == "cursor_pos":
            return [args[0] * sx, args[1] * sy]
        if name.startswith("touch_"):
            return [args[0], args[1] * sx, args[2] * sy]
        return args

    def feed(self, collector: InputCollector) -> None:
        """The next frame's events into `collector`, as a window would hand them in."""
        if self.done:
            return
        for name, args in self.frames[self.position]:
            getattr(collector, f"on_{name}")(*self._scaled(name, args))
        self.position += 1


# The collector's event sinks a recording holds: the pointer and the fingers.
RECORDED = ("cursor_pos", "cursor_enter", "mouse_button", "scroll", "touch_down", "touch_move", "touch_up")
