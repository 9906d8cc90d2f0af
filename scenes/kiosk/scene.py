"""KioskScene: the explorer as an unattended exhibit, by composition.

It wraps an `ExploreScene` (the network, the worker, the pad, the camera, the renderer) and
implements the same Scene protocol, forwarding update / upload / draw to it.  What it adds:

* who owns the exhibit (scenes/kiosk/idle.py): attract mode when nobody is there, the visitor
  from their first touch, a full reset (pad cleared, camera home, panels closed) when they leave;
* attract mode (attract.py): the pad is drawn on through `PadState` like a finger would, so the
  worker and the node colours follow the pen exactly as they follow a visitor;
* its own touch-sized panels (panels.py) instead of the explorer's, unless the config allows
  "explore"; a caption in plain words for the layer in view (or, in attract mode, for each layer
  in turn) in the visitor's language, which a button switches (captions.py); tap a layer for
  its visitor text, double-tap to fly the camera to it; pinch and two-finger pan where the
  window backend delivers them (engine/ui/input.py);
* locked keys: the explorer never sees a key; only the exit chord or the operator PIN end the
  kiosk (`exit_requested`, and the window is asked to close);
* a dark "Starting..." / "Restarting..." card until the network has answered.

Every time-dependent decision reads `clock` (injectable), so tests run idle timeouts instantly.

Length: the kiosk wraps one explorer and owns who holds the exhibit (visitor, attract pen,
operator), the camera framing and taps; attract, idle, captions and panels are modules of their own.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable

import glfw
import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.config import AppConfig
from convscope.engine.graph.layout import Layout
from convscope.engine.orbit import CLICK_SLOP, FLIGHT_S, Flight, Pose
from convscope.engine.scene import FrameContext
from convscope.engine.ui.input import MOUSE_LEFT, InputState
from convscope.scenes.explore.scene import ExploreScene
from convscope.scenes.kiosk.attract import Attract, attract_camera, load_strokes
from convscope.scenes.kiosk.captions import caption, words
from convscope.scenes.kiosk.config import LAYER_TEXT, STRINGS, KioskConfig
from convscope.scenes.kiosk.idle import RESET, START_ATTRACT, STOP_ATTRACT, VISITOR, IdleMachine
from convscope.scenes.kiosk.panels import KioskUi, gui_kiosk
from imgui_bundle import imgui

TAP_TIME = 0.35  # seconds a tap may last
DOUBLE_TAP = 0.45  # seconds between the taps of a double tap
FREE_MIN_FRACTION = 0.4  # the network gets the whole screen when the panels would leave it less
MIN_COVER_S = 0.6  # the start-up card stays at least this long, so it never flickers


def button_edge(control_mm: float, px_per_mm: float, scale: float) -> float:
    """Touch-target edge in window units: `control_mm` on the screen, never below ImGui's own
    frame height at `scale` (a 15 px font plus padding)."""
    return max(control_mm * px_per_mm, 21.0 * scale)


def kiosk_ui_scale(control_mm: float, px_per_mm: float, base: float) -> float:
    """ImGui style scale: at least `base` (the app's ui_scale times the monitor's DPI hint), and
    enough that ImGui's own widgets (21 px at scale 1) are `control_mm` tall."""
    return max(base, control_mm * px_per_mm / 21.0)


BRUSH_RANGE = (0.035, 0.065)  # brush radius, fractions of the pad: MNIST's pen is 1.5 to 4 of 28 pixels wide


def finger_brush(brush_mm: float, px_per_mm: float, pad_side: float, pad_size: int) -> float:
    """Brush radius in pad pixels for a stroke `brush_mm` wide on a pad `pad_side` window units across,
    kept within widths the network knows from MNIST (a thinner line reads as noise, a fatter as a blot)."""
    radius = brush_mm / 2.0 * px_per_mm * pad_size / max(pad_side, 1.0)
    return float(np.clip(radius, BRUSH_RANGE[0] * pad_size, BRUSH_RANGE[1] * pad_size))


