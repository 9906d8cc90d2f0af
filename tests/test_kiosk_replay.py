"""Touch recordings: a visitor's fingers written by the input recorder (`--record-input`) and played
back (`--replay-input`) through the same InputCollector sinks a window feeds give the same pad,
activations, camera and panels as the live events.  Two recordings made with synthetic fingers
ship in tests/data; `python tests/test_kiosk_replay.py` writes them again after a deliberate change
of the scripts or of the kiosk's layout."""

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.ui.recording import InputRecorder, InputReplay
from convscope.scenes.explore.run import wait_until_ready
from convscope.scenes.kiosk.config import KioskConfig
from convscope.scenes.kiosk.run import FrameClock, ui_config
from convscope.scenes.kiosk.scene import KioskScene, Pose, kiosk_ui_scale

W, H = 900, 560
PX_PER_MM = 96.0 / 25.4
DATA = Path(__file__).parent / "data"
RECORDINGS = {"draw": DATA / "kiosk_touch_draw.jsonl", "gestures": DATA / "kiosk_touch_gestures.jsonl"}

Frames = list[list[tuple[str, tuple]]]  # per frame: the collector calls (on_<name>, args)


def start_kiosk(ctx):
    cfg = KioskConfig(attract_after=60.0, reset_after=120.0, pin="2718", seed=1)
    scale = kiosk_ui_scale(cfg.control_mm, PX_PER_MM, 1.0)
    clock = FrameClock(1 / 30)
    scene = KioskScene(AppConfig(), cfg, ui_scale=scale, px_per_mm=PX_PER_MM, clock=clock)
    app = App(scene, ctx=ctx, size=(W, H), ui_config=ui_config(cfg, scale), quit_chord=False)
    wait_until_ready(app, scene.inner, 60)
    for _ in range(20):  # the pad panel settles its size; the start-up card goes
        clock.tick()
        app.frame()
    return app, scene, clock


def _stroke(points, finger=0, every=1) -> Frames:
    out: Frames = [[("touch_down", (finger, *points[0]))]]
    out += [[("touch_move", (finger, *p))] for p in points[1::every]]
    out.append([("touch_up", (finger, *points[-1]))])
    return out


def _tap(x, y, finger=0) -> Frames:
    return [[("touch_down", (finger, x, y))], [("touch_up", (finger, x, y))]]


def draw_script(scene) -> Frames:
    """A finger writes a 7, presses Clear, writes a 1."""
    x0, y0, x1, y1 = scene.ui.pad_rect
    at = lambda u, v: (x0 + u * (x1 - x0), y0 + v * (y1 - y0))  # noqa: E731
    seven = [at(0.25 + 0.05 * k, 0.25) for k in range(11)] + [
        at(0.75 - 0.03 * k, 0.25 + 0.05 * k) for k in range(1, 12)
    ]
    one = [at(0.5 + 0.005 * k, 0.2 + 0.05 * k) for k in range(13)]
    return _stroke(seven) + [[]] * 10 + _tap(*scene.ui.target("Clear")) + [[]] * 5 + _stroke(one) + [[]] * 10


def gestures_script(scene) -> Frames:
    """One finger turns the network, two fingers pinch it closer and pan it, a double tap on the
    input layer flies to it and opens its text."""
    cx, cy = (scene.ui.left_edge + scene.ui.right_edge) / 2, H / 2
    out = _stroke([(cx + 8 * k, cy + 3 * k) for k in range(12)])
    out.append([("touch_down", (1, cx - 50, cy)), ("touch_down", (2, cx + 50, cy))])
    out += [
        [("touch_move", (1, cx - 50 - 9 * k, cy)), ("touch_move", (2, cx + 50 + 9 * k, cy))]
        for k in range(1, 8)
    ]
    out += [
        [("touch_move", (1, cx - 113 + 6 * k, cy + 4 * k)), ("touch_move", (2, cx + 113 + 6 * k, cy + 4 * k))]
        for k in range(1, 6)
    ]
    out.append([("touch_up", (1, cx - 83, cy + 20)), ("touch_up", (2, cx + 143, cy + 20))])
    out += [[]] * 5
    i = scene.inner.spec.index("input")
    x, y = scene.camera.project(scene.layout.layer_center(i)[None], W, H)[0]
    out += _tap(x, y) + [[]] + _tap(x, y) + [[]] * 30
    return out


SCRIPTS = {"draw": draw_script, "gestures": gestures_script}


def play_live(app, clock, frames: Frames) -> None:
    sink = app.headless_input
    for calls in frames:
        for name, args in calls:
            getattr(sink, f"on_{name}")(*args)
        clock.tick()
        app.frame()


