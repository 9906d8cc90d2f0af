"""The application window: a GLFW window with an OpenGL 3.3 core context, wrapped by moderngl.

Owns GLFW (init / terminate), the window, its moderngl context, and the event callbacks, which
feed an `engine.ui.input.InputCollector`; `poll()` returns one `InputState` per frame.

    with Window(WindowConfig(title="convscope")) as win:
        ui = UiBackend(UiConfig(ui_scale=win.ui_scale_hint))
        while not win.should_close:
            state = win.poll()
            ...                                  # ui.new_frame(...), draw into win.ctx.screen
            win.swap()

HiDPI: `size` is in window coordinates (what GLFW and ImGui use for the pointer), `framebuffer_size`
in pixels; `framebuffer_scale` is their ratio (2 on a Retina Mac). `content_scale` is the monitor's
DPI setting; where it is not already in the framebuffer scale (Windows, X11) it is `ui_scale_hint`,
the factor to enlarge the UI by.

Any failure to open (no display, GLFW cannot init, no OpenGL 3.3 core) is a `WindowError` with a
one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import glfw
from convscope.engine.ui.input import InputCollector, InputState

if TYPE_CHECKING:
    import moderngl


class WindowError(RuntimeError):
    """The window or its OpenGL context could not be created; the message is one line."""


@dataclass
class WindowConfig:
    title: str = "convscope"  # title bar text
    width: int = 1600  # client area in window coordinates (scaled by the monitor's DPI on Windows / X11)
    height: int = 900
    vsync: bool = True  # swap at the monitor's refresh rate; False for benchmarks
    fullscreen: bool = False  # cover `monitor` at its current video mode (borderless)
    monitor: int = 0  # fullscreen on this monitor: 0 the primary, then in GLFW's order
    lock_close: bool = False  # ignore the close box / Alt+F4; request_close() still works
    hide_cursor_after: float = 0.0  # seconds without pointer movement before the cursor hides; 0 = never
    resizable: bool = True
    visible: bool = True  # False: a hidden window, for tests that only need the context
    samples: int = 0  # MSAA samples of the window's framebuffer; 0 = none


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


TITLE_BAR = 40  # screen pixels left for a window manager's title bar and border


def fit_to_workarea(size: tuple[int, int], area: tuple[int, int], scale: float = 1.0) -> tuple[int, int]:
    """A window size (in window coordinates, which SCALE_TO_MONITOR multiplies by `scale`) for a work
    area of `area` screen pixels: the asked size where it fits; else shrunk, keeping its aspect ratio,
    to fit with room for a title bar, so a 1600x900 default opens whole on a 1366x768 school laptop."""
    w, h = size
    if w * scale <= area[0] and h * scale <= area[1]:
        return int(w), int(h)
    k = min(area[0] / scale / max(w, 1), (area[1] - TITLE_BAR) / scale / max(h, 1))
    return max(int(w * k), 64), max(int(h * k), 64)


class Window:
    """A GLFW window, its moderngl context (`ctx`) and its per-frame input."""

    def __init__(self, config: WindowConfig | None = None) -> None:
        self.config = config if config is not None else WindowConfig()
        self._errors: list[str] = []
        self.handle = None
        self.ctx: moderngl.Context | None = None
        self._windowed_rect: tuple[int, int, int, int] | None = None
        self._last_pointer_move: float | None = None  # window clock, for hide_cursor_after
        self._glfw_live = False

        glfw.set_error_callback(self._on_glfw_error)
        if not glfw.init():
            glfw.set_error_callback(None)
            raise WindowError(
                f"cannot start GLFW: {self._last_error('unknown error')} (is DISPLAY or WAYLAND_DISPLAY set?)"
            )
        self._glfw_live = True
        try:
            self._open()
        except BaseException:
            self._teardown()
            raise

    def _on_glfw_error(self, code: int, description: bytes | str) -> None:
        if isinstance(description, bytes):
            description = description.decode("utf-8", "replace")
        self._errors.append(_one_line(f"{description} (GLFW error {code:#x})"))

    def _last_error(self, fallback: str) -> str:
        return self._errors[-1] if self._errors else fallback

    def _open(self) -> None:
        cfg = self.config
        glfw.default_window_hints()
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)  # macOS only gives core contexts this way
        glfw.window_hint(glfw.RESIZABLE, cfg.resizable)
        glfw.window_hint(glfw.VISIBLE, cfg.visible)
        glfw.window_hint(glfw.SAMPLES, max(int(cfg.samples), 0))
        glfw.window_hint(glfw.SCALE_TO_MONITOR, True)  # same physical size on HiDPI Windows / X11
        monitor = None
        width, height = int(cfg.width), int(cfg.height)
        area = None
        if not cfg.fullscreen:
            area, scale = self._workarea(cfg.monitor)
            if area is not None:
                width, height = fit_to_workarea((width, height), area[2:], scale)
        if cfg.fullscreen:
            monitor = self._monitor(cfg.monitor)
            mode = glfw.get_video_mode(monitor)
            width, height = mode.size.width, mode.size.height
            glfw.window_hint(glfw.REFRESH_RATE, mode.refresh_rate)
        self.handle = glfw.create_window(width, height, cfg.title, monitor, None)
        if not self.handle:
            raise WindowError(
                f"cannot open an OpenGL 3.3 core window: {self._last_error('unknown GLFW error')}"
            )
        if area is not None:  # centred in the work area, so no edge starts under a panel or off-screen
            w, h = glfw.get_window_size(self.handle)
            glfw.set_window_pos(
                self.handle, area[0] + max((area[2] - w) // 2, 0), area[1] + max((area[3] - h) // 2, 0)
            )
        glfw.make_context_current(self.handle)
        glfw.swap_interval(1 if cfg.vsync else 0)

        from convscope.engine.gpu.context import create_from_window

        try:
            self.ctx = create_from_window()
        except Exception as exc:  # GLVersionError, or moderngl's plain Exception
            raise WindowError(_one_line(str(exc)) or type(exc).__name__) from None

        self.input = InputCollector(self.size, self.framebuffer_size, self.content_scale)
        x, y = glfw.get_cursor_pos(self.handle)
        self.input.mouse_pos = (float(x), float(y))
        self._install_callbacks()
        self._sync_screen_viewport()

    @staticmethod
    def _workarea(index: int) -> tuple[tuple[int, int, int, int] | None, float]:
        """The work area (x, y, w, h: the screen less task bars and docks) of monitor `index` (the
        primary when there is no such monitor), and its content scale; (None, 1) without a monitor."""
        monitors = glfw.get_monitors() or []
        if not monitors:
            return None, 1.0
        monitor = monitors[index] if 0 <= index < len(monitors) else monitors[0]
        x, y, w, h = glfw.get_monitor_workarea(monitor)
        if w <= 0 or h <= 0:
            return None, 1.0
        sx, sy = glfw.get_monitor_content_scale(monitor)
        return (x, y, w, h), max(float(sx), float(sy), 1.0)

    @staticmethod
    def _monitor(index: int):
        monitors = glfw.get_monitors() or []
        if not monitors:
            raise WindowError("fullscreen: no monitor found")
        if not 0 <= index < len(monitors):
            raise WindowError(f"fullscreen: no monitor {index} (found {len(monitors)}, numbered from 0)")
        return monitors[index]  # GLFW lists the primary monitor first

    def _install_callbacks(self) -> None:
        h, inp = self.handle, self.input
        glfw.set_cursor_pos_callback(h, lambda _w, x, y: inp.on_cursor_pos(x, y))
        glfw.set_cursor_enter_callback(h, lambda _w, entered: inp.on_cursor_enter(bool(entered)))
        glfw.set_mouse_button_callback(
            h, lambda _w, button, action, mods: inp.on_mouse_button(button, action == glfw.PRESS, mods)
        )
        glfw.set_scroll_callback(h, lambda _w, dx, dy: inp.on_scroll(dx, dy))
        glfw.set_key_callback(h, lambda _w, key, _scancode, action, mods: inp.on_key(key, action, mods))
        glfw.set_char_callback(h, lambda _w, codepoint: inp.on_char(codepoint))
        glfw.set_window_focus_callback(h, lambda _w, focused: inp.on_focus(bool(focused)))
        glfw.set_window_size_callback(h, lambda _w, _x, _y: self._on_resize())
        glfw.set_framebuffer_size_callback(h, lambda _w, _x, _y: self._on_resize())
        glfw.set_window_content_scale_callback(h, lambda _w, sx, sy: inp.on_content_scale(sx, sy))
        glfw.set_window_close_callback(h, self._on_close_request)

    def _on_close_request(self, _handle) -> None:
        # GLFW has already set the close flag when this runs; a locked window takes it back.
        if self.config.lock_close:
            glfw.set_window_should_close(self.handle, False)

    def _on_resize(self) -> None:
        self.input.on_resize(self.size, self.framebuffer_size)

    def _sync_screen_viewport(self) -> None:
        # moderngl's screen keeps the size it had when detected; a resize must reach its viewport.
        fw, fh = self.framebuffer_size
        if fw > 0 and fh > 0:
            self.ctx.screen.viewport = (0, 0, fw, fh)

    # -- geometry ------------------------------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        """Client area in window coordinates."""
        return tuple(glfw.get_window_size(self.handle))

    @property
    def framebuffer_size(self) -> tuple[int, int]:
        """Drawable in pixels."""
        return tuple(glfw.get_framebuffer_size(self.handle))

    @property
    def framebuffer_scale(self) -> tuple[float, float]:
        (w, h), (fw, fh) = self.size, self.framebuffer_size
        return (fw / w if w else 1.0, fh / h if h else 1.0)

    @property
    def content_scale(self) -> tuple[float, float]:
        return tuple(glfw.get_window_content_scale(self.handle))

    def units_per_mm(self) -> float | None:
        """Window units per millimetre on the monitor the window covers (else the configured one),
        from its reported physical size; None when it reports none (many touch panels and VMs)."""
        monitor = glfw.get_window_monitor(self.handle) or self._monitor(self.config.monitor)
        mm_w, _ = glfw.get_monitor_physical_size(monitor)
        mode = glfw.get_video_mode(monitor)
        return mode.size.width / mm_w if mm_w > 0 and mode is not None else None

    @property
    def ui_scale_hint(self) -> float:
        """How much to enlarge the UI: the monitor's DPI scale not already in the framebuffer scale."""
        return max(self.content_scale[0] / self.framebuffer_scale[0], 0.5)

    # -- per frame -----------------------------------------------------------------------------

    def poll(self, wait_timeout: float | None = None) -> InputState:
        """Process pending events and return this frame's input. `wait_timeout` (seconds) sleeps
        until an event arrives or the time passes (for an idle UI); None returns at once."""
        if wait_timeout is None:
            glfw.poll_events()
        else:
            glfw.wait_events_timeout(wait_timeout)
        state = self.input.snapshot(glfw.get_time())
        if state.resized:
            self._sync_screen_viewport()
        self._hide_idle_cursor(state)
        return state

    def _hide_idle_cursor(self, state: InputState) -> None:
        if self.config.hide_cursor_after <= 0:
            return
        moved = state.mouse_delta != (0.0, 0.0) or state.buttons_pressed or state.scroll != (0.0, 0.0)
        if moved or self._last_pointer_move is None:
            self._last_pointer_move = state.time
            if self.cursor_hidden:
                glfw.set_input_mode(self.handle, glfw.CURSOR, glfw.CURSOR_NORMAL)
        elif not self.cursor_hidden and state.time - self._last_pointer_move >= self.config.hide_cursor_after:
            glfw.set_input_mode(self.handle, glfw.CURSOR, glfw.CURSOR_HIDDEN)

    @property
    def cursor_hidden(self) -> bool:
        return glfw.get_input_mode(self.handle, glfw.CURSOR) == glfw.CURSOR_HIDDEN

    def swap(self) -> None:
        glfw.swap_buffers(self.handle)

    @property
    def should_close(self) -> bool:
        return bool(glfw.window_should_close(self.handle))

    def request_close(self) -> None:
        """Close from the program (a quit key, the kiosk's exit chord); works on a locked window too."""
        glfw.set_window_should_close(self.handle, True)

    def set_title(self, title: str) -> None:
        glfw.set_window_title(self.handle, title)

    def set_vsync(self, on: bool) -> None:
        glfw.make_context_current(self.handle)
        glfw.swap_interval(1 if on else 0)
        self.config.vsync = bool(on)

    @property
    def fullscreen(self) -> bool:
        return bool(glfw.get_window_monitor(self.handle))

    def set_fullscreen(self, on: bool) -> None:
        """Switch between fullscreen on the configured monitor and the previous windowed rect."""
        if on == self.fullscreen:
            return
        if on:
            monitor = self._monitor(self.config.monitor)
            x, y = glfw.get_window_pos(self.handle)
            self._windowed_rect = (x, y, *self.size)
            mode = glfw.get_video_mode(monitor)
            glfw.set_window_monitor(
                self.handle, monitor, 0, 0, mode.size.width, mode.size.height, mode.refresh_rate
            )
        else:
            x, y, w, h = self._windowed_rect or (64, 64, self.config.width, self.config.height)
            glfw.set_window_monitor(self.handle, None, x, y, w, h, 0)
        self.config.fullscreen = bool(on)
        self._on_resize()

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the GL context wrapper, destroy the window and terminate GLFW. Idempotent."""
        self._teardown()

    def _teardown(self) -> None:
        if self.ctx is not None:
            self.ctx.release()  # a wrapped context: frees moderngl's bookkeeping, not the GL context
            self.ctx = None
        if self.handle is not None:
            glfw.destroy_window(self.handle)
            self.handle = None
        if self._glfw_live:
            glfw.terminate()
            glfw.set_error_callback(None)
            self._glfw_live = False

    def __enter__(self) -> Window:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
