"""A real GLFW window under Xvfb: opens with OpenGL 3.3 core, renders an ImGui frame, turns an
xdotool click and scroll into InputState (and an ImGui button click), follows a resize, and closes
cleanly. Skipped with the reason when Xvfb or xdotool is missing.

Screenshot: out/screens/window_frame.png (read from an offscreen framebuffer, never the screen).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import time
from pathlib import Path

import glfw
import numpy as np
import pytest
from convscope.engine.ui.input import MOUSE_LEFT
from convscope.engine.window import Window, WindowConfig, WindowError
from imgui_bundle import imgui
from PIL import Image

SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"


def _free_display() -> int:
    for n in range(99, 400):
        if not os.path.exists(f"/tmp/.X{n}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            return n
    raise RuntimeError("no free X display number in :99..:399")


class _EglCurrent:
    """Takes this thread's current EGL context (the headless tests' shared one) off while windows
    are tested, and puts it back after: libglvnd refuses glXMakeCurrent (X error BadAccess, which
    kills the process) while another API's context is current on the thread."""

    EGL_DRAW, EGL_READ = 0x3059, 0x305A

    def __init__(self) -> None:
        self.saved = None
        try:
            self.egl = ctypes.CDLL("libEGL.so.1")
        except OSError:
            self.egl = None
            return
        for name in ("eglGetCurrentContext", "eglGetCurrentDisplay", "eglGetCurrentSurface"):
            getattr(self.egl, name).restype = ctypes.c_void_p
        self.egl.eglGetCurrentSurface.argtypes = [ctypes.c_int]
        self.egl.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4

    def release(self) -> None:
        if self.egl is None or not self.egl.eglGetCurrentContext():
            return
        egl = self.egl
        self.saved = (
            egl.eglGetCurrentDisplay(),
            egl.eglGetCurrentSurface(self.EGL_DRAW),
            egl.eglGetCurrentSurface(self.EGL_READ),
            egl.eglGetCurrentContext(),
        )
        egl.eglMakeCurrent(self.saved[0], None, None, None)

    def restore(self) -> None:
        if self.saved is not None:
            self.egl.eglMakeCurrent(*self.saved)
            self.saved = None


