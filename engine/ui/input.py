"""Input: window events gathered into one immutable `InputState` per frame, and replayed into ImGui.

`InputCollector` receives raw events (the window's GLFW callbacks call its `on_*` methods; a test
or a headless run may call them directly) and `snapshot()` turns everything since the last frame
into an `InputState`: pointer position in window and framebuffer coordinates, buttons down /
pressed / released, drag offsets, scroll, keys, typed text, resize and focus. The camera and the
scenes read that; `forward_to_imgui` replays the same events, in their original order, into
ImGui's input queue (so a press and a release inside one frame still make a click).

Touch: a window backend that has finger events (engine/window_sdl.py) feeds them to
`on_touch_down / on_touch_move / on_touch_up`.  One finger is turned into the left mouse button
(so drawing and orbiting work as with a mouse, and ImGui sees a click); as soon as a second finger
lands the emulated button is released and the frame's two-finger gesture is reported instead, as
`pinch` (distance ratio) and `pan2` (centroid movement), until every finger is up.  GLFW has no
touch events: there a single touch arrives from the OS as the mouse.

Coordinates: window coordinates have their origin at the top-left of the client area, in the units
GLFW reports (screen coordinates, which are logical points on macOS and pixels elsewhere);
framebuffer coordinates are pixels of the drawable, same origin. Keys are GLFW key codes,
mouse buttons are 0 left, 1 right, 2 middle (GLFW's and ImGui's numbering). No GL here.

Recording: with an `InputRecorder` attached (`collector.recorder`, engine/ui/recording.py), every
pointer and finger event a window hands in is written down; an `InputReplay` attached
(`collector.replay`) feeds such a recording back through the same `on_*` methods, frame by frame,
while the live pointer and fingers are ignored until the replay ends.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

import glfw
from imgui_bundle import imgui

if TYPE_CHECKING:
    from convscope.engine.ui.recording import InputRecorder, InputReplay

MOUSE_LEFT, MOUSE_RIGHT, MOUSE_MIDDLE = 0, 1, 2
KEY_RELEASE, KEY_PRESS, KEY_REPEAT = glfw.RELEASE, glfw.PRESS, glfw.REPEAT
MOD_SHIFT, MOD_CONTROL, MOD_ALT, MOD_SUPER = glfw.MOD_SHIFT, glfw.MOD_CONTROL, glfw.MOD_ALT, glfw.MOD_SUPER

# The modifier each modifier key sets, so `mods` is right on the key's own event (X11 reports the
# state from before the key).
_MODIFIER_KEYS = {
    glfw.KEY_LEFT_SHIFT: MOD_SHIFT,
    glfw.KEY_RIGHT_SHIFT: MOD_SHIFT,
    glfw.KEY_LEFT_CONTROL: MOD_CONTROL,
    glfw.KEY_RIGHT_CONTROL: MOD_CONTROL,
    glfw.KEY_LEFT_ALT: MOD_ALT,
    glfw.KEY_RIGHT_ALT: MOD_ALT,
    glfw.KEY_LEFT_SUPER: MOD_SUPER,
    glfw.KEY_RIGHT_SUPER: MOD_SUPER,
}


class InputEvent(NamedTuple):
    """One raw event, kept in arrival order for ImGui."""

    kind: str  # "pos", "leave", "button", "scroll", "key", "char" or "focus"
    x: float = 0.0  # pointer position (pos) or wheel offset (scroll)
    y: float = 0.0
    code: int = 0  # mouse button, GLFW key or unicode code point
    down: bool = False  # button / key pressed, or window focused
    mods: int = 0  # GLFW modifier bits after this event


@dataclass(frozen=True)
class InputState:
    """Everything the user did during one frame. Immutable; a fresh one each frame."""

    time: float = 0.0  # seconds, the window's clock when the snapshot was taken
    dt: float = 1.0 / 60.0  # seconds since the previous snapshot (1/60 for the first)
    window_size: tuple[int, int] = (0, 0)  # client area in window coordinates (ImGui's display size)
    framebuffer_size: tuple[int, int] = (0, 0)  # drawable in pixels
    content_scale: tuple[float, float] = (1.0, 1.0)  # the monitor's DPI scale as GLFW reports it
    resized: bool = False  # window or framebuffer size changed this frame
    focused: bool = True
    cursor_inside: bool = False
    mouse_pos: tuple[float, float] = (0.0, 0.0)  # window coordinates
    mouse_delta: tuple[float, float] = (0.0, 0.0)  # movement this frame, window coordinates
    buttons_down: frozenset[int] = frozenset()
    buttons_pressed: frozenset[int] = frozenset()  # went down this frame (even if also released)
    buttons_released: frozenset[int] = frozenset()  # went up this frame
    drag_origin: Mapping[int, tuple[float, float]] = field(default_factory=dict)  # held button -> press pos
    scroll: tuple[float, float] = (0.0, 0.0)  # wheel / trackpad offset summed over the frame
    keys_down: frozenset[int] = frozenset()  # GLFW key codes
    keys_pressed: frozenset[int] = frozenset()  # went down this frame (repeats excluded)
    keys_released: frozenset[int] = frozenset()
    mods: int = 0  # GLFW modifier bits at the end of the frame
    chars: str = ""  # text typed this frame
    events: tuple[InputEvent, ...] = ()  # the raw events, in order (for ImGui)
    touches: int = 0  # fingers on the screen at the end of the frame (0 with GLFW: no touch events)
    pinch: float = 1.0  # two-finger spread this frame: distance now / distance before (1 = none)
    pan2: tuple[float, float] = (0.0, 0.0)  # two-finger centroid movement this frame, window coordinates
    touch_center: tuple[float, float] = (0.0, 0.0)  # the two-finger centroid, window coordinates

    @property
    def framebuffer_scale(self) -> tuple[float, float]:
        """Pixels per window unit (2 on a Retina Mac, usually 1 elsewhere)."""
        w, h = self.window_size
        fw, fh = self.framebuffer_size
        return (fw / w if w else 1.0, fh / h if h else 1.0)

    @property
    def mouse_pos_fb(self) -> tuple[float, float]:
        """Pointer position in framebuffer pixels (top-left origin): for picking and viewports."""
        sx, sy = self.framebuffer_scale
        return (self.mouse_pos[0] * sx, self.mouse_pos[1] * sy)

    @property
    def minimized(self) -> bool:
        return self.framebuffer_size[0] <= 0 or self.framebuffer_size[1] <= 0

    def is_down(self, button: int) -> bool:
        return button in self.buttons_down

    def was_pressed(self, button: int) -> bool:
        return button in self.buttons_pressed

    def was_released(self, button: int) -> bool:
        return button in self.buttons_released

    def key_pressed(self, key: int) -> bool:
        return key in self.keys_pressed

    def chord_pressed(self, key: int, mods: int = 0) -> bool:
        """`key` went down this frame with exactly the modifiers `mods` (Shift, Ctrl, Alt, Super; lock keys
        ignored), read from the key's own event: a press and a release can both land in one frame."""
        held = MOD_SHIFT | MOD_CONTROL | MOD_ALT | MOD_SUPER
        return any(
            e.kind == "key" and e.code == key and e.down and e.mods & held == mods for e in self.events
        )

    def drag_delta(self, button: int) -> tuple[float, float]:
        """Offset from where `button` went down to the pointer now; (0, 0) when it is not held."""
        origin = self.drag_origin.get(button)
        if origin is None:
            return (0.0, 0.0)
        return (self.mouse_pos[0] - origin[0], self.mouse_pos[1] - origin[1])


