"""Presentation mode and the remembered UI scale in a real window (Xvfb, keys sent with xdotool), for the
explorer and the training scene, each run as its own process (tests/view_probe.py):

- F5 folds the panels to their title bars, makes the type 1.5x larger and gives the network the room:
  the free area and the network's screen box grow, the left column turns from panel to scene (pixels of
  a screenshot of the screen), every panel stays on screen at 1280x720 and 1920x1080; F5 again unfolds.
- Ctrl+= twice makes the UI 21 % larger and writes settings.json in $XDG_CONFIG_HOME/convscope; a new
  run starts at that scale.
Screenshots: out/screens/view_<scene>_<step>.png (look at them after a change).  Needs Xvfb, xdotool
and ImageMagick's `import`.  Run: python -m pytest tests/test_view_window.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from xvfb_display import xdo, xvfb_screen

pytestmark = [pytest.mark.window, pytest.mark.slow]
PROBE = Path(__file__).with_name("view_probe.py")
SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"
MAIN_PANELS = {"explore": ("Draw a digit", "Network"), "train": ("Training", "Network")}


@pytest.fixture(scope="module")
def display():
    if not shutil.which("import"):
        pytest.skip("ImageMagick's import is needed for screenshots")
    with xvfb_screen("2048x1280", first=190, count=50) as name:
        yield name


class Probe:
    """One run of the probe: its process, its report, keys and screenshots."""

    def __init__(self, display: str, kind: str, tmp: Path, env: dict, run: int) -> None:
        self.display, self.kind = display, kind
        self.out, self.stop = tmp / f"report{run}.json", tmp / f"stop{run}"
        self.proc = subprocess.Popen(
            [sys.executable, str(PROBE), kind, str(self.out), str(self.stop)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.wid = ""

    def wait(self, cond, what: str, timeout: float = 150.0) -> dict:
        deadline, report = time.monotonic() + timeout, None
        while True:
            assert self.proc.poll() is None, f"the app exited early: {self.proc.communicate()[1][-2000:]}"
            if self.out.exists():
                report = json.loads(self.out.read_text())
                if cond(report):
                    return report
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {report}"
            time.sleep(0.1)

    def settled(self, cond=lambda r: True, what: str = "a settled frame") -> dict:
        """A report from at least 16 frames after the present one that meets `cond`."""
        start = self.wait(lambda r: True, "a report")["frames"]
        return self.wait(lambda r: r["frames"] >= start + 16 and r["frames_at_size"] >= 12 and cond(r), what)

    def window(self) -> str:
        if not self.wid:
            self.wid = xdo(self.display, "search", "--name", "^convscope").split()[0]
        return self.wid

    def origin(self) -> tuple[int, int]:
        """Where the window's top-left corner lies on the screen (the screen has no window manager)."""
        out = xdo(self.display, "getwindowgeometry", "--shell", self.window())
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return int(values["X"]), int(values["Y"])

    def key(self, keys: str) -> None:
        self.window()
        xdo(self.display, "windowfocus", self.wid)
        xdo(self.display, "key", "--window", self.wid, keys)

    def resize(self, w: int, h: int) -> None:
        self.window()
        xdo(self.display, "windowmove", self.wid, "0", "0")  # the whole window on the screen
        xdo(self.display, "windowsize", self.wid, str(w), str(h))

    def shot(self, name: str, size) -> np.ndarray:
        """The window's part of the screen, saved for a look."""
        SCREENS.mkdir(parents=True, exist_ok=True)
        path = SCREENS / f"view_{self.kind}_{name}.png"
        env = {**os.environ, "DISPLAY": self.display}
        subprocess.run(["import", "-window", "root", str(path)], env=env, check=True, timeout=30)
        x, y = self.origin()
        img = np.asarray(Image.open(path).convert("RGB"))[y : y + size[1], x : x + size[0]]
        Image.fromarray(img).save(path)
        return img

    def close(self) -> None:
        self.stop.touch()
        try:
            self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