def play_replay(app, clock, path: Path) -> int:
    sink = app.headless_input
    sink.replay = InputReplay(path, sink.window_size)
    n = len(sink.replay.frames)
    for _ in range(n):
        clock.tick()
        app.frame()
    assert sink.replay is None, "the replay did not finish"
    return n


def outcome(app, scene):
    """What the visitor's touches left behind, once the worker has answered the last drawing."""
    deadline = time.monotonic() + 30
    while not scene.ready:
        assert time.monotonic() < deadline, "the worker did not answer"
        time.sleep(0.002)
        app.frame()
    return {
        "pad": scene.pad.canvas.copy(),
        "activations": scene.inner.activations.copy(),
        "camera": Pose.of(scene.camera),
        "card": scene.ui.layer_card,
        "visitors": scene.idle.visitors,
    }


def record(ctx, name: str, path: Path):
    app, scene, clock = start_kiosk(ctx)
    try:
        script = SCRIPTS[name](scene)
        recorder = InputRecorder(path, app.headless_input.window_size, app.headless_input.framebuffer_size)
        app.headless_input.recorder = recorder
        try:
            play_live(app, clock, script)
        finally:
            app.headless_input.recorder = None
            recorder.close()
        return outcome(app, scene)
    finally:
        app.close()


def replay(ctx, path: Path):
    app, scene, clock = start_kiosk(ctx)
    try:
        play_replay(app, clock, path)
        return outcome(app, scene)
    finally:
        app.close()


def assert_same(a, b) -> None:
    np.testing.assert_array_equal(a["pad"], b["pad"])
    np.testing.assert_allclose(a["activations"], b["activations"], rtol=1e-6, atol=1e-6)
    ca, cb = a["camera"], b["camera"]
    np.testing.assert_allclose(ca.target, cb.target, rtol=1e-9, atol=1e-9)
    assert math.isclose(ca.distance, cb.distance, rel_tol=1e-9)
    assert math.isclose(ca.yaw, cb.yaw, abs_tol=1e-12) and math.isclose(ca.pitch, cb.pitch, abs_tol=1e-12)
    assert a["card"] == b["card"] and a["visitors"] == b["visitors"]


pytestmark = pytest.mark.gl


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_shipped_recording_replays_to_the_same_state_as_the_synthetic_fingers(ctx, name, tmp_path):
    live = record(ctx, name, tmp_path / "again.jsonl")
    played = replay(ctx, RECORDINGS[name])
    assert_same(live, played)
    # The recording captures what the fingers did: a drawing, or a camera move and a layer's text.
    if name == "draw":
        assert live["pad"].sum() > 500 and live["pad"][:, : int(0.4 * live["pad"].shape[1])].sum() == 0
    else:
        assert live["card"] is not None

    # Recording the same fingers again gives the same events (times aside).
    def strip(p):
        return [{k: v for k, v in json.loads(x).items() if k != "t"} for x in p.read_text().splitlines()]

    assert strip(tmp_path / "again.jsonl") == strip(RECORDINGS[name])


def test_the_live_pointer_waits_while_a_recording_plays(ctx):
    app, scene, clock = start_kiosk(ctx)
    try:
        sink = app.headless_input
        sink.replay = InputReplay(RECORDINGS["draw"], sink.window_size)
        x0, y0, x1, y1 = scene.ui.pad_rect
        sink.on_touch_down(7, x0 + 5, y1 - 5)  # a live finger in the pad's corner: ignored
        clock.tick()
        app.frame()
        sink.on_touch_up(7, x0 + 5, y1 - 5)
        while sink.replay is not None:
            clock.tick()
            app.frame()
        assert scene.pad.canvas[-20:, :20].max() == 0.0
    finally:
        app.close()


def test_a_recording_in_another_window_size_is_scaled():
    r = InputReplay(RECORDINGS["draw"], (2 * W, 2 * H))
    name, args = r.frames[0][0]
    r0 = InputReplay(RECORDINGS["draw"], (W, H))
    assert name == "touch_down" and np.allclose(
        r._scaled(name, args)[1:], 2 * np.array(r0.frames[0][0][1][1:])
    )


def test_a_broken_recording_is_refused(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"convscope_input": 1}\n{"e": "key", "a": [1]}\n')
    with pytest.raises(ValueError, match="unknown event"):
        InputReplay(bad)
    bad.write_text("hello\n")
    with pytest.raises(ValueError, match="not a convscope input recording"):
        InputReplay(bad)


if __name__ == "__main__":
    from convscope.engine.gpu.context import create_headless

    context = create_headless()
    for key, target in RECORDINGS.items():
        record(context, key, target)
        print(f"wrote {target}")
    context.release()
