"""OrbitCamera: projection, orbit / pan / zoom toward the cursor, fit-all, picking rays (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from convscope.engine.camera import PITCH_LIMIT, OrbitCamera

W, H = 1280, 720


def camera(**kw) -> OrbitCamera:
    cam = OrbitCamera(target=np.array([3.0, -2.0, 5.0]), yaw=0.4, pitch=0.3, distance=80.0, **kw)
    cam.scene_radius = 100.0
    return cam


def point_under(cam: OrbitCamera, px: float, py: float) -> np.ndarray:
    """World point under pixel (px, py) at the target's depth."""
    origin, d = cam.ray(px, py, W, H)
    return origin + d * (cam.distance / float(d @ cam.forward))


def test_target_projects_to_viewport_centre():
    cam = camera()
    np.testing.assert_allclose(cam.project(cam.target, W, H)[0], [W / 2, H / 2], atol=1e-6)


def test_frame_is_orthonormal_and_view_puts_eye_at_origin():
    cam = camera()
    m = cam.view_matrix()
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(m @ np.r_[cam.eye, 1.0], [0, 0, 0, 1], atol=1e-9)
    # The target sits straight ahead, `distance` down the -Z axis of view space.
    np.testing.assert_allclose(m @ np.r_[cam.target, 1.0], [0, 0, -cam.distance, 1], atol=1e-9)


def test_projection_maps_near_and_far_planes_to_ndc_depth_minus_one_and_one():
    cam = camera()
    p = cam.projection(W / H)
    for z, expect in ((-cam.near, -1.0), (-cam.far, 1.0)):
        clip = p @ np.array([0.0, 0.0, z, 1.0])
        assert clip[2] / clip[3] == pytest.approx(expect, abs=1e-9)


def test_default_view_sees_image_rows_upright():
    """Layout convention: image row -> +Z, column -> +X; from the home view +X is right and +Z is down."""
    cam = OrbitCamera()
    px = cam.project(np.array([[0, 0, 0], [10, 0, 0], [0, 0, 10]], float), W, H)
    assert px[1, 0] > px[0, 0], "+X should be to the right"
    assert px[2, 1] > px[0, 1], "+Z (later image rows) should be lower on screen"


def test_ray_passes_through_the_point_it_was_cast_at():
    cam = camera()
    rng = np.random.default_rng(1)
    for p in rng.uniform(-30, 30, (5, 3)):
        px, py = cam.project(p, W, H)[0]
        origin, d = cam.ray(px, py, W, H)
        assert np.linalg.norm(d) == pytest.approx(1.0)
        off = (p - origin) - d * ((p - origin) @ d)
        assert np.linalg.norm(off) < 1e-6, f"ray misses {p} by {np.linalg.norm(off)}"


def test_orbit_turns_around_the_target_at_fixed_distance():
    cam = camera()
    target, view0 = cam.target.copy(), cam.view_matrix()
    cam.orbit(120, 40)
    np.testing.assert_allclose(cam.target, target)
    assert np.linalg.norm(cam.eye - cam.target) == pytest.approx(80.0)
    assert not np.allclose(cam.view_matrix(), view0)
    assert cam.yaw == pytest.approx((0.4 - 120 * cam.orbit_speed) % (2 * math.pi))
    assert cam.pitch == pytest.approx(0.3 + 40 * cam.orbit_speed)


def test_orbit_clamps_pitch_short_of_the_poles():
    cam = camera()
    cam.orbit(0, 1e6)
    assert cam.pitch == pytest.approx(PITCH_LIMIT)
    cam.orbit(0, -1e6)
    assert cam.pitch == pytest.approx(-PITCH_LIMIT)
    assert np.isfinite(cam.view_matrix()).all()


def test_pan_moves_the_scene_with_the_drag():
    cam = camera()
    anchor = cam.target.copy()  # a world point at the target's depth
    cam.pan(50, -30, viewport_h=H)
    np.testing.assert_allclose(cam.project(anchor, W, H)[0], [W / 2 + 50, H / 2 - 30], atol=1e-6)
    assert cam.distance == 80.0


@pytest.mark.parametrize("steps", [1, 3, -2, 0.5])
def test_zoom_keeps_the_point_under_the_cursor_fixed(steps):
    cam = camera()
    cursor_px = np.array([1000.0, 180.0])
    ndc = (2 * cursor_px[0] / W - 1, 1 - 2 * cursor_px[1] / H)
    p = point_under(cam, *cursor_px)
    d0 = cam.distance
    cam.zoom(steps, cursor_ndc=ndc, aspect=W / H)
    assert cam.distance == pytest.approx(d0 * cam.zoom_factor**steps)
    np.testing.assert_allclose(cam.project(p, W, H)[0], cursor_px, atol=1e-6)


def test_zoom_toward_an_anchor_keeps_it_fixed_and_clamps_distance():
    cam = camera()
    anchor = np.array([10.0, 4.0, -3.0])
    before = cam.project(anchor, W, H)[0]
    cam.zoom(2, anchor=anchor)
    np.testing.assert_allclose(cam.project(anchor, W, H)[0], before, atol=1e-6)
    cam.zoom(1000)
    assert cam.distance == pytest.approx(cam.min_distance)


def test_zoom_toward_cursor_needs_aspect():
    with pytest.raises(ValueError):
        camera().zoom(1, cursor_ndc=(0.2, 0.2))


@pytest.mark.parametrize("aspect", [16 / 9, 1.0, 0.6])
def test_fit_puts_every_corner_inside_the_viewport_tightly(aspect):
    cam = OrbitCamera()
    lo, hi = np.array([-128.0, -99.0, -16.0]), np.array([128.0, 99.0, 16.0])
    margin = 0.12
    cam.fit(lo, hi, aspect, margin=margin)
    w, h = 1000 * aspect, 1000
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    px = cam.project(corners, w, h)
    ndc = np.c_[2 * px[:, 0] / w - 1, 1 - 2 * px[:, 1] / h]
    assert (np.abs(ndc) <= 1 - margin + 1e-9).all(), f"corners outside the viewport: {ndc}"
    assert np.abs(ndc).max() == pytest.approx(1 - margin), "fit should be tight on at least one side"
    np.testing.assert_allclose(cam.target, (lo + hi) / 2)
    assert cam.far > np.linalg.norm(corners - cam.eye, axis=1).max(), "far plane cuts the scene"
    assert cam.near < np.linalg.norm(corners - cam.eye, axis=1).min()


def test_fit_home_view_looks_from_the_front_and_above():
    cam = OrbitCamera()
    cam.fit(np.full(3, -10.0), np.full(3, 10.0), W / H)
    assert cam.eye[1] > cam.target[1], "eye should be above the target"
    assert cam.eye[2] > cam.target[2], "eye should be in front (+Z)"


def test_points_behind_the_eye_project_to_nan():
    cam = camera()
    behind = cam.eye - cam.forward * 10
    assert np.isnan(cam.project(behind, W, H)).all()
