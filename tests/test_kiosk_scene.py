"""The kiosk scene driven headless (EGL) with the real worker, on a simulated clock: attract mode
inks the pad and moves the activations, a touch hands the pad to the visitor, the idle reset
restores everything, keys are locked except the exit chord and PIN, touch targets are big enough,
and pinch / double-tap move the camera.  Input is scripted through the InputCollector a window
feeds."""

import math
import time

import glfw
import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.ui.input import MOD_ALT, MOD_CONTROL, MOD_SHIFT, MOUSE_LEFT
from convscope.scenes.explore.run import wait_until_ready
from convscope.scenes.kiosk.config import KioskConfig
from convscope.scenes.kiosk.idle import ATTRACT, VISITOR
from convscope.scenes.kiosk.run import FrameClock, ui_config
from convscope.scenes.kiosk.scene import FLIGHT_S, KioskScene, Pose, kiosk_ui_scale

pytestmark = pytest.mark.gl
W, H = 1280, 720  # a small exhibit screen: room for the captions above the network
DPI = 96.0
PX_PER_MM = DPI / 25.4


def our_segments() -> set[str]:
    """This process's segments only: other test runs on the machine make their own."""
    from convscope.engine.proc.shm import list_segments, segment_prefix

    return set(list_segments(segment_prefix()))


@pytest.fixture(scope="module")
def kiosk():
    from convscope.engine.gpu.context import create_headless

    before = our_segments()
    ctx = create_headless()
    cfg = KioskConfig(attract_after=4.0, reset_after=20.0, pen_speed=3.0, hold_digit=0.5, pin="2718", seed=1)
    scale = kiosk_ui_scale(cfg.control_mm, PX_PER_MM, 1.0)
    clock = FrameClock(1 / 30)
    scene = KioskScene(AppConfig(), cfg, ui_scale=scale, px_per_mm=PX_PER_MM, clock=clock)
    app = App(scene, ctx=ctx, size=(W, H), ui_config=ui_config(cfg, scale), quit_chord=False)
    wait_until_ready(app, scene.inner, 60)
    yield app, scene, clock
    app.close()
    ctx.release()
    assert our_segments() - before == set(), "shared-memory segments left behind"


def frames(app, clock, n=1, settle=True, dt=1 / 30):
    """n frames, `dt` of kiosk time each; with `settle`, each frame's drawing is answered first."""
    for _ in range(n):
        clock.now += dt
        app.frame()
        deadline = time.monotonic() + 20
        while settle and not app.scene.ready:
            assert time.monotonic() < deadline, "the worker did not answer"
            time.sleep(0.002)
            app.frame()


def until(app, clock, cond, limit=600, dt=1 / 30):
    for _ in range(limit):
        if cond():
            return
        frames(app, clock, dt=dt)
    raise AssertionError("condition not reached")


def tap(app, clock, x, y):
    sink = app.headless_input
    sink.on_cursor_pos(x, y)
    frames(app, clock)
    sink.on_mouse_button(MOUSE_LEFT, True, 0)
    frames(app, clock)
    sink.on_mouse_button(MOUSE_LEFT, False, 0)
    frames(app, clock)


def to_attract(app, scene, clock):
    """Leave the kiosk alone until attract mode runs (in half-second frames: nothing moves meanwhile)."""
    until(
        app, clock, lambda: scene.idle.state == ATTRACT, limit=int((scene.kiosk.reset_after + 5) * 2), dt=0.5
    )


def test_attract_strokes_ink_the_pad_and_change_the_activations(kiosk):
    app, scene, clock = kiosk
    to_attract(app, scene, clock)
    blank = scene.inner.activations.copy()
    frames(app, clock)
    shot_blank = app.read_pixels().copy()
    until(app, clock, lambda: scene.pad.canvas.sum() > 2000 and scene.ready, dt=1 / 15)
    assert scene.attract.active and scene.attract.pen is not None
    # The worker saw the attract drawing, as it sees a visitor's.
    np.testing.assert_allclose(scene.state.network_input.sum(), scene.pad.canvas.sum() / 100.0, rtol=0.02)
    assert np.abs(scene.inner.activations - blank).max() > 0.5
    until(app, clock, lambda: scene.attract.digits_drawn >= 1 and scene.ready, dt=1 / 15)
    digit = scene.attract.digit
    assert scene.state.top_guesses(1)[0][0] == digit, "the network reads the attract digit"
    frames(app, clock)
    shot = app.read_pixels()
    x0, y0, x1, y1 = (int(v) for v in scene.ui.pad_rect)
    assert shot[y0:y1, x0:x1].mean() > shot_blank[y0:y1, x0:x1].mean() + 10, "no ink on the pad on screen"
    left = int(scene.ui.left_edge) + 10
    right = int(scene.ui.right_edge) - 10
    changed = np.abs(shot[:, left:right].astype(int) - shot_blank[:, left:right].astype(int)).sum(axis=2) > 60
    assert changed.sum() > 300, "the nodes did not follow the attract drawing"


