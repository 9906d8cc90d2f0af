"""OrbitController: click versus drag with one slop, orbit per window width, zoom toward the pointer,
two-finger gestures, fit into a free rectangle.  Pure numpy, no window.
Run: python -m pytest tests/test_orbit.py -q"""

import math

import numpy as np
import pytest
from convscope.engine.camera import OrbitCamera
from convscope.engine.orbit import CLICK_SLOP, OrbitController, Pose, fit_camera
from convscope.engine.ui.input import MOUSE_LEFT, MOUSE_RIGHT, InputState


def frame(
    size=(1280, 720), pos=(400.0, 300.0), prev=None, down=(), pressed=(), released=(), origin=None, **kw
):
    prev = prev if prev is not None else pos
    return InputState(
        window_size=size,
        framebuffer_size=size,
        cursor_inside=True,
        mouse_pos=pos,
        mouse_delta=(pos[0] - prev[0], pos[1] - prev[1]),
        buttons_down=frozenset(down),
        buttons_pressed=frozenset(pressed),
        buttons_released=frozenset(released),
        drag_origin=origin or {},
        **kw,
    )


def drag(ctl, start, end, size=(1280, 720), steps=5, button=MOUSE_LEFT):
    """Press at `start`, move to `end` in `steps` frames, release; the clicks of the release frame."""
    ctl.update(frame(size, start, down={button}, pressed={button}, origin={button: start}), False)
    prev = start
    for i in range(1, steps + 1):
        p = (start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps)
        ctl.update(frame(size, p, prev, down={button}, origin={button: start}), False)
        prev = p
    return ctl.update(frame(size, end, end, released={button}), False)


def test_a_press_within_the_slop_is_a_click_and_moves_nothing():
    cam = OrbitCamera()
    ctl = OrbitController(cam)
    yaw, pitch = cam.yaw, cam.pitch
    clicks = drag(ctl, (400.0, 300.0), (400.0 + CLICK_SLOP * 0.9, 300.0))
    assert len(clicks) == 1 and (cam.yaw, cam.pitch) == (yaw, pitch)
    assert clicks[0].x == pytest.approx(400.0 + CLICK_SLOP * 0.9)


def test_beyond_the_slop_it_is_a_drag_that_counts_the_whole_way():
    cam = OrbitCamera()
    ctl = OrbitController(cam)
    yaw = cam.yaw
    clicks = drag(ctl, (400.0, 300.0), (400.0 + 2 * CLICK_SLOP, 300.0))
    assert clicks == []
    assert cam.yaw == pytest.approx((yaw - 2 * CLICK_SLOP * math.pi / 1280) % (2 * math.pi))


def test_the_slop_scales_with_the_ui():
    ctl = OrbitController(OrbitCamera(), slop=3 * CLICK_SLOP)
    assert len(drag(ctl, (400.0, 300.0), (400.0 + 2 * CLICK_SLOP, 300.0))) == 1


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (800, 800)])
def test_a_drag_across_the_window_turns_half_a_turn(size):
    cam = OrbitCamera()
    ctl = OrbitController(cam)
    yaw = cam.yaw
    drag(ctl, (0.0, 300.0), (float(size[0]), 300.0), size=size, steps=10)
    turned = (yaw - cam.yaw) % (2 * math.pi)
    assert turned == pytest.approx(math.pi, abs=1e-9)
    # 200 px turns 180 * 200 / width degrees (it used to be ~69 degrees whatever the window)
    cam2 = OrbitCamera()
    ctl2 = OrbitController(cam2)
    drag(ctl2, (100.0, 300.0), (300.0, 300.0), size=size)
    assert math.degrees((0.0 - cam2.yaw) % (2 * math.pi)) == pytest.approx(180 * 200 / size[0])


def test_a_press_on_a_panel_neither_clicks_nor_orbits():
    cam = OrbitCamera()
    ctl = OrbitController(cam)
    yaw = cam.yaw
    s = (400.0, 300.0)
    ctl.update(frame(pos=s, down={MOUSE_LEFT}, pressed={MOUSE_LEFT}, origin={MOUSE_LEFT: s}), True)
    ctl.update(frame(pos=(500.0, 300.0), prev=s, down={MOUSE_LEFT}, origin={MOUSE_LEFT: s}), True)
    assert ctl.update(frame(pos=(500.0, 300.0), released={MOUSE_LEFT}), True) == []
    assert cam.yaw == yaw


