"""Orbit camera: yaw / pitch around a target, distance, perspective projection (numpy only).

Conventions: world +Y is up; yaw 0 puts the eye on the +Z side of the target looking toward -Z,
positive pitch lifts it above the target.  Matrices are numpy (4, 4) float64 arrays for column
vectors (`clip = proj @ view @ [x, y, z, 1]`); GL wants column-major bytes, so upload them as
`m.T.astype("f4").tobytes()` (engine.gpu does).  Pixel coordinates have their origin at the top-left
corner of the viewport, x to the right, y down, and pixel (i, j) covers [i, i+1) x [j, j+1).

The home view (`fit`) looks from the front and a little above, so a network laid out by
engine.graph.layout reads like Harley's figure: a stack of sheets, input at the bottom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

HOME_YAW = 0.0  # radians: straight from the front
HOME_PITCH = math.radians(28.0)  # from a little above, so the sheets show their faces
PITCH_LIMIT = math.radians(89.0)  # never reach the pole, where look-at loses its up vector


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@dataclass
class OrbitCamera:
    target: np.ndarray = field(default_factory=lambda: np.zeros(3))  # orbit centre (world)
    yaw: float = HOME_YAW  # radians around +Y
    pitch: float = HOME_PITCH  # radians above the target's horizontal plane
    distance: float = 100.0  # eye to target
    fov_y: float = math.radians(40.0)  # vertical field of view
    scene_radius: float = 100.0  # set by fit(); keeps the far plane behind the whole scene
    orbit_speed: float = 0.006  # radians per pixel of mouse motion
    zoom_factor: float = 0.85  # distance multiplier per zoom step (wheel notch)
    min_distance: float = 0.5  # closest the eye gets to the target
    max_distance: float = 1e5

    def __post_init__(self) -> None:
        self.target = np.asarray(self.target, dtype=np.float64).reshape(3).copy()
        self.pitch = float(np.clip(self.pitch, -PITCH_LIMIT, PITCH_LIMIT))

    # --- frame of the camera ------------------------------------------------------------------

    @property
    def forward(self) -> np.ndarray:
        """Unit vector from the eye toward the target."""
        cp = math.cos(self.pitch)
        return -np.array([cp * math.sin(self.yaw), math.sin(self.pitch), cp * math.cos(self.yaw)])

    @property
    def right(self) -> np.ndarray:
        return _normalize(np.cross(self.forward, [0.0, 1.0, 0.0]))

    @property
    def up(self) -> np.ndarray:
        return np.cross(self.right, self.forward)

    @property
    def eye(self) -> np.ndarray:
        return self.target - self.forward * self.distance

    @property
    def near(self) -> float:
        return max(self.distance * 0.01, 1e-3)

    @property
    def far(self) -> float:
        return self.distance + 3.0 * self.scene_radius

    # --- interaction ----------------------------------------------------------------------------

    def orbit(self, dx: float, dy: float) -> None:
        """Turn around the target by a mouse drag of (dx, dy) pixels (y down): dragging right turns
        the scene right, dragging down lifts the eye."""
        self.yaw = (self.yaw - dx * self.orbit_speed) % (2.0 * math.pi)
        self.pitch = float(np.clip(self.pitch + dy * self.orbit_speed, -PITCH_LIMIT, PITCH_LIMIT))

    def pan(self, dx: float, dy: float, viewport_h: float = 720.0) -> None:
        """Slide the target in the view plane so that the point at the target's depth follows a
        drag of (dx, dy) pixels in a viewport `viewport_h` pixels tall."""
        world_per_px = 2.0 * self.distance * math.tan(self.fov_y / 2.0) / max(viewport_h, 1.0)
        self.target = self.target + (-dx * self.right + dy * self.up) * world_per_px

    def zoom(
        self,
        steps: float,
        cursor_ndc: tuple[float, float] | None = None,
        aspect: float | None = None,
        anchor: np.ndarray | None = None,
    ) -> None:
        """Zoom in by `steps` wheel notches (negative: out), toward the point under the cursor.

        The anchor is `anchor` when given (e.g. a picked node), else the point under `cursor_ndc`
        (x, y in [-1, 1], y up) at the target's depth, else the target.  Eye and target shrink toward
        the anchor by the same factor; the orientation is unchanged, so the anchor keeps its place
        on screen exactly.
        """
        factor = self.zoom_factor ** float(steps)
        new_distance = float(np.clip(self.distance * factor, self.min_distance, self.max_distance))
        factor = new_distance / self.distance
        if anchor is not None:
            p = np.asarray(anchor, dtype=np.float64).reshape(3)
        elif cursor_ndc is not None:
            if aspect is None:
                raise ValueError("zoom toward a cursor needs the viewport aspect")
            d = self._ray_dir_ndc(cursor_ndc[0], cursor_ndc[1], aspect)
            p = self.eye + d * (self.distance / float(np.dot(d, self.forward)))
        else:
            p = self.target
        eye = p + (self.eye - p) * factor
        self.target = p + (self.target - p) * factor
        self.distance = float(np.linalg.norm(self.target - eye))

    def fit(
        self,
        bounds_min: np.ndarray,
        bounds_max: np.ndarray,
        aspect: float,
        margin: float = 0.12,
        yaw: float = HOME_YAW,
        pitch: float = HOME_PITCH,
    ) -> None:
        """Home view: look at the box centre from (yaw, pitch) and back off until all eight
        corners lie inside the viewport with `margin` (fraction of half the viewport) to spare."""
        lo = np.asarray(bounds_min, dtype=np.float64).reshape(3)
        hi = np.asarray(bounds_max, dtype=np.float64).reshape(3)
        self.target = (lo + hi) / 2.0
        self.yaw = yaw
        self.pitch = float(np.clip(pitch, -PITCH_LIMIT, PITCH_LIMIT))
        self.scene_radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-3)
        ty = math.tan(self.fov_y / 2.0) * (1.0 - margin)
        tx = math.tan(self.fov_y / 2.0) * aspect * (1.0 - margin)
        corners = np.array(
            [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        v = corners - self.target
        r, u, f = v @ self.right, v @ self.up, v @ self.forward
        # A corner at view depth (d + f) is inside when |r| <= tx (d + f) and |u| <= ty (d + f).
        need = np.maximum(np.abs(r) / tx - f, np.abs(u) / ty - f)
        self.distance = float(np.clip(need.max(), self.min_distance, self.max_distance))

    # --- matrices ---------------------------------------------------------------------------------

    def view_matrix(self) -> np.ndarray:
        r, u, f = self.right, self.up, self.forward
        eye = self.eye
        m = np.eye(4)
        m[0, :3], m[1, :3], m[2, :3] = r, u, -f
        m[:3, 3] = -m[:3, :3] @ eye
        return m

    def projection(self, aspect: float) -> np.ndarray:
        n, f = self.near, self.far
        t = 1.0 / math.tan(self.fov_y / 2.0)
        m = np.zeros((4, 4))
        m[0, 0] = t / aspect
        m[1, 1] = t
        m[2, 2] = (f + n) / (n - f)
        m[2, 3] = 2.0 * f * n / (n - f)
        m[3, 2] = -1.0
        return m

    def view_projection(self, aspect: float) -> np.ndarray:
        return self.projection(aspect) @ self.view_matrix()

    # --- screen <-> world ---------------------------------------------------------------------------

    def project(self, points: np.ndarray, w: int, h: int) -> np.ndarray:
        """World points (N, 3) -> pixel coordinates (N, 2); NaN for points behind the eye."""
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        clip = np.c_[p, np.ones(len(p))] @ self.view_projection(w / h).T
        cw = clip[:, 3:4]
        with np.errstate(divide="ignore", invalid="ignore"):
            ndc = np.where(cw > 1e-9, clip[:, :2] / cw, np.nan)
        return np.c_[(ndc[:, 0] + 1.0) * 0.5 * w, (1.0 - ndc[:, 1]) * 0.5 * h]

    def ray(self, px: float, py: float, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """The picking ray through pixel position (px, py): origin (the eye) and unit direction."""
        ndc_x = 2.0 * px / w - 1.0
        ndc_y = 1.0 - 2.0 * py / h
        return self.eye, self._ray_dir_ndc(ndc_x, ndc_y, w / h)

    def _ray_dir_ndc(self, x: float, y: float, aspect: float) -> np.ndarray:
        t = math.tan(self.fov_y / 2.0)
        return _normalize(self.forward + self.right * (x * t * aspect) + self.up * (y * t))
