"""The application window on SDL2 (pysdl2): the same interface as engine/window.py's GLFW `Window`,
plus real touch: SDL finger events become pinch-zoom and two-finger pan.

Why a second backend: GLFW has no touch events; the OS turns a single touch into the mouse, which
is enough to draw and orbit but gives no pinch.  SDL2 reports every finger (Windows touch
screens, Linux evdev/libinput touch screens under X11 and Wayland) and runs the same moderngl /
ImGui frame.  Fingers go to `InputCollector.on_touch_*` (engine/ui/input.py): one finger is the
left mouse button, two fingers are a gesture (`InputState.pinch`, `pan2`).  SDL's own mouse
events synthesised from touch are switched off (SDL_HINT_TOUCH_MOUSE_EVENTS=0), so a touch is
never seen twice.

Keys are translated to GLFW key codes and modifier bits, so everything above the window (the
exit chord, ImGui's key map) is backend-neutral.  Needs `pip install pysdl2 pysdl2-dll`; without
them constructing an `SdlWindow` is a `WindowError` saying so.

    with SdlWindow(WindowConfig(fullscreen=True, lock_close=True)) as win:
        app = App(scene, window=win)
        while not win.should_close:
            app.frame()
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import glfw
from convscope.engine.ui.input import MOD_ALT, MOD_CONTROL, MOD_SHIFT, MOD_SUPER, InputCollector, InputState
from convscope.engine.window import WindowConfig, WindowError

if TYPE_CHECKING:
    import moderngl

_MOUSE_BUTTONS = {1: 0, 3: 1, 2: 2}  # SDL left, right, middle -> GLFW / ImGui 0, 1, 2


def _load_sdl():
    try:
        import warnings

        with warnings.catch_warnings():  # pysdl2 says which SDL library it found: not for visitors' logs
            warnings.simplefilter("ignore")
            import sdl2
    except ImportError as exc:
        raise WindowError(f"the SDL2 backend needs pysdl2: pip install pysdl2 pysdl2-dll ({exc})") from None
    return sdl2


def _key_map(sdl) -> dict[int, int]:
    """SDL keycodes -> GLFW key codes."""
    table = {ord(c): ord(c.upper()) for c in "abcdefghijklmnopqrstuvwxyz"}
    table.update({ord(c): ord(c) for c in "0123456789 -=,./;'[\\]`"})  # same ASCII code in both
    names = {
        "RETURN": glfw.KEY_ENTER,
        "ESCAPE": glfw.KEY_ESCAPE,
        "BACKSPACE": glfw.KEY_BACKSPACE,
        "TAB": glfw.KEY_TAB,
        "DELETE": glfw.KEY_DELETE,
        "INSERT": glfw.KEY_INSERT,
        "HOME": glfw.KEY_HOME,
        "END": glfw.KEY_END,
        "PAGEUP": glfw.KEY_PAGE_UP,
        "PAGEDOWN": glfw.KEY_PAGE_DOWN,
        "LEFT": glfw.KEY_LEFT,
        "RIGHT": glfw.KEY_RIGHT,
        "UP": glfw.KEY_UP,
        "DOWN": glfw.KEY_DOWN,
        "LCTRL": glfw.KEY_LEFT_CONTROL,
        "RCTRL": glfw.KEY_RIGHT_CONTROL,
        "LSHIFT": glfw.KEY_LEFT_SHIFT,
        "RSHIFT": glfw.KEY_RIGHT_SHIFT,
        "LALT": glfw.KEY_LEFT_ALT,
        "RALT": glfw.KEY_RIGHT_ALT,
        "LGUI": glfw.KEY_LEFT_SUPER,
        "RGUI": glfw.KEY_RIGHT_SUPER,
        "KP_ENTER": glfw.KEY_KP_ENTER,
        "CAPSLOCK": glfw.KEY_CAPS_LOCK,
    }
    names.update({f"F{i}": getattr(glfw, f"KEY_F{i}") for i in range(1, 13)})
    names.update({f"KP_{i}": getattr(glfw, f"KEY_KP_{i}") for i in range(10)})
    for name, key in names.items():
        code = getattr(sdl, f"SDLK_{name}", None)
        if code is not None:
            table[int(code)] = key
    return table


def _mods(sdl, state: int) -> int:
    bits = 0
    for sdl_mask, bit in (
        (sdl.KMOD_SHIFT, MOD_SHIFT),
        (sdl.KMOD_CTRL, MOD_CONTROL),
        (sdl.KMOD_ALT, MOD_ALT),
        (sdl.KMOD_GUI, MOD_SUPER),
    ):
        if state & sdl_mask:
            bits |= bit
    return bits


class SdlWindow:
    """An SDL2 window, its moderngl context (`ctx`) and its per-frame input, touch included."""

    def __init__(self, config: WindowConfig | None = None) -> None:
        self.config = config if config is not None else WindowConfig()
        self.sdl = sdl = _load_sdl()
        self.handle = None
        self._gl = None
        self.ctx: moderngl.Context | None = None
        self._close = False
        self._cursor_hidden = False
        self._last_pointer_move: float | None = None
        self._keys = _key_map(sdl)
        sdl.SDL_SetHint(sdl.SDL_HINT_TOUCH_MOUSE_EVENTS, b"0")  # fingers arrive once, as fingers
        sdl.SDL_SetHint(sdl.SDL_HINT_MOUSE_TOUCH_EVENTS, b"0")
        sdl.SDL_SetHint(sdl.SDL_HINT_VIDEO_MINIMIZE_ON_FOCUS_LOSS, b"0")  # a kiosk never minimises
        if self.config.lock_close:
            sdl.SDL_SetHint(sdl.SDL_HINT_WINDOWS_NO_CLOSE_ON_ALT_F4, b"1")
        if sdl.SDL_Init(sdl.SDL_INIT_VIDEO) != 0:
            raise WindowError(f"cannot start SDL video: {sdl.SDL_GetError().decode(errors='replace')}")
        try:
            self._open()
        except BaseException:
            self._teardown()
            raise

    def _error(self) -> str:
        return self.sdl.SDL_GetError().decode("utf-8", "replace") or "unknown SDL error"

    def _open(self) -> None:
        sdl, cfg = self.sdl, self.config
        sdl.SDL_GL_SetAttribute(sdl.SDL_GL_CONTEXT_MAJOR_VERSION, 3)
        sdl.SDL_GL_SetAttribute(sdl.SDL_GL_CONTEXT_MINOR_VERSION, 3)
        sdl.SDL_GL_SetAttribute(sdl.SDL_GL_CONTEXT_PROFILE_MASK, sdl.SDL_GL_CONTEXT_PROFILE_CORE)
        sdl.SDL_GL_SetAttribute(sdl.SDL_GL_CONTEXT_FLAGS, sdl.SDL_GL_CONTEXT_FORWARD_COMPATIBLE_FLAG)
        sdl.SDL_GL_SetAttribute(sdl.SDL_GL_DOUBLEBUFFER, 1)
        sdl.SDL_GL_SetAttribute(sdl.SDL_GL_DEPTH_SIZE, 24)
        if cfg.samples > 0:
            sdl.SDL_GL_SetAttribute(sdl.SDL_GL_MULTISAMPLEBUFFERS, 1)
            sdl.SDL_GL_SetAttribute(sdl.SDL_GL_MULTISAMPLESAMPLES, int(cfg.samples))
        displays = sdl.SDL_GetNumVideoDisplays()
        if cfg.fullscreen and not 0 <= cfg.monitor < max(displays, 1):
            raise WindowError(f"fullscreen: no monitor {cfg.monitor} (found {displays}, numbered from 0)")
        flags = sdl.SDL_WINDOW_OPENGL | sdl.SDL_WINDOW_ALLOW_HIGHDPI
        flags |= sdl.SDL_WINDOW_SHOWN if cfg.visible else sdl.SDL_WINDOW_HIDDEN
        if cfg.resizable:
            flags |= sdl.SDL_WINDOW_RESIZABLE
        if cfg.fullscreen:
            flags |= sdl.SDL_WINDOW_FULLSCREEN_DESKTOP | sdl.SDL_WINDOW_BORDERLESS
        pos = sdl.SDL_WINDOWPOS_CENTERED_DISPLAY(cfg.monitor if cfg.fullscreen else 0)
        self.handle = sdl.SDL_CreateWindow(
            cfg.title.encode(), pos, pos, int(cfg.width), int(cfg.height), flags
        )
        if not self.handle:
            raise WindowError(f"cannot open an OpenGL 3.3 core window: {self._error()}")
        self._gl = sdl.SDL_GL_CreateContext(self.handle)
        if not self._gl:
            raise WindowError(f"cannot create an OpenGL 3.3 core context: {self._error()}")
        sdl.SDL_GL_MakeCurrent(self.handle, self._gl)
        sdl.SDL_GL_SetSwapInterval(1 if cfg.vsync else 0)

        from convscope.engine.gpu.context import create_from_window

        try:
            self.ctx = create_from_window()
        except Exception as exc:  # GLVersionError, or moderngl's plain Exception
            raise WindowError(" ".join(str(exc).split()) or type(exc).__name__) from None
        self.input = InputCollector(self.size, self.framebuffer_size, self.content_scale)
        self._freq = float(sdl.SDL_GetPerformanceFrequency())
        self._t0 = sdl.SDL_GetPerformanceCounter()
        self._sync_screen_viewport()

    def _sync_screen_viewport(self) -> None:
        fw, fh = self.framebuffer_size
        if fw > 0 and fh > 0:
            self.ctx.screen.viewport = (0, 0, fw, fh)

    # -- geometry ------------------------------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        w, h = ctypes.c_int(), ctypes.c_int()
        self.sdl.SDL_GetWindowSize(self.handle, ctypes.byref(w), ctypes.byref(h))
        return (w.value, h.value)

    @property
    def framebuffer_size(self) -> tuple[int, int]:
        w, h = ctypes.c_int(), ctypes.c_int()
        self.sdl.SDL_GL_GetDrawableSize(self.handle, ctypes.byref(w), ctypes.byref(h))
        return (w.value, h.value)

    @property
    def framebuffer_scale(self) -> tuple[float, float]:
        (w, h), (fw, fh) = self.size, self.framebuffer_size
        return (fw / w if w else 1.0, fh / h if h else 1.0)

    def _display_dpi(self) -> float | None:
        hdpi = ctypes.c_float()
        index = self.sdl.SDL_GetWindowDisplayIndex(self.handle)
        if self.sdl.SDL_GetDisplayDPI(max(index, 0), None, ctypes.byref(hdpi), None) != 0 or hdpi.value <= 0:
            return None
        return float(hdpi.value)

    @property
    def content_scale(self) -> tuple[float, float]:
        """The display's DPI setting relative to 96 (what GLFW calls the content scale)."""
        dpi = self._display_dpi()
        s = dpi / 96.0 if dpi else 1.0
        return (s, s)

    @property
    def ui_scale_hint(self) -> float:
        return max(self.content_scale[0] / self.framebuffer_scale[0], 0.5)

    def units_per_mm(self) -> float | None:
        dpi = self._display_dpi()
        return dpi / 25.4 / self.framebuffer_scale[0] if dpi else None

    # -- per frame -----------------------------------------------------------------------------

    def _now(self) -> float:
        return (self.sdl.SDL_GetPerformanceCounter() - self._t0) / self._freq

    def poll(self, wait_timeout: float | None = None) -> InputState:
        """Process pending events and return this frame's input (`wait_timeout` seconds: sleep
        until an event arrives or the time passes)."""
        sdl, inp = self.sdl, self.input
        event = sdl.SDL_Event()
        if wait_timeout is not None and sdl.SDL_WaitEventTimeout(
            ctypes.byref(event), int(wait_timeout * 1000)
        ):
            self._dispatch(event)
        while sdl.SDL_PollEvent(ctypes.byref(event)):
            self._dispatch(event)
        state = inp.snapshot(self._now())
        if state.resized:
            self._sync_screen_viewport()
        self._hide_idle_cursor(state)
        return state

    def _dispatch(self, e) -> None:
        sdl, inp = self.sdl, self.input
        t = e.type
        if t == sdl.SDL_QUIT:
            if not self.config.lock_close:
                self._close = True
        elif t == sdl.SDL_MOUSEMOTION:
            if e.motion.which != sdl.SDL_TOUCH_MOUSEID:
                inp.on_cursor_pos(e.motion.x, e.motion.y)
        elif t in (sdl.SDL_MOUSEBUTTONDOWN, sdl.SDL_MOUSEBUTTONUP):
            b = e.button
            if b.which != sdl.SDL_TOUCH_MOUSEID and b.button in _MOUSE_BUTTONS:
                inp.on_cursor_pos(b.x, b.y)
                inp.on_mouse_button(
                    _MOUSE_BUTTONS[b.button], t == sdl.SDL_MOUSEBUTTONDOWN, _mods(sdl, sdl.SDL_GetModState())
                )
        elif t == sdl.SDL_MOUSEWHEEL:
            if e.wheel.which != sdl.SDL_TOUCH_MOUSEID:
                flip = -1.0 if e.wheel.direction == sdl.SDL_MOUSEWHEEL_FLIPPED else 1.0
                inp.on_scroll(flip * e.wheel.preciseX, flip * e.wheel.preciseY)
        elif t in (sdl.SDL_KEYDOWN, sdl.SDL_KEYUP):
            key = self._keys.get(int(e.key.keysym.sym))
            if key is not None:
                if t == sdl.SDL_KEYUP:
                    action = glfw.RELEASE
                else:
                    action = glfw.REPEAT if e.key.repeat else glfw.PRESS
                inp.on_key(key, action, _mods(sdl, e.key.keysym.mod))
        elif t == sdl.SDL_TEXTINPUT:
            for ch in e.text.text.decode("utf-8", "replace"):
                inp.on_char(ord(ch))
        elif t in (sdl.SDL_FINGERDOWN, sdl.SDL_FINGERMOTION, sdl.SDL_FINGERUP):
            w, h = self.size
            f = e.tfinger
            x, y, finger = f.x * w, f.y * h, int(f.fingerId)
            if t == sdl.SDL_FINGERDOWN:
                inp.on_touch_down(finger, x, y)
            elif t == sdl.SDL_FINGERMOTION:
                inp.on_touch_move(finger, x, y)
            else:
                inp.on_touch_up(finger, x, y)
        elif t == sdl.SDL_WINDOWEVENT:
            we = e.window.event
            if we in (sdl.SDL_WINDOWEVENT_SIZE_CHANGED, sdl.SDL_WINDOWEVENT_RESIZED):
                inp.on_resize(self.size, self.framebuffer_size)
            elif we == sdl.SDL_WINDOWEVENT_FOCUS_GAINED:
                inp.on_focus(True)
            elif we == sdl.SDL_WINDOWEVENT_FOCUS_LOST:
                inp.on_focus(False)
            elif we == sdl.SDL_WINDOWEVENT_ENTER:
                inp.on_cursor_enter(True)
            elif we == sdl.SDL_WINDOWEVENT_LEAVE:
                inp.on_cursor_enter(False)
            elif we == sdl.SDL_WINDOWEVENT_CLOSE and not self.config.lock_close:
                self._close = True

    def _hide_idle_cursor(self, state: InputState) -> None:
        if self.config.hide_cursor_after <= 0:
            return
        moved = state.mouse_delta != (0.0, 0.0) or state.buttons_pressed or state.scroll != (0.0, 0.0)
        if moved or self._last_pointer_move is None:
            self._last_pointer_move = state.time
            if self._cursor_hidden:
                self.sdl.SDL_ShowCursor(self.sdl.SDL_ENABLE)
                self._cursor_hidden = False
        elif (
            not self._cursor_hidden and state.time - self._last_pointer_move >= self.config.hide_cursor_after
        ):
            self.sdl.SDL_ShowCursor(self.sdl.SDL_DISABLE)
            self._cursor_hidden = True

    @property
    def cursor_hidden(self) -> bool:
        return self._cursor_hidden

    def swap(self) -> None:
        self.sdl.SDL_GL_SwapWindow(self.handle)

    @property
    def should_close(self) -> bool:
        return self._close

    def request_close(self) -> None:
        """Close from the program (a quit key, the kiosk's exit chord); works on a locked window too."""
        self._close = True

    def set_title(self, title: str) -> None:
        self.sdl.SDL_SetWindowTitle(self.handle, title.encode())

    def set_vsync(self, on: bool) -> None:
        self.sdl.SDL_GL_SetSwapInterval(1 if on else 0)
        self.config.vsync = bool(on)

    @property
    def fullscreen(self) -> bool:
        return bool(self.sdl.SDL_GetWindowFlags(self.handle) & self.sdl.SDL_WINDOW_FULLSCREEN_DESKTOP)

    def set_fullscreen(self, on: bool) -> None:
        self.sdl.SDL_SetWindowFullscreen(self.handle, self.sdl.SDL_WINDOW_FULLSCREEN_DESKTOP if on else 0)
        self.config.fullscreen = bool(on)
        self.input.on_resize(self.size, self.framebuffer_size)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the GL context wrapper, the GL context and the window; quit SDL video. Idempotent."""
        self._teardown()

    def _teardown(self) -> None:
        if self.ctx is not None:
            self.ctx.release()
            self.ctx = None
        if self._gl is not None:
            self.sdl.SDL_GL_DeleteContext(self._gl)
            self._gl = None
        if self.handle is not None:
            self.sdl.SDL_DestroyWindow(self.handle)
            self.handle = None
            self.sdl.SDL_QuitSubSystem(self.sdl.SDL_INIT_VIDEO)

    def __enter__(self) -> SdlWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