def test_a_touch_stops_attract_and_the_pad_is_the_visitors(kiosk):
    app, scene, clock = kiosk
    to_attract(app, scene, clock)
    until(app, clock, lambda: scene.pad.canvas.sum() > 500)
    x0, y0, x1, y1 = scene.ui.pad_rect
    sink = app.headless_input
    # A stroke along the left edge of the pad, where no attract digit goes.
    sink.on_cursor_pos(x0 + 0.06 * (x1 - x0), y0 + 0.2 * (y1 - y0))
    frames(app, clock)
    sink.on_mouse_button(MOUSE_LEFT, True, 0)
    frames(app, clock)
    assert scene.idle.state == VISITOR and not scene.attract.active, "attract mode did not stop at once"
    for k in range(1, 8):
        sink.on_cursor_pos(x0 + 0.06 * (x1 - x0), y0 + (0.2 + 0.08 * k) * (y1 - y0))
        frames(app, clock)
    sink.on_mouse_button(MOUSE_LEFT, False, 0)
    frames(app, clock, 20)
    canvas = scene.pad.canvas
    ink_cols = np.nonzero(canvas.max(axis=0) > 0.5)[0]
    assert ink_cols.size and ink_cols.max() < 0.06 * scene.pad.size + 30, (
        "attract ink left on the visitor's pad"
    )
    assert not scene.attract.active
    assert scene.state.network_input.sum() > 0


def test_idle_reset_clears_pad_closes_panels_and_frames_the_network(kiosk):
    app, scene, clock = kiosk
    tap(app, clock, scene.ui.left_edge + 40, 40)  # a visitor
    assert scene.idle.state == VISITOR
    scene.pad.set_image(np.eye(28, dtype=np.float32))
    scene.open_layer_card(0)
    scene.camera.orbit(200.0, -80.0)
    scene.camera.zoom(3.0)
    frames(app, clock)
    touched = clock.now
    resets = scene.idle.resets
    # attract_after (4 s) after the last touch the pen takes over; reset_after (20 s) after it, the reset.
    until(app, clock, lambda: scene.attract.active, limit=20, dt=0.5)
    assert clock.now - touched == pytest.approx(scene.kiosk.attract_after, abs=0.51)
    assert scene.pad.canvas[:12, :12].max() == 0.0, "the visitor's drawing survived attract mode"
    until(
        app, clock, lambda: scene.idle.resets > resets, limit=int((scene.kiosk.reset_after + 2) * 2), dt=0.5
    )
    assert clock.now - touched == pytest.approx(scene.kiosk.reset_after, abs=0.51)
    assert scene.ui.layer_card is None and not scene.ui.pin_open
    assert scene.attract.active and scene.attract.orbit_running
    # The camera follows attract mode's loop, framed in the free area.
    frames(app, clock)
    now, goal = Pose.of(scene.camera), scene.attract_pose(scene.attract.orbit_t)
    assert np.allclose(now.target, goal.target, atol=1e-6 * max(goal.distance, 1))
    assert math.isclose(now.distance, goal.distance, rel_tol=1e-6) and math.isclose(now.yaw, goal.yaw)


