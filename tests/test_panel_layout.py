"""Panels in a real window (Xvfb, resized from outside with xdotool): at 1280x720, 1920x1080 and back
to 1280x720 every panel of the explorer, the training scene and the kiosk lies inside the window, and
the network's first view lies inside the free area the docked panels leave (the explorer and the
training scene frame it anew after each resize while the camera is still at home).  Each scene runs as
its own process (tests/panel_probe.py), as a user starts it.  Needs Xvfb and xdotool.
Run: python -m pytest tests/test_panel_layout.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from xvfb_display import xdo, xvfb_screen

pytestmark = [pytest.mark.window, pytest.mark.slow]
PROBE = Path(__file__).with_name("panel_probe.py")
SIZES = ((1280, 720), (1920, 1080), (1280, 720))


@pytest.fixture(scope="module")
def display():
    with xvfb_screen("2048x1280", first=140, count=50) as name:
        yield name


def start_probe(display: str, kind: str, out: Path, stop: Path) -> subprocess.Popen:
    """panel_probe.py running `kind` on `display`, reporting into `out` until `stop` exists."""
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    env["DISPLAY"] = display
    return subprocess.Popen(
        [sys.executable, str(PROBE), kind, str(out), str(stop)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_probe(proc: subprocess.Popen, stop: Path) -> None:
    """Ask the probe to end (the stop file) and wait for it; killed after a minute."""
    stop.touch()
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def wait_report(out: Path, proc, cond, what: str, timeout: float = 150.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the app exited early: {proc.communicate()[1][-2000:]}"
        if out.exists():
            report = json.loads(out.read_text())
            if cond(report):
                return report
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what}: {report if out.exists() else None}"
        )
        time.sleep(0.1)


def inside(rect, w: float, h: float, tol: float = 1.0) -> bool:
    x, y, rw, rh = rect
    bottom_ok = y + rh <= h + tol or (y <= tol and rh > h)  # taller than the window: its top shows
    return x >= -tol and y >= -tol and x + rw <= w + tol and bottom_ok


def box_inside(box, free, tol: float = 2.0) -> bool:
    x0, y0, x1, y1 = box
    fx, fy, fw, fh = free
    return x0 >= fx - tol and y0 >= fy - tol and x1 <= fx + fw + tol and y1 <= fy + fh + tol


@pytest.mark.parametrize("kind", ["explore", "kiosk", "train"])
def test_panels_stay_on_screen_through_resizes_and_the_network_starts_in_the_free_area(
    display, tmp_path, kind
):
    out, stop = tmp_path / "report.json", tmp_path / "stop"
    proc = start_probe(display, kind, out, stop)
    try:
        first = wait_report(
            out,
            proc,
            lambda r: r["box"] is not None and r["fitted_frames"] >= 8 and r["frames_at_size"] >= 8,
            "the first view",
        )
        assert first["size"] == [1280, 720]
        assert box_inside(first["box"], first["free"]), (first["box"], first["free"])
        wid = xdo(display, "search", "--name", "^convscope$").split()[0]
        for w, h in SIZES[1:] + SIZES[:1]:
            xdo(display, "windowsize", wid, str(w), str(h))
            r = wait_report(
                out,
                proc,
                lambda r, w=w, h=h: r["size"] == [w, h] and r["frames_at_size"] >= 12,
                f"{w}x{h}",
            )
            assert r["rects"], "no panels reported"
            for name, rect in r["rects"].items():
                assert inside(rect, w, h), f"{kind} at {w}x{h}: {name} at {rect} is off-screen"
            if kind != "kiosk":  # the kiosk flies home only when asked (Fit, Reset, a new visitor)
                assert box_inside(r["box"], r["free"]), (w, h, r["box"], r["free"])
    finally:
        stop_probe(proc, stop)
