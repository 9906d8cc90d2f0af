"""The kiosk's window under Xvfb, in a subprocess: GLFW fullscreen on a chosen monitor, the window
manager's close swallowed, the idle cursor hidden; and the SDL2 backend (pysdl2) turning SDL
finger events into the engine's one-finger mouse and two-finger pinch, with keys mapped to GLFW
codes and a real moderngl + ImGui frame drawn through engine.app.App."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_kiosk_supervisor import display  # noqa: F401  (the Xvfb fixture)

pytestmark = [pytest.mark.window]
ROOT = Path(__file__).resolve().parents[1]

GLFW_SCRIPT = textwrap.dedent(
    """
    import subprocess, sys, time
    import glfw
    from convscope.engine.window import Window, WindowConfig, WindowError
    from tests.test_kiosk_supervisor import wm_close

    w = Window(WindowConfig(width=320, height=200, fullscreen=True, monitor=0, lock_close=True,
                            hide_cursor_after=0.2))
    assert w.size == (1280, 800), w.size
    assert w.units_per_mm() is None or w.units_per_mm() > 1.0
    start = time.monotonic()
    while time.monotonic() - start < 0.6:
        w.poll()
        time.sleep(0.02)
    assert w.cursor_hidden, "the cursor did not hide"
    subprocess.run(["xdotool", "mousemove", "300", "300"], check=True)
    for _ in range(50):
        if w.poll().mouse_delta != (0.0, 0.0):
            break
        time.sleep(0.02)
    assert not w.cursor_hidden, "the cursor did not come back on movement"
    wm_close(sys.argv[1], glfw.get_x11_window(w.handle))
    for _ in range(20):
        w.poll()
        time.sleep(0.02)
    assert not w.should_close, "the window manager's close was not swallowed"
    w.request_close()
    assert w.should_close
    w.close()
    try:
        Window(WindowConfig(fullscreen=True, monitor=3))
    except WindowError as exc:
        assert "no monitor 3" in str(exc), exc
    else:
        raise AssertionError("monitor 3 of 1 opened")
    print("GLFW OK")
    """
)

SDL_SCRIPT = textwrap.dedent(
    """
    import ctypes
    import os
    import tempfile
    import glfw
    import numpy as np
    import sdl2
    from imgui_bundle import imgui
    from convscope.engine.app import App
    from convscope.engine.ui.input import MOD_ALT, MOD_CONTROL, MOD_SHIFT
    from convscope.engine.ui.input import InputCollector
    from convscope.engine.ui.recording import InputRecorder, InputReplay
    from convscope.engine.window import WindowConfig
    from convscope.engine.window_sdl import SdlWindow

    def push(kind, **fields):
        ev = sdl2.SDL_Event()
        ev.type = kind
        for path, value in fields.items():
            obj = ev
            *parts, last = path.split(".")
            for p in parts:
                obj = getattr(obj, p)
            setattr(obj, last, value)
        assert sdl2.SDL_PushEvent(ctypes.byref(ev)) == 1

    def finger(kind, fid, x, y):
        push(kind, **{"tfinger.touchId": 1, "tfinger.fingerId": fid, "tfinger.x": x, "tfinger.y": y})

    w = SdlWindow(WindowConfig(width=400, height=300, lock_close=True))
    assert w.size == (400, 300), w.size
    w.poll()
    # Everything SDL's fingers do is recorded, then played back into a bare collector below.
    recording = os.path.join(tempfile.mkdtemp(), "fingers.jsonl")
    recorder = InputRecorder(recording, w.size, w.framebuffer_size)
    w.input.recorder = recorder
    finger(sdl2.SDL_FINGERDOWN, 1, 0.25, 0.5)
    s = w.poll()
    assert s.was_pressed(0) and s.touches == 1 and s.mouse_pos == (100.0, 150.0), s
    finger(sdl2.SDL_FINGERDOWN, 2, 0.75, 0.5)
    s = w.poll()
    assert s.was_released(0) and s.touches == 2
    finger(sdl2.SDL_FINGERMOTION, 2, 0.875, 0.5)  # 200 -> 250 px apart
    s = w.poll()
    assert abs(s.pinch - 1.25) < 1e-6 and abs(s.pan2[0] - 25.0) < 1e-6, (s.pinch, s.pan2)
    finger(sdl2.SDL_FINGERUP, 2, 0.875, 0.5)
    finger(sdl2.SDL_FINGERUP, 1, 0.25, 0.5)
    assert w.poll().touches == 0
    w.input.recorder = None
    recorder.close()
    bare = InputCollector((400, 300), (400, 300))
    bare.replay = InputReplay(recording, (400, 300))
    played = [bare.snapshot() for _ in range(len(bare.replay.frames))]
    assert [p.touches for p in played] == [1, 2, 2, 0], [p.touches for p in played]
    assert played[0].was_pressed(0) and played[0].mouse_pos == (100.0, 150.0)
    assert abs(played[2].pinch - 1.25) < 1e-6 and abs(played[2].pan2[0] - 25.0) < 1e-6
    push(sdl2.SDL_QUIT)
    w.poll()
    assert not w.should_close, "a locked SDL window closed on SDL_QUIT"
    mods = sdl2.KMOD_LCTRL | sdl2.KMOD_LALT | sdl2.KMOD_LSHIFT
    push(sdl2.SDL_KEYDOWN, **{"key.keysym.sym": sdl2.SDLK_q, "key.keysym.mod": mods, "key.state": 1})
    s = w.poll()
    ev = [e for e in s.events if e.kind == "key"][0]
    assert ev.code == glfw.KEY_Q and ev.down and ev.mods == MOD_CONTROL | MOD_ALT | MOD_SHIFT, ev

    class Flat:
        def on_enter(self, fc): self.ctx = fc.ctx
        def gui(self):
            imgui.begin("hello")
            imgui.button("a button")
            imgui.end()
        def update(self, inp, dt, ui_mouse, ui_keyboard): pass
        def upload(self): pass
        def draw(self, viewport): self.ctx.clear(0.2, 0.4, 0.6, 1.0)
        def on_exit(self): pass

    app = App(Flat(), window=w, quit_chord=False)
    app.run(3)
    pixels = app.read_pixels()
    assert pixels.shape == (300, 400, 3)
    assert np.abs(pixels[-5, -5].astype(int) - [51, 102, 153]).max() <= 2, pixels[-5, -5]
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10, "the ImGui window was not drawn"
    app.close()
    w.request_close()
    assert w.should_close
    w.close()
    print("SDL OK")
    """
)


def run_script(display: str, script: str) -> subprocess.CompletedProcess:  # noqa: F811
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    # The caller's PYTHONPATH first: a checkout run with PYTHONPATH set tests itself, not the install.
    # tests/ too: the script imports test modules, which import their sibling helpers (xvfb_display).
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(ROOT), str(ROOT / "tests")) if p)
    env.update(DISPLAY=display, SDL_VIDEODRIVER="x11", PYTHONPATH=path)
    return subprocess.run(
        [sys.executable, "-c", script, display],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_glfw_kiosk_window_fullscreen_locked_cursor_hidden(display):  # noqa: F811
    proc = run_script(display, GLFW_SCRIPT)
    assert proc.returncode == 0 and "GLFW OK" in proc.stdout, proc.stderr


def test_sdl_backend_touch_pinch_keys_and_a_frame(display):  # noqa: F811
    pytest.importorskip("sdl2", reason="the SDL2 backend needs pysdl2 and pysdl2-dll")
    proc = run_script(display, SDL_SCRIPT)
    assert proc.returncode == 0 and "SDL OK" in proc.stdout, proc.stderr
