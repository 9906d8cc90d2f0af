"""Attract mode: the network draws digits by itself while the camera slowly turns around it.

A pen travels along the project's own stroke paths (strokes.json: digits 0-9, a few hand-made
variants each) at handwriting speed, through the very `PadState` calls a visitor's finger makes
(`begin_stroke` / `stroke_to` / `end_stroke`), so the worker sees each frame's drawing and the
activations follow the pen live.  A finished digit stays `hold_digit` seconds, then the pad clears
and the next one starts; the digits come in a shuffled order with a little size, slant and
position jitter, seeded, so no two minutes look the same but every run is reproducible.

Stroke paths: unit box, x right, y down; a centripetal Catmull-Rom spline passes through the
control points (no cusps or loops the author did not draw); a point given twice is a sharp corner.
On the pad the box maps to the middle 20 / 28 (MNIST's digit box), with the jitter on top.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.scenes.explore.pad import PadState

DIGIT_BOX = (4.0 / 28.0, 24.0 / 28.0)  # where the unit box lands on the pad: MNIST's 20x20 in 28x28
SAMPLE_STEP = 0.01  # spacing of the sampled stroke points, in digit heights

Strokes = list[np.ndarray]  # one digit: its strokes, each (K, 2) points in the unit box


def _catmull_rom(points: np.ndarray, step: float) -> np.ndarray:
    """Centripetal Catmull-Rom through `points` (K, 2), sampled about every `step` along the curve."""
    if len(points) < 3:
        p0, p1 = points[0], points[-1]
        n = max(int(np.linalg.norm(p1 - p0) / step), 1)
        return p0 + (p1 - p0) * np.linspace(0.0, 1.0, n + 1)[:, None]
    # Mirror the ends so the curve starts and ends at the first and last points.
    ext = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    out = [points[:1]]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        t0 = 0.0
        t1 = t0 + max(np.linalg.norm(p1 - p0), 1e-6) ** 0.5
        t2 = t1 + max(np.linalg.norm(p2 - p1), 1e-6) ** 0.5
        t3 = t2 + max(np.linalg.norm(p3 - p2), 1e-6) ** 0.5
        n = max(int(math.ceil(np.linalg.norm(p2 - p1) * 1.3 / step)), 1)
        t = np.linspace(t1, t2, n + 1)[1:, None]
        a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    return np.vstack(out)


def sample_stroke(points, step: float = SAMPLE_STEP) -> np.ndarray:
    """A stroke's control points -> a dense polyline (M, 2); repeated points become sharp corners."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    pieces, start = [], 0
    for i in range(1, len(pts)):
        if np.allclose(pts[i], pts[i - 1]):
            pieces.append(pts[start:i])
            start = i
    pieces.append(pts[start:])
    dense = [_catmull_rom(p, step) for p in pieces if len(p) >= 1]
    return np.vstack([d if k == 0 else d[1:] for k, d in enumerate(dense)])


def load_strokes(path: str | Path | None = None) -> dict[str, list[Strokes]]:
    """digit ("0".."9") -> variants -> strokes as dense polylines in the unit box."""
    if path is None:
        text = resources.files("convscope.scenes.kiosk").joinpath("strokes.json").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text)
    return {
        digit: [[sample_stroke(s) for s in variant] for variant in variants]
        for digit, variants in data["digits"].items()
    }


def place(
    strokes: Strokes, pad_size: int, scale: float = 1.0, slant: float = 0.0, shift=(0.0, 0.0)
) -> Strokes:
    """Unit-box strokes -> pad pixel coordinates: MNIST's digit box, then `scale` about the centre,
    `slant` (x shear per unit of height, positive leans right) and `shift` (pad fractions)."""
    lo, hi = DIGIT_BOX
    out = []
    for s in strokes:
        x, y = s[:, 0] - 0.5, s[:, 1] - 0.5
        x = x * scale - slant * y * scale
        y = y * scale
        px = (0.5 + shift[0] + x * (hi - lo)) * pad_size
        py = (0.5 + shift[1] + y * (hi - lo)) * pad_size
        out.append(np.c_[px, py])
    return out


def stroke_length(strokes: Strokes) -> float:
    return float(sum(np.linalg.norm(np.diff(s, axis=0), axis=1).sum() for s in strokes))


# Phases of one digit.
DRAW, LIFT, HOLD, BLANK = "draw", "lift", "hold", "blank"
LIFT_S = 0.18  # pen up between two strokes of a digit
BLANK_S = 0.5  # empty pad between two digits


