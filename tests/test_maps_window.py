"""Feature maps in a real GLFW window under Xvfb: a uniform map has no holes or seams at 5 zoom levels
in windows of 1280x720, 1600x900 and 1920x1080 (the window's own framebuffer, read back before the
swap).  The windows open in a child process, so this process's headless EGL context stays out of
GLX's way.  Skipped with the reason when Xvfb is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys
import numpy as np
from convscope.engine.gpu.nodes import NodeBatch
from convscope.engine.graph.layout import build_layout
from convscope.engine.window import Window, WindowConfig
from gl_helpers import lenet_spec
from test_maps import PITCH_PX, SIZES, camera_on, isolated_outliers

layout = build_layout(lenet_spec())
acts = np.full(layout.spec.total_nodes, 0.3, np.float32)
out = {}
for w, h in SIZES:
    win = Window(WindowConfig(title="maps", width=w, height=h, vsync=False))
    try:
        ctx = win.ctx
        batch = NodeBatch(ctx, layout)
        batch.set_activations(acts)
        batch.set_ranges(np.tile(np.array([0.0, 1.0], np.float32), (len(layout.spec.layers), 1)))
        fw, fh = win.framebuffer_size
        for pitch_px in PITCH_PX:
            cam = camera_on(layout, "input", (fw, fh), pitch_px)
            ctx.screen.use()
            ctx.screen.viewport = (0, 0, fw, fh)
            ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
            batch.draw(cam.view_matrix(), cam.projection(fw / fh), (fw, fh))
            ctx.finish()
            img = np.frombuffer(ctx.screen.read(components=3, alignment=1), np.uint8).reshape(fh, fw, 3)
            lit = int((img.max(axis=2) > 0).sum())
            out[f"{fw}x{fh}@{pitch_px}"] = [isolated_outliers(img[::-1]), lit]
            win.swap()
        batch.release()
    finally:
        win.close()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.window
def test_uniform_maps_have_no_holes_in_a_real_window():
    if shutil.which("Xvfb") is None or shutil.which("xdpyinfo") is None:
        pytest.skip("Xvfb or xdpyinfo is not installed (apt install xvfb x11-utils)")
    n = next(
        n
        for n in range(99, 400)
        if not (Path(f"/tmp/.X{n}-lock").exists() or Path(f"/tmp/.X11-unix/X{n}").exists())
    )
    xvfb = subprocess.Popen(
        ["Xvfb", f":{n}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        ready = False
        while not ready and xvfb.poll() is None and time.monotonic() < deadline:
            probe = subprocess.run(["xdpyinfo", "-display", f":{n}"], capture_output=True)
            ready = probe.returncode == 0
            time.sleep(0.1)
        if not ready:
            pytest.skip(f"Xvfb :{n} did not start")
        env = dict(os.environ, DISPLAY=f":{n}")
        env.pop("WAYLAND_DISPLAY", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
        run = subprocess.run(
            [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=240, cwd=HERE
        )
        lines = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
        assert run.returncode == 0 and lines, f"window child failed:\n{run.stdout}\n{run.stderr[-3000:]}"
        result = json.loads(lines[-1][len("RESULT ") :])
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
    assert len(result) == 15
    for key, (holes, lit) in result.items():
        assert lit > 1000, f"{key}: only {lit} pixels drawn"
        assert holes == 0, f"{key}: {holes} hole pixels"
