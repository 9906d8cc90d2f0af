"""End to end in a real window: convscope runs under Xvfb, xdotool draws a digit on the pad with the
mouse, and the guesses and node colours follow.

The app runs as its own process (as a user starts it); it writes its screenshot and activations
when Ctrl+Q closes it.  Needs Xvfb and xdotool (installed by the README's test command).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from xvfb_display import xdo, xvfb_screen

pytestmark = [pytest.mark.window, pytest.mark.slow]

W, H = 1200, 760
# The "Draw a digit" panel sits at (10, 10); the pad starts below its title bar, inside its padding.
PAD_X, PAD_Y, PAD_SIDE = 18, 37, 280


@pytest.fixture(scope="module")
def display():
    with xvfb_screen("1280x800", first=90) as name:
        yield name


def run_app(display: str, tmp: Path, strokes: list[list[tuple[int, int]]]) -> tuple[np.ndarray, dict]:
    """Start convscope in a window, wait for its first result, draw `strokes`, quit; return the outputs."""
    tmp.mkdir(parents=True, exist_ok=True)
    shot, dump, log = tmp / "shot.png", tmp / "acts.npz", tmp / "startup.log"
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    env.update(DISPLAY=display, CONVSCOPE_STARTUP_LOG=str(log))
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convscope.scenes.cli",
            "--width",
            str(W),
            "--height",
            str(H),
            "--no-vsync",
            "--screenshot",
            str(shot),
            "--dump-activations",
            str(dump),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (log.exists() and "first_activations" in log.read_text()):
            assert app.poll() is None, f"convscope exited early: {app.communicate()[1]}"
            assert time.monotonic() < deadline, "no first result within 90 s"
            time.sleep(0.1)
        wid = xdo(display, "search", "--name", "^convscope$").split()[0]
        for stroke in strokes:
            x, y = stroke[0]
            xdo(display, "mousemove", "--window", wid, str(PAD_X + x), str(PAD_Y + y))
            time.sleep(0.15)
            xdo(display, "mousedown", "1")
            for x, y in stroke[1:]:
                time.sleep(0.05)
                xdo(display, "mousemove", "--window", wid, str(PAD_X + x), str(PAD_Y + y))
            time.sleep(0.15)
            xdo(display, "mouseup", "1")
        time.sleep(1.0)  # the stroke-end result comes back within a frame or two
        xdo(display, "mousemove", "--window", wid, str(W // 2), str(H - 20))  # off the panels
        xdo(display, "windowfocus", wid)
        xdo(display, "key", "ctrl+q")
        out, err = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert app.returncode == 0, err
    return np.asarray(Image.open(shot).convert("RGB")), dict(np.load(dump))


def test_drawing_a_one_with_the_mouse_changes_guess_and_nodes(display, tmp_path):
    blank_shot, blank = run_app(display, tmp_path / "blank", [])
    one = [[(140, 40 + 10 * i) for i in range(21)]]  # a vertical bar down the middle of the pad
    drawn_shot, drawn = run_app(display, tmp_path / "one", one)

    assert blank["input"].max() == 0.0
    assert drawn["input"].max() > 0.9, "the pointer strokes did not reach the network input"
    assert int(np.argmax(drawn["probabilities"])) == 1, drawn["probabilities"]
    assert drawn["probabilities"].max() > 0.5
    assert np.abs(drawn["conv1"] - blank["conv1"]).max() > 0.1

    # The pad shows ink where the stroke went, and the scene's nodes changed colour.
    pad = drawn_shot[PAD_Y + 100 : PAD_Y + 200, PAD_X + 135 : PAD_X + 146]
    assert pad.mean() > 150, "no ink drawn on the pad"
    scene = (slice(H // 2, H), slice(PAD_X + PAD_SIDE + 200, W - 300))
    diff = np.abs(drawn_shot[scene].astype(int) - blank_shot[scene].astype(int)).sum(axis=2)
    assert (diff > 60).sum() > 200, "node colours did not follow the drawing"