def test_attract_frames_the_network_in_the_free_area_on_screen(kiosk):
    """Pixels: over the attract loop the nodes are drawn inside the free area, and fill it."""
    app, scene, clock = kiosk
    to_attract(app, scene, clock)
    until(app, clock, lambda: scene.attract.orbit_running and scene.flight is None)
    caption_s, scene.kiosk.caption_s = (
        scene.kiosk.caption_s,
        1e9,
    )  # the whole network's caption: no leader line
    # Ink on the pad, so the nodes are coloured (an empty pad leaves them at the no-input grey).
    until(app, clock, lambda: scene.pad.canvas.sum() > 3000 and not scene.inner.input_blank, dt=1 / 15)
    x0, y0, x1, y1 = (int(v) for v in scene.free_rect())
    from convscope.scenes.kiosk.attract import orbit_period

    period = orbit_period(scene.attract.orbit_speed, scene.attract.yaw_range)
    for t in np.linspace(0.0, period, 5)[:-1]:
        scene.attract.orbit_t = float(t)
        frames(app, clock, dt=1e-4)
        shot = app.read_pixels().astype(int)
        # Nodes are coloured (the colormap, navy at rest); the backdrop, labels and panels are grey.
        ink = shot.max(axis=2) - shot.min(axis=2) > 50
        ink[:, : int(scene.ui.left_edge) + 2] = False
        ink[:, int(scene.ui.right_edge) - 2 :] = False
        ink[y1:] = False
        ys, xs = np.nonzero(ink)
        assert xs.size > 2000, f"no network on screen at t={t:.0f}"
        assert xs.min() >= x0 - 2 and xs.max() <= x1 + 2 and ys.min() >= y0 - 2
        cover = (xs.max() - xs.min()) * (ys.max() - ys.min()) / ((x1 - x0) * (y1 - y0))
        assert cover >= 0.5, f"the network covers {cover:.0%} of the free area at t={t:.0f}"
    scene.kiosk.caption_s = caption_s


def test_locked_keys_do_nothing_and_the_exit_chord_and_pin_work(kiosk):
    app, scene, clock = kiosk
    sink = app.headless_input
    scene._act(scene.idle.touch())  # a visitor: attract mode stops and the camera flies home
    until(app, clock, lambda: scene.flight is None)
    before = Pose.of(scene.camera)
    chords = [
        (glfw.KEY_ESCAPE, 0),
        (glfw.KEY_Q, MOD_CONTROL),
        (glfw.KEY_F4, MOD_ALT),
        (glfw.KEY_W, MOD_CONTROL),
        (glfw.KEY_F, 0),  # the explorer's "fit" key
        (glfw.KEY_Q, MOD_CONTROL | MOD_ALT),  # the chord minus shift
    ]
    for key, mods in chords:
        sink.on_key(key, glfw.PRESS, mods)
        frames(app, clock)
        sink.on_key(key, glfw.RELEASE, mods)
        frames(app, clock)
    assert not scene.exit_requested
    after = Pose.of(scene.camera)
    assert np.array_equal(after.target, before.target) and after.distance == before.distance, (
        "a key moved the camera"
    )
    for ch in "1234":  # a wrong PIN
        sink.on_char(ord(ch))
    sink.on_key(glfw.KEY_ENTER, glfw.PRESS, 0)
    frames(app, clock)
    assert not scene.exit_requested
    for ch in "2718":
        sink.on_char(ord(ch))
    sink.on_key(glfw.KEY_ENTER, glfw.PRESS, 0)
    frames(app, clock)
    assert scene.exit_requested
    scene.exit_requested = False
    mods = MOD_CONTROL | MOD_ALT | MOD_SHIFT
    sink.on_key(glfw.KEY_Q, glfw.PRESS, mods)
    frames(app, clock)
    assert scene.exit_requested
    scene.exit_requested = False


def test_pin_keypad_opens_on_a_long_corner_press(kiosk):
    app, scene, clock = kiosk
    sink = app.headless_input
    sink.on_cursor_pos(W - 5, 5)
    frames(app, clock)
    sink.on_mouse_button(MOUSE_LEFT, True, 0)
    frames(app, clock, int(scene.kiosk.pin_hold * 30) + 3)
    sink.on_mouse_button(MOUSE_LEFT, False, 0)
    frames(app, clock)
    assert scene.ui.pin_open
    for key in "2718":
        tap(app, clock, *scene.ui.target(key))
    tap(app, clock, *scene.ui.target("OK"))
    assert scene.exit_requested
    scene.exit_requested = False
    scene.ui.pin_open = False