def test_right_drag_pans_the_target_with_the_pointer():
    cam = OrbitCamera()
    cam.fit(np.array([-10.0, -10, -10]), np.array([10.0, 10, 10]), 1280 / 720)
    ctl = OrbitController(cam)
    p0 = cam.project(cam.target.copy(), 1280, 720)[0]
    target = cam.target.copy()
    drag(ctl, (400.0, 300.0), (500.0, 340.0), button=MOUSE_RIGHT)
    # the point that was at the target now sits 100 px right and 40 px down
    assert cam.project(target, 1280, 720)[0] == pytest.approx(p0 + [100.0, 40.0], abs=1e-6)


def test_wheel_zooms_toward_the_point_under_the_pointer():
    cam = OrbitCamera()
    cam.fit(np.array([-10.0, -10, -10]), np.array([10.0, 10, 10]), 1280 / 720)
    ctl = OrbitController(cam)
    pointer = (1000.0, 200.0)
    eye, d = cam.ray(*pointer, 1280, 720)
    under = eye + d * (cam.distance / float(d @ cam.forward))  # the point at the target's depth
    d0 = cam.distance
    ctl.update(frame(pos=pointer, scroll=(0.0, 2.0)), False)
    assert cam.distance == pytest.approx(d0 * cam.zoom_factor**2)
    assert cam.project(under, 1280, 720)[0] == pytest.approx(pointer, abs=1e-6), "the point stays put"


def test_pinch_zooms_and_two_fingers_pan_and_never_click():
    cam = OrbitCamera()
    ctl = OrbitController(cam)
    d0 = cam.distance
    clicks = ctl.update(
        frame(pos=(640.0, 360.0), released={MOUSE_LEFT}, touches=2, pinch=2.0, touch_center=(640.0, 360.0)),
        False,
    )
    assert clicks == [] and cam.distance == pytest.approx(d0 / 2.0)
    t0 = cam.target.copy()
    ctl.update(frame(pos=(640.0, 360.0), touches=2, pan2=(30.0, 0.0)), False)
    assert not np.allclose(cam.target, t0)


def test_user_motion_ends_a_flight_and_a_flight_arrives():
    cam = OrbitCamera()
    ctl = OrbitController(cam)
    goal = Pose(np.array([1.0, 2.0, 3.0]), 0.5, 0.2, 40.0)
    ctl.fly_to(goal, 0.5)
    for _ in range(10):
        ctl.step(0.1)
    assert ctl.flight is None and np.allclose(cam.target, goal.target) and cam.distance == pytest.approx(40.0)
    ctl.fly_to(Pose(np.zeros(3), 0.0, 0.3, 80.0))
    ctl.update(frame(pos=(10.0, 10.0), scroll=(0.0, 1.0)), False)
    assert ctl.flight is None


@pytest.mark.parametrize("free", [(400, 0, 880, 720), (0, 0, 1280, 720), (300, 100, 600, 500)])
def test_fit_frames_the_box_inside_the_free_rectangle(free):
    cam = OrbitCamera()
    lo, hi = np.array([-30.0, -5, -20]), np.array([30.0, 40, 20])
    fit_camera(cam, (lo, hi), free, (1280, 720), margin=0.05)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    p = cam.project(corners, 1280, 720)
    x, y, w, h = free
    assert p[:, 0].min() >= x - 1e-6 and p[:, 0].max() <= x + w + 1e-6
    assert p[:, 1].min() >= y - 1e-6 and p[:, 1].max() <= y + h + 1e-6
    # and it fills it: one pair of sides within the margin
    fill = max((p[:, 0].max() - p[:, 0].min()) / w, (p[:, 1].max() - p[:, 1].min()) / h)
    assert fill > 0.85


def test_at_home_until_the_user_moves_the_camera():
    cam = OrbitCamera()
    ctl = OrbitController(cam)
    assert not ctl.at_home()
    ctl.fit((np.array([-10.0, -10, -10]), np.array([10.0, 10, 10])), (0, 0, 1280, 720), (1280, 720))
    assert ctl.at_home()
    drag(ctl, (400.0, 300.0), (460.0, 300.0))
    assert not ctl.at_home()