def inside(rect, w: float, h: float, tol: float = 1.0) -> bool:
    x, y, rw, rh = rect
    return x >= -tol and y >= -tol and x + rw <= w + tol and y + min(rh, h) <= h + tol


def box_inside(box, free, tol: float = 2.0) -> bool:
    x0, y0, x1, y1 = box
    fx, fy, fw, fh = free
    return x0 >= fx - tol and y0 >= fy - tol and x1 <= fx + fw + tol and y1 <= fy + fh + tol


def dark_fraction(img: np.ndarray) -> float:
    """Share of ImGui's dark, neutral grey window background (the scene's backdrop is a bluish grey)."""
    img = img.astype(int)
    return float(((img.max(-1) < 60) & (img[..., 2] - img[..., 0] < 6)).mean())


@pytest.mark.parametrize("kind", ["explore", "train"])
def test_presentation_mode_and_the_remembered_ui_scale(display, tmp_path, kind):
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    env["DISPLAY"] = display
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    settings = tmp_path / "config" / "convscope" / "settings.json"
    p = Probe(display, kind, tmp_path, env, 1)
    try:
        normal = p.wait(lambda r: r["box"] is not None and r["frames_at_size"] >= 12, "the first view")
        normal = p.settled()
        assert normal["size"] == [1280, 720] and normal["ui_scale"] == pytest.approx(1.0)
        before = p.shot("normal_1280x720", (1280, 720))
        column = (slice(120, 700), slice(0, 300)) if kind == "explore" else (slice(120, 700), slice(0, 320))
        assert dark_fraction(before[column]) > 0.5, "the left column should show a panel"

        p.key("F5")
        shown = p.settled(lambda r: r["presentation"] and set(MAIN_PANELS[kind]) <= set(r["collapsed"]), "F5")
        assert shown["ui_scale"] == pytest.approx(1.5)
        after = p.shot("presentation_1280x720", (1280, 720))
        assert dark_fraction(after[column]) < 0.15, "the folded panels should leave the left column"
        free0, free1 = normal["free"], shown["free"]
        assert free1[2] * free1[3] > 1.2 * free0[2] * free0[3], (free0, free1)
        width0, width1 = normal["box"][2] - normal["box"][0], shown["box"][2] - shown["box"][0]
        assert width1 > 1.1 * width0, f"the network should grow: {width0:.0f} -> {width1:.0f} px wide"
        for w, h in ((1920, 1080), (1280, 720)):
            p.resize(w, h)
            r = p.settled(lambda r, w=w, h=h: r["size"] == [w, h] and r["presentation"], f"{w}x{h}")
            for name, rect in r["rects"].items():
                assert inside(rect, w, h), f"{kind} at {w}x{h}: {name} at {rect} is off-screen"
            assert box_inside(r["box"], r["free"]), (w, h, r["box"], r["free"])
            if w == 1920:
                p.shot("presentation_1920x1080", (w, h))

        p.key("F5")
        back = p.settled(lambda r: not r["presentation"], "F5 again")
        assert not set(MAIN_PANELS[kind]) & set(back["collapsed"]) and back["ui_scale"] == pytest.approx(1.0)

        assert not settings.exists(), "nothing to remember yet"
        p.key("ctrl+equal")
        p.settled(lambda r: r["remembered"] > 1.05, "Ctrl+=")
        p.key("ctrl+equal")
        bigger = p.settled(lambda r: r["remembered"] > 1.15, "Ctrl+= twice")
        assert bigger["ui_scale"] == pytest.approx(1.21, abs=1e-3)
        assert json.loads(settings.read_text())["ui_scale"] == pytest.approx(1.21, abs=1e-3)
    finally:
        p.close()

    q = Probe(display, kind, tmp_path, env, 2)
    try:
        again = q.wait(lambda r: r["box"] is not None, "the second run")
        assert again["ui_scale"] == pytest.approx(1.21, abs=1e-3), "the UI scale was not remembered"
        q.shot("remembered_1280x720", (1280, 720))
    finally:
        q.close()