def test_every_touch_target_is_at_least_9_mm(kiosk):
    app, scene, clock = kiosk
    scene.ui.pin_open = True
    scene.open_layer_card(1)
    frames(app, clock, 2)
    labels = {t[0] for t in scene.ui.targets}
    assert {"Clear", "+", "-", "Fit", "Reset", "Close", "OK", "0"} <= labels
    for label, _x, _y, w, h in scene.ui.targets:
        assert min(w, h) / PX_PER_MM >= 9.0, f"{label}: {w / PX_PER_MM:.1f} x {h / PX_PER_MM:.1f} mm"
    x0, y0, x1, y1 = scene.ui.pad_rect
    assert (x1 - x0) / PX_PER_MM > 50, "the pad is smaller than 5 cm"
    scene.ui.pin_open = False
    scene.ui.layer_card = None


def test_buttons_pinch_and_double_tap_move_the_camera(kiosk):
    app, scene, clock = kiosk
    scene.attract.stop()
    tap(app, clock, *scene.ui.target("Reset"))
    frames(app, clock, int(FLIGHT_S * 30) + 2)
    d0 = scene.camera.distance
    tap(app, clock, *scene.ui.target("+"))
    frames(app, clock, 15)
    assert scene.camera.distance < d0 * 0.9
    d1 = scene.camera.distance
    sink = app.headless_input
    cx, cy = (scene.ui.left_edge + scene.ui.right_edge) / 2, H / 2
    sink.on_touch_down(1, cx - 50, cy)
    sink.on_touch_down(2, cx + 50, cy)
    frames(app, clock)
    for k in range(1, 6):  # fingers spread from 100 to 200 px apart
        sink.on_touch_move(1, cx - 50 - 10 * k, cy)
        sink.on_touch_move(2, cx + 50 + 10 * k, cy)
        frames(app, clock)
    sink.on_touch_up(1, cx - 100, cy)
    sink.on_touch_up(2, cx + 100, cy)
    frames(app, clock)
    assert math.isclose(scene.camera.distance, d1 / 2.0, rel_tol=0.02), (
        "a pinch to twice the spread halves the distance"
    )
    # Double-tap the input layer: the camera flies to it and its visitor text opens.
    tap(app, clock, *scene.ui.target("Reset"))
    frames(app, clock, int(FLIGHT_S * 30) + 2)
    i = scene.inner.spec.index("input")
    x, y = scene.camera.project(scene.layout.layer_center(i)[None], W, H)[0]
    assert scene.pick_layer(x, y) == i
    sink.on_cursor_pos(x, y)
    for _ in range(2):
        frames(app, clock)
        sink.on_mouse_button(MOUSE_LEFT, True, 0)
        frames(app, clock)
        sink.on_mouse_button(MOUSE_LEFT, False, 0)
    frames(app, clock, int(FLIGHT_S * 30) + 2)
    assert scene.ui.layer_card == i and "28 x 28" in scene.ui.card_text + scene.ui.card_title
    centre = scene.layout.layer_center(i)
    assert np.linalg.norm(scene.camera.target - centre) < 0.2 * scene.camera.distance
    assert scene.camera.distance < d0 * 0.6


def _orange(shot: np.ndarray) -> np.ndarray:
    """Pixels of the accent colour the kiosk gives the network's pick (digit and bar)."""
    r, g, b = (shot[..., i].astype(int) for i in range(3))
    return (r > 200) & (g > 130) & (g < 200) & (b < 90)


def _coloured(shot: np.ndarray) -> np.ndarray:
    """Pixels of the colormap: the grey "no input" nodes, the backdrop and the labels are not."""
    return shot.max(axis=2).astype(int) - shot.min(axis=2) > 50


