"""Drives a headless App the way a person would, for the scene tests: frames, pointer moves and clicks
through the app's headless input, waits on a condition, screenshots saved for a look, colour counts.

Screenshots go to the test's tmp_path and to out/screens/<prefix>_<name>.png (open them after a change).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from convscope.engine.app import App
from convscope.engine.ui.input import MOUSE_LEFT
from PIL import Image

SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"
TIMEOUT = 120.0  # fresh workers import torch on 2 shared cores; waits only bound how long a failure takes


def frame(app: App) -> None:
    app.frame()
    app.ctx.finish()  # headless frames are not throttled by a swap; keep llvmpipe from queueing them


def frames_until(app: App, cond, what: str, timeout: float = TIMEOUT, rest: float = 0.003) -> int:
    """Frames until `cond()`; `rest` seconds between frames leave the CPU to the other processes."""
    deadline, n = time.monotonic() + timeout, 0
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        frame(app)
        n += 1
        time.sleep(rest)
    return n


def move(app: App, x: float, y: float, frames: int = 1) -> None:
    app.headless_input.on_cursor_pos(float(x), float(y))
    for _ in range(frames):
        frame(app)


def click(app: App, x: float, y: float) -> None:
    move(app, x, y)
    app.headless_input.on_mouse_button(MOUSE_LEFT, True, 0)
    frame(app)
    app.headless_input.on_mouse_button(MOUSE_LEFT, False, 0)
    frame(app)


def save(img: np.ndarray, tmp_path: Path, prefix: str, name: str) -> None:
    Image.fromarray(img).save(tmp_path / f"{name}.png")
    SCREENS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(SCREENS / f"{prefix}_{name}.png")


def colour_count(img: np.ndarray, x: float, y: float, rgb, radius: int = 9, tol: int = 40) -> int:
    """Pixels within `radius` of (x, y) whose colour is within `tol` of `rgb` (floats in [0, 1])."""
    patch = img[max(int(y) - radius, 0) : int(y) + radius + 1, max(int(x) - radius, 0) : int(x) + radius + 1]
    return int((np.abs(patch.astype(int) - np.array(rgb) * 255).max(-1) <= tol).sum())


def embed_shown(app: App, layer: str, n: int) -> bool:
    """The scene's Embedding panel shows the final layout of `n` points of `layer` (animation over)."""
    p = app.scene.state.embed
    return p.shown_view == (p.kind, layer) and len(p.ids) == n and p.final and not p.animating
