"""Helper for tests/test_panel_layout.py (not a test): runs one scene in a real window and reports, as
JSON, the window size, every panel's rectangle, the free area, the network's screen box and the Embedding
window's plot.

    python tests/panel_probe.py explore|explore_embed|train|kiosk OUT.json STOP_FILE

The test resizes the window from outside (xdotool) and reads OUT.json, which is rewritten (atomically)
every few frames until STOP_FILE exists.  The explorer selects a node once its network is up, so
its Node details panel is open too; explore_embed then also opens the Embedding window (as its checkbox
does), once the network has been framed without it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.ui.backend import UiConfig
from convscope.engine.window import Window, WindowConfig


def screen_box(camera, layout, window) -> list[float]:
    """[x0, y0, x1, y1] of every node of `layout` as `camera` shows it, in window units."""
    fw, fh = window.framebuffer_size
    pts = camera.project(layout.positions, fw, fh) * (window.size[0] / max(fw, 1))
    pts = pts[np.isfinite(pts).all(1)]
    return [float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())]


def write_report(out: Path, report: dict) -> None:
    """The report as JSON at `out`, replaced at once (the test never reads half a file)."""
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report))
    os.replace(tmp, out)


def xywh(r) -> list[float]:
    return [r.x, r.y, r.w, r.h]


def main(kind: str, out: Path, stop: Path) -> None:
    window = Window(WindowConfig(width=1280, height=720, vsync=False))
    if kind in ("explore", "explore_embed"):
        from convscope.scenes.explore.scene import ExploreScene

        scene = ExploreScene(AppConfig())
        panels, camera = (lambda: scene.panels), scene.camera
        layout = lambda: scene.layout  # noqa: E731
    elif kind == "train":
        from convscope.scenes.train.scene import TrainScene
        from convscope.scenes.train.state import TrainConfig

        scene = TrainScene(TrainConfig(dataset="digits", start_paused=True))
        panels, camera = (lambda: scene.panels), scene.camera
        layout = lambda: scene.geometry.layout if scene.geometry is not None else None  # noqa: E731
    else:
        from convscope.scenes.kiosk.config import KioskConfig
        from convscope.scenes.kiosk.scene import KioskScene

        scene = KioskScene(AppConfig(), KioskConfig(attract_after=1e6))
        panels, camera = (lambda: scene.ui.layout), scene.camera
        layout = lambda: scene.layout  # noqa: E731
    app = App(scene, window=window, ui_config=UiConfig(), quit_chord=False)
    size, at_size, fitted = None, 0, 0
    try:
        deadline = time.monotonic() + 240
        while not stop.exists() and time.monotonic() < deadline and not window.should_close:
            app.frame()
            spec = getattr(scene, "spec", None)
            if kind.startswith("explore") and spec is not None and scene.state.selected < 0:
                scene.state.selected = spec.layers[-2].start + 3
            now = window.size
            at_size = at_size + 1 if now == size else 0
            size = now
            lay = layout()
            still = getattr(scene, "flight", None) is None
            fitted = fitted + 1 if lay is not None and still else 0
            if kind == "explore_embed" and fitted >= 8:
                scene.state.show_embedding = True
            if app.frames % 4:
                continue
            p = panels()
            report = {
                "size": list(now),
                "frames": app.frames,
                "frames_at_size": at_size,
                "fitted_frames": fitted,
                "rects": {name: xywh(r) for name, (_, r) in p.rects.items()},
                "free": xywh(p.free(getattr(sys.modules[type(scene).__module__], "FREE_MIN_FRACTION", 0.0))),
                "box": None,
                "plot": None,  # the Embedding plot's (x0, y0, x1, y1) once it shows a layout
            }
            embed = getattr(getattr(scene, "state", None), "embed", None)
            if embed is not None and embed.plot_rect[2] > 0:
                report["plot"] = [float(v) for v in embed.plot_rect]
            if lay is not None:
                report["box"] = screen_box(camera, lay, window)
            write_report(out, report)
    finally:
        app.close()
        window.close()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