def test_an_empty_pad_shows_no_guess_and_grey_nodes(kiosk):
    app, scene, clock = kiosk
    sink = app.headless_input
    scene._act(scene.idle.touch())
    scene.ui.layer_card, scene.ui.pin_open = None, False  # nothing coloured over the scene but nodes
    scene.fly_home()  # the whole network: its caption has no leader line
    until(app, clock, lambda: scene.flight is None)
    x0, y0, x1, y1 = scene.ui.pad_rect
    sink.on_cursor_pos(x0 + 0.5 * (x1 - x0), y0 + 0.2 * (y1 - y0))
    frames(app, clock)
    sink.on_mouse_button(MOUSE_LEFT, True, 0)
    for k in range(1, 10):
        sink.on_cursor_pos(x0 + 0.5 * (x1 - x0), y0 + (0.2 + 0.07 * k) * (y1 - y0))
        frames(app, clock)
    sink.on_mouse_button(MOUSE_LEFT, False, 0)
    frames(app, clock, 3)
    side = scene.ui.pad_side
    inked = app.read_pixels().copy()
    panel = (slice(int(y1), H), slice(0, int(scene.ui.left_edge)))
    scene_area = (slice(0, H), slice(int(scene.ui.left_edge) + 2, int(scene.ui.right_edge) - 2))
    assert _orange(inked[panel]).sum() > 200, "no reading shown for a drawn digit"
    assert _coloured(inked[scene_area]).sum() > 2000
    tap(app, clock, *scene.ui.target("Clear"))
    frames(app, clock, 3)
    assert scene.pad.is_empty() and scene.inner.input_blank
    cleared = app.read_pixels()
    assert _orange(cleared[panel]).sum() == 0, "a cleared pad still shows a guess"
    assert _coloured(cleared[scene_area]).sum() < 50, "the nodes did not return to the no-input grey"
    assert abs(scene.ui.pad_side - side) < 1.0, "the pad changed size when the reading went"


def test_a_thin_fc_row_is_a_9_mm_tap_target(kiosk):
    """Zoomed out, where a row is a hairline: taps up to half a control_mm target beyond a fully
    connected row still pick it (the picker's generous hit radius); further out, nothing."""
    app, scene, clock = kiosk
    scene._act(scene.idle.touch())
    scene.fly_home()
    until(app, clock, lambda: scene.flight is None)
    scene.camera.zoom(-8.0)  # the network a third of its home size
    frames(app, clock)
    i = scene.inner.spec.index("fc1")
    lo, hi = scene.layout.layer_bounds[i]
    yc, zc = (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2
    a, b = scene.camera.project(np.array([[lo[0], yc, zc], [hi[0], yc, zc]]), W, H)
    along = (b - a) / np.linalg.norm(b - a)
    half = 0.5 * scene.kiosk.control_mm * PX_PER_MM
    # Beyond the row's right end, the first pixel the plain ray test misses:
    step = next(k for k in range(1, 200) if scene.pick_layer(*(b + along * k), hit_px=0.0) is None)
    assert step * 1.0 < half, "the sheet margin alone already covers half a target"
    for k in (step, 0.5 * (step + half), half - 1.0):
        assert scene.pick_layer(*(b + along * k)) == i, f"{k / PX_PER_MM:.1f} mm beyond fc1's end"
    assert scene.pick_layer(*(b + along * (half + 6.0))) is None


def test_the_language_button_switches_captions_and_words(kiosk):
    """A tap on the language button: the controls' words and the caption turn German (state and
    pixels); the layer in view gets its own caption; the idle reset brings the exhibit's language back."""
    app, scene, clock = kiosk
    scene._act(scene.idle.touch())
    scene.ui.layer_card, scene.ui.pin_open = None, False
    scene.fly_home()
    until(app, clock, lambda: scene.flight is None)
    frames(app, clock, 2)
    assert scene.language == "en" and scene.ui.caption_text.startswith("Your drawing goes in")
    assert scene.ui.target("Clear") is not None and scene.ui.target("DE") is not None
    x0, _, x1, _ = (int(v) for v in scene.free_rect())
    y1 = int(scene.ui.caption_bottom)
    before = app.read_pixels()[:y1, x0:x1].astype(int)
    tap(app, clock, *scene.ui.target("DE"))
    frames(app, clock, 2)
    assert scene.language == "de" and scene.ui.caption_text.startswith("Deine Zeichnung kommt")
    assert scene.ui.target("Löschen") is not None and scene.ui.target("Clear") is None
    assert scene.ui.target("EN") is not None, "the button offers the way back"
    after = app.read_pixels()[:y1, x0:x1].astype(int)
    assert (np.abs(after - before).sum(axis=2) > 100).sum() > 500, "the caption on screen did not change"
    # Fly to a layer: the caption follows it.
    i = scene.inner.spec.index("input")
    scene.fly_to_layer(i)
    until(app, clock, lambda: scene.flight is None)
    frames(app, clock)
    assert scene.layer_in_view() == i and scene.ui.caption_title == "input"
    assert scene.ui.caption_text.startswith("So sieht das Netz")
    scene.reset()
    frames(app, clock)
    assert scene.language == "en"