@dataclass
class Attract:
    """Drives `pad` (and turns `camera`) while `active`; `update(dt)` once per frame."""

    pad: PadState
    camera: OrbitCamera
    library: dict[str, list[Strokes]] = field(default_factory=load_strokes)
    pen_speed: float = 1.3  # digit heights per second
    orbit_speed: float = 5.0  # degrees per second around the target
    hold_digit: float = 2.5  # seconds a finished digit stays
    seed: int = 0
    active: bool = False
    digit: str | None = None  # the digit being drawn (or held)
    pen: tuple[float, float] | None = None  # pad coordinates of the pen tip while it touches the pad
    digits_drawn: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._queue: list[str] = []
        self._strokes: Strokes = []
        self._stroke = 0  # index into _strokes
        self._travel = 0.0  # pen travel along the current stroke, pad pixels
        self._index = 0  # last dense point inked of the current stroke
        self._phase = BLANK
        self._wait = 0.0
        self._height = 1.0  # pad pixels per digit height

    def start(self) -> None:
        """Begin with an empty pad; the first digit starts right away."""
        self.active = True
        self._end_stroke()
        self.pad.clear()
        self._phase, self._wait = BLANK, 0.0

    def stop(self) -> None:
        """Lift the pen where it is (the caller decides whether the drawing stays)."""
        self.active = False
        self._end_stroke()
        self.digit = None

    def update(self, dt: float) -> None:
        if not self.active:
            return
        dt = max(float(dt), 0.0)
        self.camera.yaw = (self.camera.yaw + math.radians(self.orbit_speed) * dt) % (2.0 * math.pi)
        budget = dt
        # Several phases can end inside one long frame; the loop spends the frame's time across them.
        for _ in range(64):
            if budget <= 0.0:
                break
            if self._phase == DRAW:
                budget = self._draw(budget)
            else:
                used = min(self._wait, budget)
                self._wait -= used
                budget -= used
                if self._wait > 0.0:
                    break
                self._next_phase()

    # -- phases ------------------------------------------------------------------------------

    def _next_phase(self) -> None:
        if self._phase == LIFT:
            self._stroke += 1
            self._begin_stroke()
        elif self._phase == HOLD:
            self.pad.clear()
            self.digit = None
            self._phase, self._wait = BLANK, BLANK_S
        elif self._phase == BLANK:
            self._new_digit()

    def _new_digit(self) -> None:
        if not self._queue:
            self._queue = [str(d) for d in self._rng.permutation(10)]
        self.digit = self._queue.pop()
        variants = self.library[self.digit]
        variant = variants[int(self._rng.integers(len(variants)))]
        scale = float(self._rng.uniform(0.88, 1.02))
        slant = float(self._rng.uniform(-0.12, 0.18))
        shift = (float(self._rng.uniform(-0.025, 0.025)), float(self._rng.uniform(-0.02, 0.02)))
        self._strokes = place(variant, self.pad.size, scale, slant, shift)
        self._height = (DIGIT_BOX[1] - DIGIT_BOX[0]) * self.pad.size * scale
        self._stroke = 0
        self._begin_stroke()

    def _begin_stroke(self) -> None:
        s = self._strokes[self._stroke]
        self.pad.begin_stroke(*s[0], erase=False)
        self.pen = (float(s[0][0]), float(s[0][1]))
        self._travel, self._index = 0.0, 0
        self._phase = DRAW

    def _draw(self, budget: float) -> float:
        """Move the pen for up to `budget` seconds; returns the time left when the stroke ended."""
        s = self._strokes[self._stroke]
        seg = np.linalg.norm(np.diff(s, axis=0), axis=1)
        speed = self.pen_speed * self._height
        remaining = float(seg[self._index :].sum()) - (self._travel - float(seg[: self._index].sum()))
        step = speed * budget
        if step < remaining:
            self._travel += step
            cum = np.concatenate([[0.0], np.cumsum(seg)])
            k = int(np.searchsorted(cum, self._travel, side="right")) - 1
            for i in range(self._index + 1, k + 1):
                self.pad.stroke_to(*s[i])
            self._index = max(self._index, k)
            frac = (self._travel - cum[k]) / max(seg[k], 1e-9) if k < len(seg) else 0.0
            tip = s[k] + (s[min(k + 1, len(s) - 1)] - s[k]) * frac
            self.pad.stroke_to(*tip)
            self.pen = (float(tip[0]), float(tip[1]))
            return 0.0
        for i in range(self._index + 1, len(s)):
            self.pad.stroke_to(*s[i])
        self._end_stroke()
        if self._stroke + 1 < len(self._strokes):
            self._phase, self._wait = LIFT, LIFT_S
        else:
            self.digits_drawn += 1
            self._phase, self._wait = HOLD, self.hold_digit
        return budget - remaining / max(speed, 1e-9)

    def _end_stroke(self) -> None:
        if self.pad.drawing:
            self.pad.end_stroke()
        self.pen = None