class KioskScene:
    def __init__(
        self,
        config: AppConfig,
        kiosk: KioskConfig,
        *,
        ui_scale: float = 1.0,
        px_per_mm: float = 96.0 / 25.4,
        clock: Callable[[], float] = time.monotonic,
        restarts: int = 0,
    ) -> None:
        self.kiosk = kiosk
        self.clock = clock
        self.inner = ExploreScene(config, None, ui_scale)
        self.inner.owns_flights = False  # the kiosk flies the shared camera controller itself
        self.idle = IdleMachine(kiosk.attract_after, kiosk.reset_after, clock)
        self.attract = Attract(
            self.inner.pad,
            self.inner.camera,
            load_strokes(),
            pen_speed=kiosk.pen_speed,
            orbit_speed=kiosk.orbit_speed,
            yaw_range=kiosk.orbit_yaw,
            hold_digit=kiosk.hold_digit,
            seed=kiosk.seed,
        )
        self.ui = KioskUi(
            scale=ui_scale,
            button=button_edge(kiosk.control_mm, px_per_mm, ui_scale),
            strings={k: kiosk.string(k) for k in STRINGS},
            panels=tuple(kiosk.panels),
            cover=kiosk.string("restarting" if restarts else "starting"),
        )
        self.languages = list(dict.fromkeys([kiosk.language, *kiosk.languages]))
        self.set_language(kiosk.language)
        self.ui.cover = self.ui.s("restarting" if restarts else "starting")  # in the exhibit's language
        self.px_per_mm = px_per_mm
        self.exit_requested = False
        # One pointer rule for every scene: the explorer's controller, with a touch-sized slop and
        # the kiosk's clock (tap durations).
        self.controller = self.inner.controller
        self.controller.slop = CLICK_SLOP * self.ui.scale
        self.controller.clock = clock
        self._exit_keys = kiosk.exit_keys
        self._typed = ""  # digits typed since the last Enter (keyboard PIN)
        self._corner_since: float | None = None  # the top-right corner is being held since
        self._last_tap: tuple[float, float, float] | None = None
        self._zoom_left = 0.0  # zoom steps still to apply, spread over a few frames
        self.layout_key = None
        self._spec = None
        self._viewport = (1, 1)
        self._fb_scale = 1.0
        self._last_error: str | None = None
        self._started = clock()
        self._last = self._started
        self.app = None

    # -- the explorer's parts, for the runner, the soak and tests ------------------------------------

    @property
    def pad(self):
        return self.inner.pad

    @property
    def camera(self) -> OrbitCamera:
        return self.inner.camera

    @property
    def state(self):
        return self.inner.state

    @property
    def worker(self):
        return self.inner.worker

    @property
    def ready(self) -> bool:
        return self.inner.ready

    @property
    def layout(self) -> Layout | None:
        return self.inner.layout

    @property
    def flight(self) -> Flight | None:
        return self.controller.flight

    @flight.setter
    def flight(self, value: Flight | None) -> None:
        self.controller.flight = value

    # -- lifecycle ---------------------------------------------------------------------------------

    def on_enter(self, fc: FrameContext) -> None:
        self.app = fc.app
        self.inner.on_enter(fc)
        self.app.show_frame_time = False

    def on_exit(self) -> None:
        self.attract.stop()
        self.inner.on_exit()

    # -- per frame -----------------------------------------------------------------------------------

    def gui(self) -> None:
        now = self.clock()
        if self._visitor_in_imgui() and self.idle.state != VISITOR:
            # Before the pad widget runs: the finger that stops attract mode also starts the stroke.
            self._act(self.idle.step(True))
        self.ui.time = now - self._started
        self.ui.attract = self.attract.active
        self.ui.pen = self.attract.pen
        if self.ui.cover is not None and self.inner.ready and now - self._started >= MIN_COVER_S:
            self.ui.cover = None
        if self.ui.pin_open:
            self.ui.layer_card = None
        self._update_caption()
        if "explore" in self.ui.panels:
            self.inner.gui()
            self.app.show_frame_time = False
        io = imgui.get_io()
        reading = None if self.inner.input_blank else self.inner.state.probabilities
        gui_kiosk(self.ui, self.inner.pad, reading, (io.display_size.x, io.display_size.y))
        if not self.inner.pad.drawing and self.ui.pad_side > 0.0:
            self.inner.pad.radius = finger_brush(
                self.kiosk.brush_mm, self.px_per_mm, self.ui.pad_side, self.inner.pad.size
            )

    def update(self, inp: InputState, dt: float, ui_mouse: bool, ui_keyboard: bool) -> None:
        now = self.clock()
        kdt, self._last = max(now - self._last, 0.0), now
        self._fb_scale = inp.framebuffer_scale[0] or 1.0
        self._keys(inp)
        self._pin_corner(inp, now)
        self._act(self.idle.step(self._had_input(inp)))
        self._requests()
        if self.attract.active:
            self.attract.update(kdt)
            self._attract_camera()
        # The explorer's controller orbits, pans, pinches and zooms (a drag, wheel or pinch ends a
        # flight: the camera is the visitor's then) and reports the frame's taps.
        self.inner.update(_without_keys(inp), dt, ui_mouse, True)
        self._report_errors()
        self._watch_spec()
        self._taps(now)
        self._zoom_step(kdt)
        self.controller.step(kdt)

    def upload(self) -> None:
        self.inner.upload()

    def draw(self, viewport: tuple[int, int]) -> None:
        self._viewport = (max(int(viewport[0]), 1), max(int(viewport[1]), 1))
        self.inner.draw(viewport)

    # -- who owns the exhibit --------------------------------------------------------------------------

    def _visitor_in_imgui(self) -> bool:
        io = imgui.get_io()
        moved = io.mouse_pos.x > -1e30 and (io.mouse_delta.x != 0.0 or io.mouse_delta.y != 0.0)
        return any(io.mouse_down[i] for i in range(3)) or io.mouse_wheel != 0.0 or moved

    @staticmethod
    def _had_input(inp: InputState) -> bool:
        return bool(
            inp.buttons_pressed
            or inp.buttons_down
            or inp.keys_pressed
            or inp.chars
            or inp.scroll != (0.0, 0.0)
            or (inp.cursor_inside and inp.mouse_delta != (0.0, 0.0))
            or inp.touches
            or inp.pinch != 1.0
            or inp.pan2 != (0.0, 0.0)
        )

    def _act(self, actions: list[str]) -> None:
        for action in actions:
            if action == STOP_ATTRACT:
                self.attract.stop()
                self.inner.pad.clear()  # the visitor starts on an empty pad
                self.fly_home()
            elif action == RESET:
                self.reset()
            elif action == START_ATTRACT:
                self.attract.start()

    def _attract_camera(self) -> None:
        """Attract mode's camera: fly into the loop's first pose, then follow the loop."""
        if self.flight is not None:
            return
        if not self.attract.orbit_running:
            goal = self.attract_pose(0.0)
            if goal is None:
                return
            self.attract.orbit_running = True
            self.controller.fly_to(goal, FLIGHT_S)
            return
        pose = self.attract_pose(self.attract.orbit_t)
        if pose is not None:
            pose.apply(self.camera)

    def reset(self) -> None:
        """The full reset after a visitor leaves: pad cleared (unless the attract pen already owns it),
        camera home, panels closed."""
        if not self.attract.active:
            if self.inner.pad.drawing:
                self.inner.pad.end_stroke()
            self.inner.pad.clear()
        self.ui.layer_card = None
        self.ui.pin_open, self.ui.pin_entry, self.ui.pin_wrong = False, "", False
        self.set_language(self.kiosk.language)  # the next visitor starts in the exhibit's language
        self._zoom_left = 0.0
        if not self.attract.active:  # attract mode's camera loop is framed already
            self.fly_home()

    # -- words: the language and the caption of the layer in view ---------------------------------------

    def set_language(self, language: str) -> None:
        """Show the controls' words and the captions in `language`; the button offers the next one."""
        if language not in self.languages:
            return
        self.language = language
        own = self.kiosk.strings if language == self.kiosk.language else {}
        self.ui.strings = words(language, STRINGS, own)
        self.ui.language = language
        k = self.languages.index(language)
        self.ui.next_language = (
            self.languages[(k + 1) % len(self.languages)] if len(self.languages) > 1 else ""
        )

    def layer_in_view(self) -> int | None:
        """The layer the camera shows: None while the whole network fits in the free area, else the
        visible layer whose centre is nearest the free area's middle."""
        if self.layout is None:
            return None
        w, h = self._viewport
        x0, y0, x1, y1 = self.free_rect()
        visible = self.inner.state.layer_visible
        shown = [i for i in range(len(self.layout.layer_bounds)) if not visible or visible[i]]
        boxes = self.layout.layer_bounds[shown]
        corners = np.concatenate([np.where(m, boxes[:, 1], boxes[:, 0]) for m in _CORNERS])
        pts = self.camera.project(corners, w, h)
        if (
            np.isfinite(pts).all()
            and (pts.min(0) >= (x0 - 1, y0 - 1)).all()
            and (pts.max(0) <= (x1 + 1, y1 + 1)).all()
        ):
            return None
        centres = self.camera.project(np.array([self.layout.layer_center(i) for i in shown]), w, h)
        mid = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
        gaps = [float(np.linalg.norm(c - mid)) if np.isfinite(c).all() else math.inf for c in centres]
        k = int(np.argmin(gaps))
        return shown[k] if math.isfinite(gaps[k]) else None

    def caption_layer(self) -> int | None:
        """Whose caption shows: in attract mode each layer in turn, bottom to top, after the whole
        network's (caption_s seconds each); otherwise the layer in view."""
        if self._spec is None:
            return None
        if self.attract.active:
            n = len(self._spec.layers) + 1
            k = int(self.attract.orbit_t / self.kiosk.caption_s) % n
            return None if k == 0 else k - 1
        return self.layer_in_view()

    def _update_caption(self) -> None:
        ui = self.ui
        room = self.free_rect()[1] >= ui.caption_bottom * self._fb_scale - 1.0
        if "captions" not in ui.panels or self._spec is None or not room:
            ui.caption_text = ""
            return
        index = self.caption_layer()
        extra = self.kiosk.captions
        if index is None:
            ui.caption_title, ui.caption_anchor = "", None
            ui.caption_text = caption(self._spec.model, "network", self.language, extra) or ""
            return
        name = self._spec.layers[index].name
        ui.caption_title = name
        ui.caption_text = caption(self._spec.model, name, self.language, extra) or ""
        w, h = self._viewport
        at = self.camera.project(self.layout.layer_center(index)[None], w, h)[0] / self._fb_scale
        ui.caption_anchor = (float(at[0]), float(at[1])) if np.isfinite(at).all() else None

    def _layer_text(self, layer: str) -> str | None:
        """The long text of a tapped layer in the visitor's language: the config's in its own
        language, the built-in English, else the caption."""
        model = self._spec.model
        if self.language == self.kiosk.language:
            return self.kiosk.layer_text(model, layer)
        if self.language == "en":
            return LAYER_TEXT.get(f"{model}.{layer}") or LAYER_TEXT.get(layer)
        return caption(model, layer, self.language, self.kiosk.captions)

    # -- keys: locked, except the way out ----------------------------------------------------------------

    def _keys(self, inp: InputState) -> None:
        if self._exit_keys is not None:
            mods, key = self._exit_keys
            for e in inp.events:
                if e.kind == "key" and e.down and e.code == key and (e.mods & mods) == mods:
                    self.request_exit()
        if self.kiosk.pin:
            self._typed = (self._typed + "".join(c for c in inp.chars if c.isdigit()))[-12:]
            if inp.key_pressed(glfw.KEY_ENTER) or inp.key_pressed(glfw.KEY_KP_ENTER):
                if self._typed.endswith(self.kiosk.pin):
                    self.request_exit()
                self._typed = ""

    def _pin_corner(self, inp: InputState, now: float) -> None:
        """Holding the top-right corner for pin_hold seconds opens the PIN keypad."""
        if not self.kiosk.pin:
            return
        w = inp.window_size[0]
        x, y = inp.mouse_pos
        if inp.is_down(MOUSE_LEFT) and x >= w - self.ui.button and y <= self.ui.button:
            if self._corner_since is None:
                self._corner_since = now
            elif now - self._corner_since >= self.kiosk.pin_hold:
                self.ui.pin_open = True
        else:
            self._corner_since = None

    def request_exit(self) -> None:
        self.exit_requested = True
        window = getattr(self.app, "window", None)
        if window is not None:
            window.request_close()

    # -- what the panels asked for ---------------------------------------------------------------------

    def _requests(self) -> None:
        ui = self.ui
        if ui.clear or ui.fit or ui.reset or ui.zoom or ui.switch_language or ui.pin_submit is not None:
            self._act(self.idle.touch())  # a panel button is a touch, whatever the window reported
        if ui.clear:
            ui.clear = False
            self.inner.pad.clear()
        if ui.switch_language:
            ui.switch_language = False
            self.set_language(ui.next_language)
        if ui.fit:
            ui.fit = False
            self.fly_home(keep_angle=True)
        if ui.reset:
            ui.reset = False
            self.fly_home()
        if ui.zoom:
            self._zoom_left += ui.zoom
            ui.zoom = 0.0
        if ui.pin_submit is not None:
            if self.kiosk.pin and ui.pin_submit == self.kiosk.pin:
                self.request_exit()
            else:
                ui.pin_wrong = True
            ui.pin_submit = None

    def _report_errors(self) -> None:
        """Problems the explorer would show in its status panel go to stderr instead, which the
        supervisor writes to the kiosk log: visitors see none of it, operators all of it."""
        error = self.inner.state.error
        if error != self._last_error:
            self._last_error = error
            if error:
                print(f"convscope kiosk: {error}", file=sys.stderr, flush=True)

    # -- camera ------------------------------------------------------------------------------------------

    def _watch_spec(self) -> None:
        spec = self.inner.spec
        if spec is None:
            return
        key = id(self.inner.layout)  # a new network, or the same one laid out again
        if key != self.layout_key:
            first = self._spec is None or spec.model != self._spec.model
            self.layout_key, self._spec = key, spec
            self.ui.layer_card = None
            if first:
                self.fly_home()

    def free_region(self) -> tuple[float, float]:
        """Left and right edge (framebuffer pixels) of the part of the screen the panels leave free."""
        r = self.ui.layout.free(FREE_MIN_FRACTION)
        if r.w <= 0:  # no panels laid out yet
            return 0.0, float(self._viewport[0])
        return r.x * self._fb_scale, r.right * self._fb_scale

    def free_rect(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) framebuffer pixels the network may fill: between the pad panel and the
        control column, below the top margin and above the strip of the attract prompt."""
        w, h = self._viewport
        left, right = self.free_region()
        k = self.ui.scale * self._fb_scale
        top, bottom = max(12.0 * k, self.ui.caption_bottom * self._fb_scale), h - 64.0 * k
        if bottom - top < 0.5 * h:  # a small screen: no room for captions (gui_caption skips them)
            top = 12.0 * k
        if bottom - top < 0.5 * h:
            top, bottom = 0.0, float(h)
        return left, top, right, bottom

    def attract_pose(self, t: float) -> Pose | None:
        """Attract mode's camera at loop time `t`: the whole network framed in the free area."""
        if self.layout is None:
            return None
        goal = attract_camera(
            self.layout.layer_bounds,
            self.free_rect(),
            self._viewport,
            t,
            orbit_speed=self.attract.orbit_speed,
            yaw_range=self.attract.yaw_range,
            camera=self.camera,
        )
        return Pose(np.asarray(goal.target, np.float64).copy(), goal.yaw, goal.pitch, goal.distance)

    def home_pose(self, keep_angle: bool = False) -> Pose | None:
        """The whole network framed in the free area: from the home angle (attract mode's first
        pose), or from the current angle (Fit)."""
        if self.layout is None:
            return None
        lo, hi = self.layout.bounds
        self.camera.scene_radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-3)
        if not keep_angle:
            return self.attract_pose(0.0)
        w, h = self._viewport
        left, right = self.free_region()
        return self.controller.fit_pose(
            self.layout.bounds, (left, 0.0, right - left, h), (w, h), margin=0.1, keep_angle=keep_angle
        )

    def fly_home(self, keep_angle: bool = False) -> None:
        goal = self.home_pose(keep_angle)
        if goal is not None:
            self.controller.fly_to(goal, FLIGHT_S)

    def fly_to_layer(self, index: int) -> None:
        w, h = self._viewport
        left, top, right, bottom = self.free_rect()
        # In the middle of the free area, below the caption: the layer in view is this one.
        goal = self.controller.fit_pose(
            tuple(self.layout.layer_bounds[index]),
            (left, top, right - left, bottom - top),
            (w, h),
            margin=0.25,
            keep_angle=True,
            min_pitch=math.radians(35.0),
        )
        self.controller.fly_to(goal, FLIGHT_S)

    def _zoom_step(self, dt: float) -> None:
        if abs(self._zoom_left) < 1e-3:
            self._zoom_left = 0.0
            return
        step = self._zoom_left * min(1.0, dt * 10.0)  # most of a click's zoom within ~0.3 s
        self._zoom_left -= step
        self.flight = None
        w, h = self._viewport
        left, right = self.free_region()
        ndc = (2.0 * ((left + right) / 2.0) / w - 1.0, 0.0)  # toward the middle of the free region
        self.camera.zoom(step, ndc, w / h)

    # -- tapping a layer ---------------------------------------------------------------------------------

    def _taps(self, now: float) -> None:
        for click in self.controller.clicks:  # within the slop, so not an orbit
            if click.held_s <= TAP_TIME:
                self._tap(click.x, click.y, now)

    def _tap(self, x: float, y: float, now: float) -> None:
        double = (
            self._last_tap is not None
            and now - self._last_tap[2] <= DOUBLE_TAP
            and math.hypot(x - self._last_tap[0], y - self._last_tap[1]) <= 3 * self.controller.slop
        )
        self._last_tap = None if double else (x, y, now)
        layer = self.pick_layer(x * self._fb_scale, y * self._fb_scale)
        if layer is None:
            return
        if "layer_text" in self.ui.panels:
            self.open_layer_card(layer)
        if double:
            self.fly_to_layer(layer)

    def open_layer_card(self, index: int) -> None:
        layer = self._spec.layers[index]
        text = self._layer_text(layer.name)
        if text is None:
            return
        shape = layer.shape
        if len(shape) == 3:
            what = f"{shape[0]} map{'s' if shape[0] != 1 else ''} of {shape[1]} x {shape[2]}"
        else:
            what = f"{shape[0]} nodes"
        self.ui.layer_card = index
        w, h = self._viewport
        centre = self.camera.project(self.layout.layer_center(index)[None], w, h)[0]
        self.ui.card_on_top = bool(np.isfinite(centre[1]) and centre[1] > 0.5 * h)
        self.ui.card_title = f"{layer.name}  ·  {what}"
        self.ui.card_text = text

    def pick_layer(self, px: float, py: float, hit_px: float | None = None) -> int | None:
        """The layer under framebuffer pixel (px, py): the explorer's picker first (the node drawn there,
        else the nearest layer sheet the ray crosses, with a margin); failing that, the layer whose sheet
        on screen comes within `hit_px` pixels of the tap (default: half a `control_mm` target), so a
        thin fully connected row is as easy to hit as a button."""
        if self.inner.view is None or self.layout is None:
            return None
        visible = self.inner.state.layer_visible or None
        best = self.inner.view.pick_layer(self.camera, px, py, self._viewport, visible)
        if best is not None:
            return best
        w, h = self._viewport
        shown = [i for i in range(len(self.layout.layer_bounds)) if not visible or visible[i]]
        if hit_px is None:
            hit_px = 0.5 * self.kiosk.control_mm * self.px_per_mm * self._fb_scale
        best_gap = hit_px
        for i in shown:
            lo, hi = self.layout.layer_bounds[i]
            yc = (lo[1] + hi[1]) / 2.0
            sheet = np.array([[lo[0], yc, lo[2]], [hi[0], yc, lo[2]], [hi[0], yc, hi[2]], [lo[0], yc, hi[2]]])
            quad = self.camera.project(sheet, w, h)
            if not np.isfinite(quad).all():
                continue
            gap = _distance_to_quad(np.array([px, py]), quad)
            if gap <= best_gap:
                best, best_gap = i, gap
        return best


_CORNERS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], bool)


def _distance_to_quad(p: np.ndarray, quad: np.ndarray) -> float:
    """Distance from point `p` to the convex quadrilateral `quad` (4, 2) on screen; 0 inside."""
    edges = np.roll(quad, -1, axis=0) - quad
    cross = edges[:, 0] * (p[1] - quad[:, 1]) - edges[:, 1] * (p[0] - quad[:, 0])
    if (cross >= 0).all() or (cross <= 0).all():
        return 0.0
    rel = p - quad
    u = np.clip((rel * edges).sum(1) / np.maximum((edges * edges).sum(1), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(rel - edges * u[:, None], axis=1).min())


def _without_keys(inp: InputState) -> InputState:
    """The frame's input with every key and typed character removed: the explorer's shortcuts are locked."""
    return dataclasses.replace(
        inp,
        keys_down=frozenset(),
        keys_pressed=frozenset(),
        keys_released=frozenset(),
        chars="",
        events=tuple(e for e in inp.events if e.kind not in ("key", "char")),
    )
