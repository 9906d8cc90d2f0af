"""Helper for tests/test_view_window.py (not a test): runs one scene in a real window as a user starts it
(app-wide keys on, the UI scale remembered in $XDG_CONFIG_HOME) and reports, as JSON, the window size,
the UI scale in effect and remembered, presentation mode, the folded panels, every panel's rectangle,
the free area and the network's screen box.

    python tests/view_probe.py explore|train OUT.json STOP_FILE

OUT.json is rewritten (atomically) every few frames until STOP_FILE exists; the test presses keys
from outside (xdotool) and takes screenshots of the screen.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.ui.backend import UiConfig
from convscope.engine.window import Window, WindowConfig
from panel_probe import screen_box, write_report, xywh  # tests/ is this script's folder


def main(kind: str, out: Path, stop: Path) -> None:
    window = Window(WindowConfig(width=1280, height=720, vsync=False))
    if kind == "explore":
        from convscope.scenes.explore.scene import FREE_MIN_FRACTION, ExploreScene

        scene = ExploreScene(AppConfig())
        layout = lambda: scene.layout  # noqa: E731
    else:
        from convscope.scenes.train.scene import FREE_MIN_FRACTION, TrainScene
        from convscope.scenes.train.state import TrainConfig

        scene = TrainScene(TrainConfig(dataset="digits", start_paused=True))
        layout = lambda: scene.geometry.layout if scene.geometry is not None else None  # noqa: E731
    app = App(scene, window=window, ui_config=UiConfig())
    size, at_size = None, 0
    try:
        deadline = time.monotonic() + 240
        while not stop.exists() and time.monotonic() < deadline and not window.should_close:
            app.frame()
            now = window.size
            at_size = at_size + 1 if now == size else 0
            size = now
            if app.frames % 4:
                continue
            p = scene.panels
            report = {
                "size": list(now),
                "frames": app.frames,
                "frames_at_size": at_size,
                "ui_scale": app.ui_scale,
                "remembered": app.prefs.ui_scale,
                "presentation": app.presentation,
                "collapsed": sorted(p.collapsed),
                "rects": {name: xywh(r) for name, (_, r) in p.rects.items()},
                "free": xywh(p.free(FREE_MIN_FRACTION)),
                "box": None,
            }
            lay = layout()
            if lay is not None:
                report["box"] = screen_box(scene.camera, lay, window)
            write_report(out, report)
    finally:
        app.close()
        window.close()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
