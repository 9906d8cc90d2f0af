"""Panels at 1280x720, 1920x1080 and back to 1280x720 in a real window (Xvfb, resized from outside with
xdotool), each scene run as its own process (tests/panel_probe.py), as a user starts the app:
- the explorer with Node details and the Embedding window both open: every panel lies inside the window, no
  two overlap, and the network lies inside the free area and under no panel.  The Embedding window opens
  after the first view, as its checkbox opens it, so the network is framed anew beside it, and again after
  each resize (the camera stays at home);
- the training scene: the same, and its Embedding plot is at least 200 px high at every size.
Screenshots: out/screens/small_<scene>_<size>_<step>.png (look at them after a change).  Needs Xvfb,
xdotool and ImageMagick's `import`.  Run: python -m pytest tests/test_small_screen_window.py -q
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_panel_layout import box_inside, inside, start_probe, stop_probe, wait_report
from xvfb_display import xdo, xvfb_screen

pytestmark = [pytest.mark.window, pytest.mark.slow]
SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"
SIZES = ((1280, 720), (1920, 1080), (1280, 720))


@pytest.fixture(scope="module")
def display():
    if not shutil.which("import"):
        pytest.skip("ImageMagick's import is needed for screenshots")
    with xvfb_screen("2048x1280", first=240, count=50) as name:
        yield name


def overlap(a, b, tol: float = 1.0) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax + tol < bx + bw and bx + tol < ax + aw and ay + tol < by + bh and by + tol < ay + ah


def box_clear_of(box, rect, tol: float = 2.0) -> bool:
    """The network's screen box (x0, y0, x1, y1) and a panel's (x, y, w, h) do not meet."""
    x0, y0, x1, y1 = box
    return not overlap((x0, y0, x1 - x0, y1 - y0), rect, tol)


def shot(display: str, wid: str, name: str, size) -> np.ndarray:
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"small_{name}.png"
    env = {**os.environ, "DISPLAY": display}
    subprocess.run(["import", "-window", "root", str(path)], env=env, check=True, timeout=30)
    out = xdo(display, "getwindowgeometry", "--shell", wid)
    geo = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    x, y = int(geo["X"]), int(geo["Y"])
    img = np.asarray(Image.open(path).convert("RGB"))[y : y + size[1], x : x + size[0]]
    Image.fromarray(img).save(path)
    return img


def run_through_sizes(display: str, tmp_path: Path, kind: str, ready, check) -> None:
    """Start the probe as `kind`, wait for `ready(report)`, then at each of SIZES wait for a settled report,
    take a screenshot and `check(report, w, h)` it."""
    out, stop = tmp_path / "report.json", tmp_path / "stop"
    proc = start_probe(display, kind, out, stop)
    try:
        start = ready(lambda cond, what: wait_report(out, proc, cond, what))
        wid = xdo(display, "search", "--name", "^convscope$").split()[0]
        xdo(display, "windowmove", wid, "0", "0")
        for i, (w, h) in enumerate(SIZES):
            if i:
                xdo(display, "windowsize", wid, str(w), str(h))
            r = wait_report(
                out,
                proc,
                lambda r, w=w, h=h: (
                    r["size"] == [w, h] and r["frames_at_size"] >= 16 and r["frames"] >= start["frames"] + 16
                ),
                f"{w}x{h}",
            )
            shot(display, wid, f"{kind}_{w}x{h}_{i}", (w, h))
            check(r, w, h)
    finally:
        stop_probe(proc, stop)


def panels_and_network_clear(r: dict, w: int, h: int) -> None:
    """Every panel on screen, no two overlapping, the network inside the free area and under no panel."""
    rects = r["rects"]
    for name, rect in rects.items():
        assert inside(rect, w, h), f"at {w}x{h}: {name} at {rect} is off-screen"
    for a, b in itertools.combinations(sorted(rects), 2):
        assert not overlap(rects[a], rects[b]), f"at {w}x{h}: {a} {rects[a]} meets {b} {rects[b]}"
    free, box = r["free"], r["box"]
    assert free[2] < w - 1, f"at {w}x{h} the panels should leave a free area, not all of it: {free}"
    assert box_inside(box, free), f"at {w}x{h}: the network {box} is outside the free area {free}"
    for name, rect in rects.items():
        assert box_clear_of(box, rect), f"at {w}x{h}: the network {box} is under {name} {rect}"


def test_details_and_embedding_leave_the_network_in_view_through_resizes(display, tmp_path):
    both = ("Node details", "Embedding")

    def ready(wait):
        alone = wait(lambda r: r["box"] is not None, "the network")
        assert not set(both) <= set(alone["rects"]), "the Embedding window opens after the first view"
        return wait(lambda r: set(both) <= set(r["rects"]), "both windows open")

    def check(r, w, h):
        assert set(both) <= set(r["rects"]), f"at {w}x{h} both windows should be open: {sorted(r['rects'])}"
        panels_and_network_clear(r, w, h)

    run_through_sizes(display, tmp_path, "explore_embed", ready, check)


def test_the_training_embedding_plot_is_usable_through_resizes(display, tmp_path):
    """The training scene's Embedding plot is at least EMBED_PLOT_MIN high (it was 70 px at 1280x720), and
    the network lies clear of every panel, at each size."""
    from convscope.scenes.train.panels import EMBED_PLOT_MIN

    def ready(wait):
        return wait(lambda r: r["box"] is not None and r["plot"] is not None, "the network and a layout")

    def check(r, w, h):
        panels_and_network_clear(r, w, h)
        x0, y0, x1, y1 = r["plot"]
        assert y1 - y0 >= EMBED_PLOT_MIN - 0.5, f"at {w}x{h} the plot is {x1 - x0:.0f} x {y1 - y0:.0f} px"

    run_through_sizes(display, tmp_path, "train", ready, check)
