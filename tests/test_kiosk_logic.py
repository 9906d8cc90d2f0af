"""Kiosk logic without a GPU: the idle state machine on a simulated clock, config errors that name
the key and the line, exit chords, the stroke library, attract mode inking a pad, and touch
gestures in the engine's input layer."""

import math
from pathlib import Path

import glfw
import numpy as np
import pytest
from convscope.engine.camera import HOME_PITCH, OrbitCamera
from convscope.engine.graph.layout import build_layout
from convscope.engine.ui.input import MOUSE_LEFT, InputCollector
from convscope.models.specs import lenet_spec, mlp_spec
from convscope.scenes.explore.pad import PadState
from convscope.scenes.kiosk.attract import (
    DIGIT_BOX,
    Attract,
    attract_camera,
    load_strokes,
    orbit_period,
    sample_stroke,
)
from convscope.scenes.kiosk.config import (
    KioskConfig,
    KioskConfigError,
    find_line,
    load_kiosk_config,
    parse_chord,
)
from convscope.scenes.kiosk.idle import (
    ATTRACT,
    IDLE,
    RESET,
    START_ATTRACT,
    STOP_ATTRACT,
    VISITOR,
    IdleMachine,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- who owns the exhibit -------------------------------------------------------------------------


def test_idle_then_attract_then_visitor_then_reset():
    clock = FakeClock()
    m = IdleMachine(attract_after=8.0, reset_after=45.0, clock=clock)
    assert m.state == IDLE
    clock.now += 7.9
    assert m.step(False) == [] and m.state == IDLE
    clock.now += 0.2
    assert m.step(False) == [START_ATTRACT] and m.state == ATTRACT
    clock.now += 600.0  # attract mode runs for as long as nobody comes; nobody came, so no reset
    assert m.step(False) == [] and m.state == ATTRACT and m.resets == 0
    assert m.step(True) == [STOP_ATTRACT] and m.state == VISITOR  # at once, on the first touch
    clock.now += 7.0
    assert m.step(False) == [] and m.state == VISITOR
    assert m.step(True) == []  # still drawing: both timers start over
    clock.now += 7.9
    assert m.step(False) == []
    clock.now += 0.2  # attract_after after the last touch: the pen takes over, no reset yet
    assert m.step(False) == [START_ATTRACT] and m.state == ATTRACT and m.resets == 0
    clock.now += 45.0 - 8.1 - 0.1
    assert m.step(False) == []
    clock.now += 0.2  # reset_after after the last touch: the reset, once
    assert m.step(False) == [RESET] and m.state == ATTRACT
    clock.now += 1000.0
    assert m.step(False) == []
    assert (m.visitors, m.resets) == (1, 1)


def test_attract_and_reset_count_from_the_last_touch_with_a_fake_clock():
    """attract_after = 8, reset_after = 20: attract 8 s after the visitor's last touch (a Clear
    counts), the reset 20 s after it, each to the frame, at 60 fps."""
    clock = FakeClock()
    m = IdleMachine(attract_after=8.0, reset_after=20.0, clock=clock)
    m.step(True)  # the visitor draws ...
    clock.now += 5.0
    m.touch()  # ... and presses Clear
    touched = clock.now
    events = {}
    for _ in range(60 * 30):
        clock.now += 1 / 60
        for action in m.step(False):
            events.setdefault(action, clock.now - touched)
    assert events[START_ATTRACT] == pytest.approx(8.0, abs=1 / 60 + 1e-9)
    assert events[RESET] == pytest.approx(20.0, abs=1 / 60 + 1e-9)
    assert STOP_ATTRACT not in events


def test_reset_before_attract_starts_both_together():
    clock = FakeClock()
    m = IdleMachine(attract_after=30.0, reset_after=10.0, clock=clock)
    m.step(True)
    clock.now += 10.01
    assert m.step(False) == [RESET, START_ATTRACT]


def test_a_visitor_before_attract_mode_gets_the_pad_without_a_stop():
    clock = FakeClock()
    m = IdleMachine(attract_after=8.0, reset_after=45.0, clock=clock)
    clock.now += 3.0
    assert m.step(True) == [] and m.state == VISITOR


# -- config ----------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_loads_app_and_kiosk_settings(tmp_path):
    path = write(
        tmp_path,
        'model = "mlp"\n\n[kiosk]\nattract_after = 5\nexit_chord = "ctrl+shift+e"\n'
        'panels = ["pad", "controls"]\n\n[kiosk.text]\nfc1 = "Dreihundert Knoten."\n'
        '[kiosk.strings]\nattract = "Zeichne eine Ziffer"\n',
    )
    app, kiosk = load_kiosk_config(path, width=800)
    assert (app.model, app.width) == ("mlp", 800)
    assert kiosk.attract_after == 5.0 and kiosk.panels == ["pad", "controls"]
    assert kiosk.layer_text("mlp", "fc1") == "Dreihundert Knoten."
    assert kiosk.layer_text("lenet", "conv1").startswith("Six filters")  # English built in
    assert kiosk.string("attract") == "Zeichne eine Ziffer" and kiosk.string("clear") == "Clear"
    assert kiosk.exit_keys == (glfw.MOD_CONTROL | glfw.MOD_SHIFT, glfw.KEY_E)


@pytest.mark.parametrize(
    "text, line, words",
    [
        (
            'model = "lenet"\n\n[kiosk]\nhold_digit = 2\nattract_after = "soon"\n',
            5,
            ["kiosk.attract_after", "number"],
        ),
        ("[kiosk]\n# idle\n\nreset_aftr = 30\n", 4, ["kiosk.reset_aftr", "unknown"]),
        ('kiosk.panels = ["pad", "jukebox"]\n', 1, ["kiosk.panels", "jukebox"]),
        ('[kiosk]\nexit_chord = "q"\n', 2, ["kiosk.exit_chord", "modifiers+key"]),
        ('[kiosk]\nexit_chord = ""\npin = ""\n', 2, ["kiosk.exit_chord", "pin"]),
        ('[kiosk]\npin = "12a4"\n', 2, ["kiosk.pin", "digits"]),
        (
            '[kiosk]\nfullscreen = true\n[kiosk.strings]\nprompt = "x"\n',
            4,
            ["kiosk.strings.prompt", "unknown"],
        ),
        ('width = 900\ncolourmap = "viridis"\n[kiosk]\n', 2, ["colourmap", "unknown"]),
        ('width = 900\ncolormap = "rainbow"\n', 2, ["colormap", "rainbow"]),
        ("[kiosk]\nattract_after = 3\nattract_after = 4\n", 3, ["not valid TOML"]),
    ],
)
def test_config_errors_name_the_key_and_the_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(KioskConfigError) as err:
        load_kiosk_config(path)
    message = str(err.value)
    assert f"line {line}" in message or f"kiosk.toml:{line}:" in message, message
    for word in words:
        assert word in message, message
    assert "\n" not in message


def test_find_line_handles_tables_dotted_keys_and_inline_tables():
    text = 'a = 1\n[kiosk]\n  pin = "1"\n[kiosk.text]\n"conv1" = "x"\n[other]\npin = 2\n'
    assert find_line(text, ("kiosk", "pin")) == 3
    assert find_line(text, ("kiosk", "text", "conv1")) == 5
    assert find_line(text, ("kiosk", "text")) == 4
    assert find_line('kiosk = { pin = "1" }\n', ("kiosk", "pin")) == 1
    assert find_line(text, ("kiosk", "missing")) is None


def test_exit_chords():
    assert parse_chord("Ctrl+Alt+Shift+Q") == (glfw.MOD_CONTROL | glfw.MOD_ALT | glfw.MOD_SHIFT, glfw.KEY_Q)
    assert parse_chord("super+f12") == (glfw.MOD_SUPER, glfw.KEY_F12)
    for bad in ("shift+q", "ctrl+", "ctrl+banana", "hyper+q"):
        with pytest.raises(ValueError):
            parse_chord(bad)
    assert KioskConfig(exit_chord="", pin="2718").exit_keys is None


# -- strokes and attract mode -------------------------------------------------------------------------


def test_the_stroke_library_has_every_digit_in_the_unit_box():
    lib = load_strokes()
    assert sorted(lib) == [str(d) for d in range(10)]
    for digit, variants in lib.items():
        assert len(variants) >= 3, digit
        for strokes in variants:
            pts = np.vstack(strokes)
            assert pts.min() >= -0.02 and pts.max() <= 1.02, digit
            for s in strokes:  # dense enough that the pen draws smooth curves
                assert np.linalg.norm(np.diff(s, axis=0), axis=1).max() < 0.03, digit


def test_a_repeated_control_point_is_a_sharp_corner():
    pts = sample_stroke([[0, 0], [1, 0], [1, 0], [1, 1]])
    corner = np.argmin(np.linalg.norm(pts - [1, 0], axis=1))
    assert np.allclose(pts[corner], [1, 0])
    assert np.abs(pts[:corner, 1]).max() < 1e-9 and np.abs(pts[corner:, 0] - 1).max() < 1e-9


def test_attract_inks_the_pad_along_the_stroke_and_runs_the_camera_loop():
    pad = PadState(size=280, radius=18)
    cam = OrbitCamera()
    attract = Attract(pad, cam, pen_speed=1.3, orbit_speed=5.0, hold_digit=1.0, seed=3)
    attract.start()
    attract.orbit_running = True  # the scene sets it once the camera has flown into the loop
    versions, inked = [], []
    for _ in range(90):  # three seconds at 30 fps
        attract.update(1 / 30)
        versions.append(pad.version)
        inked.append(float(pad.canvas.sum()))
        if attract.digits_drawn:
            break
    assert attract.digits_drawn == 1, "one digit takes under three seconds"
    assert len(set(versions)) > 20, "the ink grows frame by frame, like a pen"
    assert all(b >= a for a, b in zip(inked, inked[1:], strict=False))
    ys, xs = np.nonzero(pad.canvas > 0.5)
    lo, hi = DIGIT_BOX[0] * 280 - 30, DIGIT_BOX[1] * 280 + 30
    assert xs.min() > lo and xs.max() < hi and ys.min() > lo and ys.max() < hi
    assert math.isclose(attract.orbit_t, len(versions) / 30, rel_tol=1e-6)
    attract.stop()
    assert not pad.drawing and attract.pen is None


def test_attract_cycles_through_all_ten_digits():
    pad = PadState(size=140, radius=9)
    attract = Attract(pad, OrbitCamera(), hold_digit=0.2, seed=0)
    attract.start()
    seen = set()
    for _ in range(3000):
        attract.update(0.1)
        if attract.digit is not None:
            seen.add(attract.digit)
        if attract.digits_drawn >= 10:
            break
    assert seen == {str(d) for d in range(10)}


# -- touch in the input layer --------------------------------------------------------------------------


def test_one_finger_is_the_left_button_and_two_fingers_pinch_and_pan():
    inp = InputCollector((800, 600), (800, 600))
    inp.on_touch_down(7, 100, 100)
    s = inp.snapshot(0.0)
    assert s.was_pressed(MOUSE_LEFT) and s.mouse_pos == (100.0, 100.0) and s.touches == 1
    inp.on_touch_move(7, 120, 110)
    s = inp.snapshot(0.016)
    assert s.is_down(MOUSE_LEFT) and s.mouse_delta == (20.0, 10.0) and s.pinch == 1.0
    inp.on_touch_down(9, 220, 110)  # a second finger: the stroke ends, the gesture begins
    s = inp.snapshot(0.032)
    assert s.was_released(MOUSE_LEFT) and not s.is_down(MOUSE_LEFT) and s.touches == 2
    inp.on_touch_move(9, 320, 110)  # spread 100 -> 200 px
    inp.on_touch_move(7, 120, 150)
    s = inp.snapshot(0.048)
    expected = math.hypot(200, 40) / 100.0
    assert math.isclose(s.pinch, expected, rel_tol=1e-9)
    assert s.pan2 == (50.0, 20.0) and s.touch_center == (220.0, 130.0)
    assert not s.buttons_pressed
    inp.on_touch_up(9, 320, 110)
    inp.on_touch_move(7, 300, 300)  # the finger left behind draws nothing until all are up
    s = inp.snapshot(0.064)
    assert not s.is_down(MOUSE_LEFT) and s.pinch == 1.0 and s.pan2 == (0.0, 0.0)
    inp.on_touch_up(7, 300, 300)
    inp.on_touch_down(1, 50, 50)
    assert inp.snapshot(0.08).was_pressed(MOUSE_LEFT)


# -- attract framing -------------------------------------------------------------------------------


def _network_box(goal, layout, w, h):
    cam = OrbitCamera(target=goal.target, yaw=goal.yaw, pitch=goal.pitch, distance=goal.distance)
    half = layout.sizes[:, None] / 2.0  # node squares lie flat: their x / z corners bound them
    pts = np.concatenate(
        [
            cam.project(layout.positions + np.c_[sx * half, 0 * half, sz * half], w, h)
            for sx in (-1, 1)
            for sz in (-1, 1)
        ]
    )
    assert np.isfinite(pts).all()
    return pts.min(0), pts.max(0)


# Free areas as the kiosk panels leave them (pad panel on the left, the control column on the right,
# the caption room at the top, the prompt strip at the bottom), measured from the kiosk scene at
# these sizes (96 dpi, 10 mm controls).
FREE = {(1280, 720): (400.0, 175.5, 1136.0, 604.8), (1920, 1080): (760.0, 175.5, 1776.0, 964.8)}


@pytest.mark.parametrize("size", sorted(FREE))
@pytest.mark.parametrize("make, cover", [(lenet_spec, 0.5), (mlp_spec, 0.2)])
def test_attract_camera_keeps_the_network_in_the_free_area_over_a_whole_loop(size, make, cover):
    """Sampled over one full loop: the network's screen box lies inside the free area and covers at
    least half of it (LeNet; the MLP is a few long rows, four times wider than tall, so it can fill
    only the free area's width), and the view never turns edge-on."""
    w, h = size
    x0, y0, x1, y1 = free = FREE[size]
    layout = build_layout(make())
    period = orbit_period(5.0)
    yaws = []
    for t in np.linspace(0.0, period, 121):
        goal = attract_camera(layout.layer_bounds, free, (w, h), float(t), orbit_speed=5.0)
        (bx0, by0), (bx1, by1) = _network_box(goal, layout, w, h)
        assert x0 <= bx0 and bx1 <= x1 and y0 <= by0 and by1 <= y1, (
            f"network leaves the free area at t={t:.1f}"
        )
        area = (bx1 - bx0) * (by1 - by0) / ((x1 - x0) * (y1 - y0))
        assert area >= cover, f"network covers {area:.0%} of the free area at t={t:.1f}"
        assert max((bx1 - bx0) / (x1 - x0), (by1 - by0) / (y1 - y0)) > 0.85, "not filling the free area"
        assert goal.pitch >= HOME_PITCH - math.radians(7)
        yaws.append((goal.yaw + math.pi) % (2 * math.pi) - math.pi)
    assert max(np.abs(yaws)) <= math.radians(30.0) + 1e-9 and max(yaws) - min(yaws) > math.radians(55)
    # One loop later the camera is where it began: no drift however long attract mode runs.
    a = attract_camera(layout.layer_bounds, free, (w, h), 0.0)
    b = attract_camera(layout.layer_bounds, free, (w, h), period)
    assert np.allclose(a.target, b.target) and math.isclose(a.distance, b.distance, rel_tol=1e-6)


def test_captions_from_the_config_in_any_language(tmp_path):
    from convscope.scenes.kiosk.captions import caption, words

    path = write(
        tmp_path,
        'model = "lenet"\n[kiosk]\nlanguages = ["en", "fr"]\n'
        '[kiosk.captions.fr]\nconv1 = "Six filtres glissent sur l\'image."\n',
    )
    _, cfg = load_kiosk_config(path)
    assert cfg.languages == ["en", "fr"]
    assert caption("lenet", "conv1", "fr", cfg.captions) == "Six filtres glissent sur l'image."
    assert caption("lenet", "conv1", "de", cfg.captions).startswith("Sechs Detektoren")
    assert caption("mlp", "fc1", "en").startswith("Every node here looks at every pixel")
    assert caption("lenet", "conv1", "fr") is None
    assert words("de", {"clear": "Clear", "fit": "Fit"}, {})["clear"] == "Löschen"
    bad = write(tmp_path, '[kiosk]\ncaptions = {fr = "x"}\n')
    with pytest.raises(KioskConfigError, match=r"kiosk.toml:2: kiosk.captions: expected tables"):
        load_kiosk_config(bad)
    bad = write(tmp_path, '[kiosk]\nlanguages = ["english"]\n')
    with pytest.raises(KioskConfigError, match="not a language code"):
        load_kiosk_config(bad)