def _source(name: str):
    """An event sink that a recorder records and a replay stands in for (outermost calls only: the
    touch sinks' own calls to the mouse sinks are not recorded twice)."""

    def wrap(method):
        @functools.wraps(method)
        def sink(self, *args):
            if self._nested == 0:
                if self.replay is not None and not self._replaying:
                    return  # the live pointer waits while a recording plays
                if self.recorder is not None:
                    self.recorder.event(name, args)
            self._nested += 1
            try:
                return method(self, *args)
            finally:
                self._nested -= 1

        return sink

    return wrap


class InputCollector:
    """Accumulates events between frames; `snapshot()` hands them over as one `InputState`."""

    def __init__(
        self,
        window_size: tuple[int, int] = (0, 0),
        framebuffer_size: tuple[int, int] = (0, 0),
        content_scale: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        self.window_size = (int(window_size[0]), int(window_size[1]))
        self.framebuffer_size = (int(framebuffer_size[0]), int(framebuffer_size[1]))
        self.content_scale = (float(content_scale[0]), float(content_scale[1]))
        self.focused = True
        self.cursor_inside = False
        self.mouse_pos = (0.0, 0.0)
        self.mods = 0
        self._buttons_down: set[int] = set()
        self._keys_down: set[int] = set()
        self._drag_origin: dict[int, tuple[float, float]] = {}
        self._last_time: float | None = None
        self._frame_start_pos = self.mouse_pos
        self._fingers: dict[int, tuple[float, float]] = {}  # finger id -> position, window coordinates
        self._primary: int | None = None  # the finger that drives the emulated left button
        self._gesture = False  # two fingers were down since the last time none was
        self._touch_center = (0.0, 0.0)
        self.recorder: InputRecorder | None = None  # writes the pointer and finger events
        self.replay: InputReplay | None = None  # plays recorded events in place of the live ones
        self._replaying = False
        self._nested = 0
        self._clear_frame()

    def _clear_frame(self) -> None:
        self._events: list[InputEvent] = []
        self._pressed: set[int] = set()
        self._released: set[int] = set()
        self._keys_pressed: set[int] = set()
        self._keys_released: set[int] = set()
        self._scroll = [0.0, 0.0]
        self._chars: list[str] = []
        self._resized = False
        self._frame_start_pos = self.mouse_pos
        self._pinch = 1.0
        self._pan2 = [0.0, 0.0]

    # -- event sinks (GLFW callback signatures minus the window handle) ----------------------------

    @_source("cursor_pos")
    def on_cursor_pos(self, x: float, y: float) -> None:
        self.mouse_pos = (float(x), float(y))
        self.cursor_inside = True
        self._events.append(InputEvent("pos", self.mouse_pos[0], self.mouse_pos[1]))

    @_source("cursor_enter")
    def on_cursor_enter(self, entered: bool) -> None:
        self.cursor_inside = bool(entered)
        if entered:
            self._events.append(InputEvent("pos", self.mouse_pos[0], self.mouse_pos[1]))
        else:
            self._events.append(InputEvent("leave"))

    @_source("mouse_button")
    def on_mouse_button(self, button: int, down: bool, mods: int = 0) -> None:
        self.mods = mods
        if down:
            self._buttons_down.add(button)
            self._pressed.add(button)
            self._drag_origin[button] = self.mouse_pos
        elif button in self._buttons_down:
            self._buttons_down.discard(button)
            self._released.add(button)
            self._drag_origin.pop(button, None)
        self._events.append(InputEvent("button", code=button, down=bool(down), mods=mods))

    @_source("scroll")
    def on_scroll(self, dx: float, dy: float) -> None:
        self._scroll[0] += dx
        self._scroll[1] += dy
        self._events.append(InputEvent("scroll", float(dx), float(dy)))

    def on_key(self, key: int, action: int, mods: int = 0) -> None:
        if action == KEY_REPEAT:
            return  # ImGui and the camera do their own repeat from the held state
        down = action == KEY_PRESS
        bit = _MODIFIER_KEYS.get(key, 0)
        mods = (mods | bit) if down else (mods & ~bit)
        self.mods = mods
        if down:
            self._keys_down.add(key)
            self._keys_pressed.add(key)
        else:
            self._keys_down.discard(key)
            self._keys_released.add(key)
        self._events.append(InputEvent("key", code=key, down=down, mods=mods))

    def on_char(self, codepoint: int) -> None:
        self._chars.append(chr(codepoint))
        self._events.append(InputEvent("char", code=int(codepoint)))

    def on_focus(self, focused: bool) -> None:
        self.focused = bool(focused)
        if not focused:
            # Releases can be lost while another window has focus; never leave a drag stuck.
            for button in sorted(self._buttons_down):
                self.on_mouse_button(button, False, self.mods)
            for key in list(self._keys_down):
                self._keys_released.add(key)
            self._keys_down.clear()
            self.mods = 0
            self._fingers.clear()
            self._primary, self._gesture = None, False
        self._events.append(InputEvent("focus", down=bool(focused)))

    def on_resize(self, window_size: tuple[int, int], framebuffer_size: tuple[int, int]) -> None:
        self.window_size = (int(window_size[0]), int(window_size[1]))
        self.framebuffer_size = (int(framebuffer_size[0]), int(framebuffer_size[1]))
        self._resized = True

    def on_content_scale(self, sx: float, sy: float) -> None:
        self.content_scale = (float(sx), float(sy))
        self._resized = True

    # -- touch (window coordinates; finger ids as the platform numbers them) ---------------------

    def _two_fingers(self) -> tuple[float, tuple[float, float]] | None:
        """Distance and centroid of the two lowest-numbered fingers down."""
        if len(self._fingers) < 2:
            return None
        (ax, ay), (bx, by) = (self._fingers[k] for k in sorted(self._fingers)[:2])
        return math.hypot(bx - ax, by - ay), ((ax + bx) / 2.0, (ay + by) / 2.0)

    @_source("touch_down")
    def on_touch_down(self, finger: int, x: float, y: float) -> None:
        self._fingers[finger] = (float(x), float(y))
        if len(self._fingers) == 1 and not self._gesture:
            self._primary = finger
            self.on_cursor_pos(x, y)
            self.on_mouse_button(MOUSE_LEFT, True, self.mods)
            return
        if not self._gesture:
            # A second finger: what the first one started (a stroke, an orbit) ends here.
            self._gesture = True
            if MOUSE_LEFT in self._buttons_down:
                self.on_mouse_button(MOUSE_LEFT, False, self.mods)
        pair = self._two_fingers()
        if pair is not None:
            self._touch_center = pair[1]

    @_source("touch_move")
    def on_touch_move(self, finger: int, x: float, y: float) -> None:
        if finger not in self._fingers:
            return
        before = self._two_fingers()
        self._fingers[finger] = (float(x), float(y))
        if not self._gesture:
            if finger == self._primary:
                self.on_cursor_pos(x, y)
            return
        after = self._two_fingers()
        if before is None or after is None:
            return
        (d0, c0), (d1, c1) = before, after
        if d0 > 1e-6 and d1 > 1e-6:
            self._pinch *= d1 / d0
        self._pan2[0] += c1[0] - c0[0]
        self._pan2[1] += c1[1] - c0[1]
        self._touch_center = c1

    @_source("touch_up")
    def on_touch_up(self, finger: int, x: float, y: float) -> None:
        if finger not in self._fingers:
            return
        del self._fingers[finger]
        if finger == self._primary and not self._gesture:
            self.on_cursor_pos(x, y)
            self.on_mouse_button(MOUSE_LEFT, False, self.mods)
        if finger == self._primary:
            self._primary = None
        if not self._fingers:
            self._gesture = False

    # -- per frame -----------------------------------------------------------------------------

    def snapshot(self, time: float | None = None) -> InputState:
        """Everything since the previous snapshot; starts collecting the next frame."""
        if self.replay is not None:
            self._replaying = True
            try:
                self.replay.feed(self)
            finally:
                self._replaying = False
            if self.replay.done:
                self.replay = None  # the live pointer again
        if time is None or self._last_time is None:
            dt = 1.0 / 60.0
        else:
            dt = max(time - self._last_time, 1e-4)  # ImGui asserts on dt <= 0
        if time is not None:
            self._last_time = time
        x0, y0 = self._frame_start_pos
        state = InputState(
            time=0.0 if time is None else float(time),
            dt=dt,
            window_size=self.window_size,
            framebuffer_size=self.framebuffer_size,
            content_scale=self.content_scale,
            resized=self._resized,
            focused=self.focused,
            cursor_inside=self.cursor_inside,
            mouse_pos=self.mouse_pos,
            mouse_delta=(self.mouse_pos[0] - x0, self.mouse_pos[1] - y0),
            buttons_down=frozenset(self._buttons_down),
            buttons_pressed=frozenset(self._pressed),
            buttons_released=frozenset(self._released),
            drag_origin=MappingProxyType(dict(self._drag_origin)),
            scroll=(self._scroll[0], self._scroll[1]),
            keys_down=frozenset(self._keys_down),
            keys_pressed=frozenset(self._keys_pressed),
            keys_released=frozenset(self._keys_released),
            mods=self.mods,
            chars="".join(self._chars),
            events=tuple(self._events),
            touches=len(self._fingers),
            pinch=self._pinch,
            pan2=(self._pan2[0], self._pan2[1]),
            touch_center=self._touch_center,
        )
        self._clear_frame()
        if self.recorder is not None:
            self.recorder.frame()
        return state


# -- ImGui ------------------------------------------------------------------------------------------

_FLT_MAX = 3.4028234663852886e38  # ImGui's "no mouse" position


def _build_key_map() -> dict[int, imgui.Key]:
    k = imgui.Key
    table = {
        glfw.KEY_TAB: k.tab,
        glfw.KEY_LEFT: k.left_arrow,
        glfw.KEY_RIGHT: k.right_arrow,
        glfw.KEY_UP: k.up_arrow,
        glfw.KEY_DOWN: k.down_arrow,
        glfw.KEY_PAGE_UP: k.page_up,
        glfw.KEY_PAGE_DOWN: k.page_down,
        glfw.KEY_HOME: k.home,
        glfw.KEY_END: k.end,
        glfw.KEY_INSERT: k.insert,
        glfw.KEY_DELETE: k.delete,
        glfw.KEY_BACKSPACE: k.backspace,
        glfw.KEY_SPACE: k.space,
        glfw.KEY_ENTER: k.enter,
        glfw.KEY_ESCAPE: k.escape,
        glfw.KEY_APOSTROPHE: k.apostrophe,
        glfw.KEY_COMMA: k.comma,
        glfw.KEY_MINUS: k.minus,
        glfw.KEY_PERIOD: k.period,
        glfw.KEY_SLASH: k.slash,
        glfw.KEY_SEMICOLON: k.semicolon,
        glfw.KEY_EQUAL: k.equal,
        glfw.KEY_LEFT_BRACKET: k.left_bracket,
        glfw.KEY_BACKSLASH: k.backslash,
        glfw.KEY_RIGHT_BRACKET: k.right_bracket,
        glfw.KEY_GRAVE_ACCENT: k.grave_accent,
        glfw.KEY_CAPS_LOCK: k.caps_lock,
        glfw.KEY_SCROLL_LOCK: k.scroll_lock,
        glfw.KEY_NUM_LOCK: k.num_lock,
        glfw.KEY_PRINT_SCREEN: k.print_screen,
        glfw.KEY_PAUSE: k.pause,
        glfw.KEY_KP_DECIMAL: k.keypad_decimal,
        glfw.KEY_KP_DIVIDE: k.keypad_divide,
        glfw.KEY_KP_MULTIPLY: k.keypad_multiply,
        glfw.KEY_KP_SUBTRACT: k.keypad_subtract,
        glfw.KEY_KP_ADD: k.keypad_add,
        glfw.KEY_KP_ENTER: k.keypad_enter,
        glfw.KEY_KP_EQUAL: k.keypad_equal,
        glfw.KEY_LEFT_SHIFT: k.left_shift,
        glfw.KEY_LEFT_CONTROL: k.left_ctrl,
        glfw.KEY_LEFT_ALT: k.left_alt,
        glfw.KEY_LEFT_SUPER: k.left_super,
        glfw.KEY_RIGHT_SHIFT: k.right_shift,
        glfw.KEY_RIGHT_CONTROL: k.right_ctrl,
        glfw.KEY_RIGHT_ALT: k.right_alt,
        glfw.KEY_RIGHT_SUPER: k.right_super,
        glfw.KEY_MENU: k.menu,
    }
    for i in range(10):
        table[glfw.KEY_0 + i] = getattr(k, f"_{i}")
        table[glfw.KEY_KP_0 + i] = getattr(k, f"keypad{i}")
    for i in range(26):
        table[glfw.KEY_A + i] = getattr(k, chr(ord("a") + i))
    for i in range(12):
        table[glfw.KEY_F1 + i] = getattr(k, f"f{i + 1}")
    return table


GLFW_TO_IMGUI_KEY: dict[int, imgui.Key] = _build_key_map()


def _forward_mods(io: imgui.IO, mods: int) -> None:
    io.add_key_event(imgui.Key.mod_ctrl, bool(mods & MOD_CONTROL))
    io.add_key_event(imgui.Key.mod_shift, bool(mods & MOD_SHIFT))
    io.add_key_event(imgui.Key.mod_alt, bool(mods & MOD_ALT))
    io.add_key_event(imgui.Key.mod_super, bool(mods & MOD_SUPER))


def forward_to_imgui(state: InputState, io: imgui.IO | None = None) -> None:
    """Replay a frame's events into ImGui's input queue (call before `imgui.new_frame`)."""
    io = io if io is not None else imgui.get_io()
    for ev in state.events:
        if ev.kind == "pos":
            io.add_mouse_pos_event(ev.x, ev.y)
        elif ev.kind == "leave":
            io.add_mouse_pos_event(-_FLT_MAX, -_FLT_MAX)
        elif ev.kind == "button":
            if 0 <= ev.code < imgui.MouseButton_.count:
                _forward_mods(io, ev.mods)
                io.add_mouse_button_event(ev.code, ev.down)
        elif ev.kind == "scroll":
            io.add_mouse_wheel_event(ev.x, ev.y)
        elif ev.kind == "key":
            _forward_mods(io, ev.mods)
            key = GLFW_TO_IMGUI_KEY.get(ev.code)
            if key is not None:
                io.add_key_event(key, ev.down)
        elif ev.kind == "char":
            if 0 < ev.code < 0x110000:
                io.add_input_character(ev.code)
        elif ev.kind == "focus":
            io.add_focus_event(ev.down)