@pytest.fixture(scope="module")
def xvfb():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt install xvfb)")
    n = _free_display()
    proc = subprocess.Popen(
        ["Xvfb", f":{n}", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket = Path(f"/tmp/.X11-unix/X{n}")
    deadline = time.monotonic() + 10
    while not socket.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not socket.exists():
        proc.kill()
        proc.wait()
        pytest.skip(f"Xvfb :{n} did not start")
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY")}
    egl = _EglCurrent()
    egl.release()
    os.environ["DISPLAY"] = f":{n}"
    os.environ.pop("WAYLAND_DISPLAY", None)
    try:
        yield f":{n}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        egl.restore()


def _xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=10, capture_output=True)


def _poll_until(win: Window, predicate, frame=None, timeout: float = 5.0):
    """Poll (running `frame(state)` each time) until `predicate(state)`; returns the states seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = win.poll()
        seen.append(state)
        if frame is not None:
            frame(state)
        if predicate(state):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"timed out; last state: {seen[-1] if seen else None}")


@pytest.mark.window
def test_window_renders_imgui_and_records_an_xdotool_click(xvfb):
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (apt install xdotool)")
    from convscope.engine.gpu.imgui_renderer import ImGuiRenderer
    from convscope.engine.ui.backend import UiBackend

    win = Window(WindowConfig(title="convscope test", width=320, height=240, vsync=False))
    ui = renderer = fbo = None
    try:
        ctx = win.ctx
        assert ctx.version_code >= 330
        assert win.size == (320, 240) and win.framebuffer_size == (320, 240)
        ui = UiBackend()
        renderer = ImGuiRenderer(ctx)
        fbo = ctx.simple_framebuffer(win.framebuffer_size)
        clicks = []

        def frame(state):
            ui.new_frame(state.window_size, state.framebuffer_scale, state.dt, state)
            imgui.set_next_window_pos((10, 10))
            imgui.set_next_window_size((200, 120))
            imgui.begin("Window test", None, imgui.WindowFlags_.no_saved_settings)
            imgui.push_style_color(imgui.Col_.button, (1.0, 0.0, 0.0, 1.0))
            if imgui.button("Click me", (120, 50)):
                clicks.append(state.time)
            imgui.pop_style_color()
            imgui.end()
            draw_data = ui.render()
            for target in (fbo, ctx.screen):
                target.use()
                ctx.clear(0.1, 0.2, 0.3, 1.0)
                renderer.render(draw_data)
            win.swap()

        for _ in range(3):
            frame(win.poll())
        pixels = np.frombuffer(fbo.read(components=3), np.uint8).reshape(240, 320, 3)[::-1]
        SCREENS.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(SCREENS / "window_frame.png")
        red = np.all(np.abs(pixels.astype(int) - (255, 0, 0)) <= 3, axis=-1)
        assert red.sum() > 3000, "the ImGui button is not in the frame"

        # The button's middle, in window coordinates: window (10, 10) + padding + title bar.
        ys, xs = np.nonzero(red)
        target = (int(xs.mean()), int(ys.mean()))
        xid = str(glfw.get_x11_window(win.handle))
        _xdotool("mousemove", "--window", xid, str(target[0]), str(target[1]))
        _xdotool("click", "--window", xid, "1")
        states = _poll_until(win, lambda s: bool(clicks) and not s.buttons_down, frame)
        pressed = [s for s in states if s.was_pressed(MOUSE_LEFT)]
        released = [s for s in states if s.was_released(MOUSE_LEFT)]
        assert pressed and released, "the click never reached the input snapshot"
        assert pressed[0].mouse_pos == pytest.approx(target, abs=1.0)
        assert pressed[0].mouse_pos_fb == pytest.approx(target, abs=1.0)  # scale 1 under Xvfb
        assert any(e.kind == "button" for e in pressed[0].events)
        assert clicks, "ImGui did not see the button click"

        _xdotool("click", "--window", xid, "4")  # X button 4 = wheel up
        states = _poll_until(win, lambda s: s.scroll[1] > 0, frame)
        assert states[-1].scroll == (0.0, 1.0)

        glfw.set_window_size(win.handle, 400, 300)
        states = _poll_until(win, lambda s: s.resized and s.framebuffer_size == (400, 300), frame)
        assert ctx.screen.viewport == (0, 0, 400, 300)
    finally:
        for obj in (fbo, renderer):
            if obj is not None:
                obj.release()
        if ui is not None:
            ui.destroy()
        win.close()
        win.close()  # idempotent
    assert win.handle is None and win.ctx is None
    # GLFW was terminated: a new window can start from scratch.
    again = Window(WindowConfig(width=64, height=64, visible=False))
    again.close()


@pytest.mark.window
def test_hidden_window_and_fullscreen_toggle(xvfb):
    with Window(WindowConfig(width=200, height=100, visible=False, vsync=False)) as win:
        assert not win.fullscreen
        win.set_fullscreen(True)
        _poll_until(win, lambda s: s.window_size == (1024, 768), timeout=3)
        assert win.fullscreen
        win.set_fullscreen(False)
        _poll_until(win, lambda s: s.window_size == (200, 100), timeout=3)
        assert win.ui_scale_hint == pytest.approx(1.0)


def test_no_display_is_a_one_line_window_error(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":4321")  # nothing listens there
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(WindowError) as info:
        Window(WindowConfig(visible=False))
    message = str(info.value)
    assert "\n" not in message and "GLFW" in message, message


@pytest.mark.window
def test_old_opengl_is_a_one_line_window_error_and_glfw_is_released(xvfb, monkeypatch):
    import convscope.engine.gpu.context as context

    def too_old():
        raise context.GLVersionError("OpenGL 2.1 found (some driver);\nconvscope needs OpenGL 3.3 or newer.")

    monkeypatch.setattr(context, "create_from_window", too_old)
    with pytest.raises(WindowError) as info:
        Window(WindowConfig(width=64, height=64, visible=False))
    message = str(info.value)
    assert "\n" not in message and "OpenGL 2.1" in message and "3.3" in message, message
    monkeypatch.undo()
    Window(WindowConfig(width=64, height=64, visible=False)).close()  # GLFW was terminated cleanly


def test_the_window_fits_the_screens_work_area():
    """The default 1600x900 opens whole on small screens (aspect kept, room for a title bar), and a
    size that fits is left alone."""
    from convscope.engine.window import TITLE_BAR, fit_to_workarea

    assert fit_to_workarea((1600, 900), (1920, 1080)) == (1600, 900)
    assert fit_to_workarea((1920, 1080), (1920, 1080)) == (1920, 1080)
    for area in ((1366, 768), (1280, 720), (1024, 768)):
        w, h = fit_to_workarea((1600, 900), area)
        assert w <= area[0] and h <= area[1] - TITLE_BAR, (area, w, h)
        assert abs(w / h - 16 / 9) < 0.01 and min(area[0] - w, area[1] - TITLE_BAR - h) <= 1
    w, h = fit_to_workarea((1600, 900), (2732, 1536), scale=2.0)  # a HiDPI laptop: window units x 2
    assert w * 2 <= 2732 and h * 2 <= 1536 - TITLE_BAR


def test_a_big_default_window_opens_inside_a_small_screen(xvfb):
    """On the 1024x768 Xvfb screen, the default window (1600x900) opens whole: inside the screen."""
    win = Window(WindowConfig(title="convscope fit", vsync=False))
    try:
        w, h = win.size
        x, y = glfw.get_window_pos(win.handle)
        assert w <= 1024 and h <= 768 and (w, h) != (1600, 900), (w, h)
        assert x >= 0 and y >= 0 and x + w <= 1024 and y + h <= 768, (x, y, w, h)
    finally:
        win.close()
