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

The camera (`attract_camera`): a pure function of (layout bounds, free-area rectangle, time) that
swings the view left and right of the home angle and nods it a little, never further than
`yaw_range` (so the maps are never seen edge-on), and frames the whole network in the free area
beside the pad at every instant.  The scene applies it each frame; it knows nothing of panels.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
from convscope.engine.camera import HOME_PITCH, HOME_YAW, OrbitCamera
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


# -- the camera ---------------------------------------------------------------------------------------

YAW_RANGE = 30.0  # degrees either side of the home angle; beyond ~60 the maps overlap in depth
PITCH_SWING = 6.0  # degrees the view nods about the home pitch (28): always well above the sheets
FRAME_MARGIN = 0.03  # fraction of the free area's half-size kept clear around the network


class CameraGoal(NamedTuple):
    target: np.ndarray
    yaw: float
    pitch: float
    distance: float


def orbit_period(orbit_speed: float, yaw_range: float = YAW_RANGE) -> float:
    """Seconds of one attract camera loop whose fastest turn is `orbit_speed` degrees per second."""
    return 2.0 * math.pi * yaw_range / max(orbit_speed, 1e-6)


def _box_corners(boxes: np.ndarray) -> np.ndarray:
    """(K, 2, 3) min / max boxes -> (8K, 3) corners."""
    lo, hi = boxes[:, 0], boxes[:, 1]
    pick = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], bool)
    return np.concatenate([np.where(m, hi, lo) for m in pick])


def attract_camera(
    bounds: np.ndarray,
    free: tuple[float, float, float, float],
    viewport: tuple[int, int],
    t: float,
    *,
    orbit_speed: float = 5.0,
    yaw_range: float = YAW_RANGE,
    margin: float = FRAME_MARGIN,
    camera: OrbitCamera | None = None,
) -> CameraGoal:
    """Where the attract camera is at loop time `t` (s): the layout's boxes framed inside
    `free` = (x0, y0, x1, y1) framebuffer pixels of a `viewport` (w, h).

    `bounds` is the layout's bounds as (min, max), or its per-layer boxes (L, 2, 3)
    (`Layout.layer_bounds`, a tighter outline of a stack of sheets).  The yaw swings sinusoidally
    within +-yaw_range of the home angle (fastest `orbit_speed` degrees per second, at the home
    angle) and the pitch nods at twice that rate, so the loop repeats every `orbit_period` seconds.
    `camera` supplies the lens (field of view); it is not changed."""
    w, h = max(int(viewport[0]), 1), max(int(viewport[1]), 1)
    x0, y0, x1, y1 = (float(v) for v in free)
    fw, fh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    boxes = np.asarray(bounds, np.float64).reshape(-1, 2, 3)
    corners = _box_corners(boxes)
    phase = 2.0 * math.pi * t / orbit_period(orbit_speed, yaw_range)
    yaw = HOME_YAW + math.radians(yaw_range) * math.sin(phase)
    pitch = HOME_PITCH + math.radians(PITCH_SWING) * math.sin(2.0 * phase)
    cam = OrbitCamera() if camera is None else OrbitCamera(fov_y=camera.fov_y)
    # A first fit of the whole box at the free area's aspect: fit() frames into the viewport's
    # height, so a free area fh tall is the same fit with a margin that keeps (1 - margin) fh / h.
    inner = (1.0 - margin) * min(fh / h, 1.0)
    cam.fit(boxes[:, 0].min(0), boxes[:, 1].max(0), fw / fh, 1.0 - inner, yaw % (2.0 * math.pi), pitch)
    # Then refine on the projected outline: the whole box's corners leave a stack of sheets smaller
    # than it need be.  Scale by the distance and centre by panning, a few rounds (perspective makes
    # both only nearly linear), then back off until every corner is inside.
    room_w, room_h = fw * (1.0 - margin), fh * (1.0 - margin)
    for _ in range(6):
        pts = cam.project(corners, w, h)
        (bx0, by0), (bx1, by1) = pts.min(0), pts.max(0)
        k = max((bx1 - bx0) / room_w, (by1 - by0) / room_h, 1e-6)
        cam.distance = float(np.clip(cam.distance * k, cam.min_distance, cam.max_distance))
        pts = cam.project(corners, w, h)
        (bx0, by0), (bx1, by1) = pts.min(0), pts.max(0)
        cam.pan((x0 + x1 - bx0 - bx1) / 2.0, (y0 + y1 - by0 - by1) / 2.0, h)
    for _ in range(40):
        pts = cam.project(corners, w, h)
        (bx0, by0), (bx1, by1) = pts.min(0), pts.max(0)
        if np.isfinite(pts).all() and x0 <= bx0 and bx1 <= x1 and y0 <= by0 and by1 <= y1:
            break
        cam.distance *= 1.02
    cam.scene_radius = max(float(np.linalg.norm(corners.max(0) - corners.min(0))) / 2.0, 1e-3)
    return CameraGoal(cam.target.copy(), cam.yaw, cam.pitch, cam.distance)


# Phases of one digit.
DRAW, LIFT, HOLD, BLANK = "draw", "lift", "hold", "blank"
LIFT_S = 0.18  # pen up between two strokes of a digit
BLANK_S = 0.5  # empty pad between two digits


@dataclass
class Attract:
    """Drives `pad` while `active`, and keeps the camera loop's clock (`orbit_t`) that the scene
    turns into a camera pose with `attract_camera`; `update(dt)` once per frame."""

    pad: PadState
    camera: OrbitCamera
    library: dict[str, list[Strokes]] = field(default_factory=load_strokes)
    pen_speed: float = 1.3  # digit heights per second
    orbit_speed: float = 5.0  # fastest camera turn, degrees per second
    yaw_range: float = YAW_RANGE  # degrees either side of the home angle
    hold_digit: float = 2.5  # seconds a finished digit stays
    seed: int = 0
    active: bool = False
    digit: str | None = None  # the digit being drawn (or held)
    pen: tuple[float, float] | None = None  # pad coordinates of the pen tip while it touches the pad
    digits_drawn: int = 0
    orbit_t: float = 0.0  # seconds into the camera loop
    orbit_running: bool = False  # the scene starts the loop once the camera has flown into place

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
        self.orbit_t, self.orbit_running = 0.0, False
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
        if self.orbit_running:
            self.orbit_t = (self.orbit_t + dt) % orbit_period(self.orbit_speed, self.yaw_range)
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
