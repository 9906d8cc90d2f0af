"""OrbitController: the one pointer-to-camera interaction every scene uses (no network knowledge).

Per frame `update(inp, ui_mouse)` turns the frame's input into camera moves and clicks:
  left drag     orbit; a drag across the window's width turns the view half a turn (180 degrees)
  right drag    pan (the point at the target's depth follows the pointer)
  wheel         zoom toward the point under the pointer
  two fingers   pinch zooms toward the fingers' centre, their common movement pans
  click         a left press and release that stayed within one slop (CLICK_SLOP window units times
                the UI scale); reported in `clicks`, never moved the camera
One finger arrives as the left mouse button (engine/ui/input.py), so touch behaves like the mouse; the
first finger of a pinch is never a click.  A press on a panel (`ui_mouse`) belongs to the panel.

Also here: `fit` (frame a box inside a sub-rectangle of the viewport, the part panels leave free) and
camera flights (`fly_to`, stepped by `step(dt)`; any drag, wheel or pinch by the user ends a flight).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from convscope.engine.camera import HOME_PITCH, HOME_YAW, OrbitCamera
from convscope.engine.ui.input import MOUSE_LEFT, MOUSE_RIGHT, InputState

CLICK_SLOP = 5.0  # window units (times the UI scale) a press may move and still be a click
HALF_TURN = math.pi  # radians of orbit for a drag across the window's width
FLIGHT_S = 0.8  # default duration of a camera flight


@dataclass(frozen=True)
class Click:
    """A left press and release that did not move beyond the slop."""

    x: float  # where it was released, window units
    y: float
    x_fb: float  # the same point in framebuffer pixels (for picking)
    y_fb: float
    held_s: float  # seconds between press and release


@dataclass
class Pose:
    """Where a camera is: enough to restore or animate it."""

    target: np.ndarray
    yaw: float
    pitch: float
    distance: float

    @classmethod
    def of(cls, cam: OrbitCamera) -> Pose:
        return cls(cam.target.copy(), cam.yaw, cam.pitch, cam.distance)

    def apply(self, cam: OrbitCamera) -> None:
        cam.target, cam.yaw, cam.pitch, cam.distance = self.target.copy(), self.yaw, self.pitch, self.distance


@dataclass
class Flight:
    """A smooth camera move to `goal`; the start pose is taken at the first step (so a fit made in
    between is where the move starts)."""

    goal: Pose
    duration: float = FLIGHT_S
    start: Pose | None = None
    t: float = 0.0

    def step(self, cam: OrbitCamera, dt: float) -> bool:
        """Move; True when arrived."""
        if self.start is None:
            self.start = Pose.of(cam)
        self.t = min(self.t + dt, self.duration)
        u = self.t / self.duration
        u = u * u * (3.0 - 2.0 * u)  # smoothstep: no jolt at either end
        a, b = self.start, self.goal
        dyaw = (b.yaw - a.yaw + math.pi) % (2.0 * math.pi) - math.pi  # the short way round
        # Distance in log space: a zoom reads as steady, not fast then slow.
        dist = math.exp(math.log(a.distance) + (math.log(b.distance) - math.log(a.distance)) * u)
        Pose(
            a.target + (b.target - a.target) * u, a.yaw + dyaw * u, a.pitch + (b.pitch - a.pitch) * u, dist
        ).apply(cam)
        return self.t >= self.duration


def fit_camera(
    camera: OrbitCamera,
    bounds: tuple[np.ndarray, np.ndarray],
    free: tuple[float, float, float, float],
    viewport: tuple[int, int],
    margin: float = 0.08,
    yaw: float = HOME_YAW,
    pitch: float = HOME_PITCH,
) -> None:
    """Frame the box `bounds` inside `free` = (x, y, w, h), framebuffer pixels of `viewport`, from
    (yaw, pitch): the box fills the free rectangle with `margin` to spare and sits at its centre."""
    w, h = max(int(viewport[0]), 1), max(int(viewport[1]), 1)
    fx, fy, fw, fh = free
    fw, fh = max(fw, 1.0), max(fh, 1.0)
    # camera.fit frames into the whole view height; a shorter free rectangle is the same fit with a
    # proportionally larger margin, and its aspect sets the horizontal extent.
    keep = (1.0 - margin) * min(fh / h, 1.0)
    camera.fit(*bounds, fw / fh, margin=1.0 - keep, yaw=yaw, pitch=pitch)
    # Then move the content to the free rectangle's centre.  Perspective makes the box's screen extent
    # lopsided once it is off the view's centre, so correct a few times: pan its screen box's centre
    # onto the free centre, and back off while it is larger than the free rectangle allows.
    lo, hi = (np.asarray(b, np.float64) for b in bounds)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    cx, cy = fx + fw / 2.0, fy + fh / 2.0
    for _ in range(12):
        p = camera.project(corners, w, h)
        if not np.isfinite(p).all():
            break
        (x0, y0), (x1, y1) = p.min(0), p.max(0)
        grow = max((x1 - x0) / (fw * (1.0 - margin)), (y1 - y0) / (fh * (1.0 - margin)))
        dx, dy = cx - (x0 + x1) / 2.0, cy - (y0 + y1) / 2.0
        if grow <= 1.0 + 1e-4 and abs(dx) < 0.25 and abs(dy) < 0.25:
            break
        if grow > 1.0:
            camera.distance = min(camera.distance * grow, camera.max_distance)
        camera.pan(dx, dy, h)


class OrbitController:
    """Steers one OrbitCamera from the frame's input; see the module docstring."""

    def __init__(
        self, camera: OrbitCamera, slop: float = CLICK_SLOP, clock: Callable[[], float] | None = None
    ):
        self.camera = camera
        self.slop = slop  # window units
        self.clock = clock  # for click durations; None: the input's own time stamps
        self.flight: Flight | None = None
        self.home: Pose | None = None  # where the last fit put the camera
        self.clicks: list[Click] = []  # this frame's
        self.moved = False  # the user moved the camera this frame (drag, wheel, pinch)
        self._press: dict[int, tuple[float, float, float]] = {}  # button -> x, y, time it went down
        self._dragging: set[int] = set()  # buttons whose press became a drag

    @property
    def dragging(self) -> bool:
        return bool(self._dragging)

    def _now(self, inp: InputState) -> float:
        return self.clock() if self.clock is not None else inp.time

    def update(self, inp: InputState, ui_mouse: bool) -> list[Click]:
        """Apply this frame's drags, wheel and gestures to the camera; return its clicks."""
        self.clicks = []
        self.moved = False
        w, h = inp.framebuffer_size
        if w <= 0 or h <= 0:
            return self.clicks
        # Radians per framebuffer pixel: the window's width is half a turn, whatever its size.
        self.camera.orbit_speed = HALF_TURN / w
        sx, sy = inp.framebuffer_scale
        if inp.touches >= 2 or inp.pinch != 1.0 or inp.pan2 != (0.0, 0.0):
            self._press.clear()  # the first finger of a pinch is neither a click nor an orbit
            self._dragging.clear()
            self._gesture(inp, w, h)
            return self.clicks
        now = self._now(inp)
        for button in (MOUSE_LEFT, MOUSE_RIGHT):
            if inp.was_pressed(button):
                self._dragging.discard(button)
                if ui_mouse:
                    self._press.pop(button, None)  # a press on a panel belongs to the panel
                else:
                    self._press[button] = (*inp.drag_origin.get(button, inp.mouse_pos), now)
            if button not in self._press:
                continue
            if inp.is_down(button):
                if button not in self._dragging:
                    ox, oy, _ = self._press[button]
                    dx, dy = inp.mouse_pos[0] - ox, inp.mouse_pos[1] - oy
                    if math.hypot(dx, dy) <= self.slop:
                        continue  # still a click, maybe: the camera stays put
                    self._dragging.add(button)  # now a drag: catch up with the whole way moved
                else:
                    dx, dy = inp.mouse_delta
                if dx or dy:
                    self._user_moved()
                if button == MOUSE_LEFT:
                    self.camera.orbit(dx * sx, dy * sy)
                else:
                    self.camera.pan(dx * sx, dy * sy, h)
            else:  # released (possibly in the frame it went down)
                if button == MOUSE_LEFT and button not in self._dragging:
                    x, y = inp.mouse_pos
                    self.clicks.append(Click(x, y, x * sx, y * sy, now - self._press[button][2]))
                self._press.pop(button, None)
                self._dragging.discard(button)
        if inp.scroll[1] and not ui_mouse:
            mx, my = inp.mouse_pos_fb
            self._user_moved()
            self.camera.zoom(inp.scroll[1], (2.0 * mx / w - 1.0, 1.0 - 2.0 * my / h), w / h)
        return self.clicks

    def _gesture(self, inp: InputState, w: int, h: int) -> None:
        sx, sy = inp.framebuffer_scale
        if inp.pinch != 1.0 and inp.pinch > 0.0:
            self._user_moved()
            steps = math.log(inp.pinch) / -math.log(self.camera.zoom_factor)
            cx, cy = inp.touch_center[0] * sx, inp.touch_center[1] * sy
            self.camera.zoom(steps, (2.0 * cx / w - 1.0, 1.0 - 2.0 * cy / h), w / h)
        if inp.pan2 != (0.0, 0.0):
            self._user_moved()
            self.camera.pan(inp.pan2[0] * sx, inp.pan2[1] * sy, h)

    def _user_moved(self) -> None:
        self.moved = True
        self.flight = None  # the user takes the camera: a flight in progress ends

    # -- fit and flights ------------------------------------------------------------------------------

    def fit(
        self,
        bounds: tuple[np.ndarray, np.ndarray],
        free: tuple[float, float, float, float],
        viewport: tuple[int, int],
        margin: float = 0.08,
        pitch: float = HOME_PITCH,
    ) -> None:
        """Jump to the home view of `bounds` framed inside `free` (framebuffer pixels).  A flight in
        progress goes on (it took its start pose at its first step)."""
        fit_camera(self.camera, bounds, free, viewport, margin, pitch=pitch)
        self.home = Pose.of(self.camera)

    def at_home(self) -> bool:
        """The camera has not moved since the last `fit` (a resize may then fit again)."""
        h, c = self.home, self.camera
        return (
            h is not None
            and (h.yaw, h.pitch, h.distance) == (c.yaw, c.pitch, c.distance)
            and np.array_equal(h.target, c.target)
        )

    def fit_pose(
        self,
        bounds: tuple[np.ndarray, np.ndarray],
        free: tuple[float, float, float, float],
        viewport: tuple[int, int],
        margin: float = 0.1,
        keep_angle: bool = False,
        min_pitch: float | None = None,
    ) -> Pose:
        """The pose that frames `bounds` inside `free`, from home or from the current angle; the
        camera does not move (fly there with `fly_to`)."""
        cam = copy.deepcopy(self.camera)
        yaw, pitch = (cam.yaw, cam.pitch) if keep_angle else (HOME_YAW, HOME_PITCH)
        if min_pitch is not None:
            pitch = max(pitch, min_pitch)
        fit_camera(cam, bounds, free, viewport, margin, yaw=yaw, pitch=pitch)
        # The far plane must cover the scene on the way (a flight to one layer keeps the whole in view).
        self.camera.scene_radius = max(self.camera.scene_radius, cam.scene_radius)
        return Pose.of(cam)

    def fly_to(self, pose: Pose, duration: float = FLIGHT_S) -> None:
        self.flight = Flight(pose, duration)

    def step(self, dt: float) -> None:
        """Advance a flight in progress."""
        if self.flight is not None and self.flight.step(self.camera, dt):
            self.flight = None
