"""The main loop: poll input -> panels -> update scene -> upload -> draw -> ImGui -> swap.

`App` runs one `Scene` (see engine/scene.py) either in a GLFW window or headless into an
offscreen framebuffer (EGL); both paths share `frame()`, so a headless test exercises the very
code a user runs.  The panels are built right after input is polled so that a pen stroke made in
this frame reaches the worker in this frame's update, not the next one.

The app owns the ImGui context and renderer, the frame clock, the frame-time overlay and the app-wide
keys (engine/ui/help.py): F1 or `?` shows the scene's help (from its `help_sections()`), Ctrl+S or Print
saves a screenshot through `save_screenshot`; the scene owns everything about its network.  It also
owns the View settings (engine/ui/settings.py): Ctrl+= / Ctrl+- / Ctrl+0 and the scenes' View row
change `prefs.ui_scale` (remembered in the user's config folder for windowed runs), F5 toggles
presentation mode (`prefs.presentation`: bigger type; the scenes' panel layouts fold their panels).
Between frames the app applies them: ImGui's style, and the scene's `ui_scale` attribute when it has one.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import glfw
import numpy as np
from convscope.engine.files import write_screenshot
from convscope.engine.gpu.frame import OffscreenTarget
from convscope.engine.gpu.imgui_renderer import ImGuiRenderer
from convscope.engine.scene import FrameContext, Scene
from convscope.engine.ui.backend import UiBackend, UiConfig
from convscope.engine.ui.help import (
    HelpSection,
    Shortcuts,
    draw_note,
    gui_help,
    help_closed,
    help_toggled,
    screenshot_path,
    screenshot_wanted,
)
from convscope.engine.ui.input import InputCollector, InputState
from convscope.engine.ui.settings import (
    PRESENTATION_SCALE,
    UiPrefs,
    clamp_scale,
    load_prefs,
    presentation_toggled,
    save_prefs,
    scale_step,
)
from imgui_bundle import imgui


class FrameStats:
    """Frame times of the last few seconds, for the overlay and for benchmarks."""

    def __init__(self, keep: int = 600) -> None:
        self.times: deque[float] = deque(maxlen=keep)

    def add(self, seconds: float) -> None:
        self.times.append(seconds)

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.times), q)) * 1e3 if self.times else 0.0


def draw_frame_overlay(stats: FrameStats) -> None:
    """Frame time p50 / p99 and fps in the top-right corner, drawn over everything."""
    p50, p99 = stats.percentile(50), stats.percentile(99)
    text = f"{p50:5.1f} ms p50  {p99:5.1f} ms p99  {1000.0 / max(p50, 1e-3):5.0f} fps"
    size = imgui.calc_text_size(text)
    w = imgui.get_io().display_size.x
    dl = imgui.get_foreground_draw_list()
    x, y = w - size.x - 12, 8
    dl.add_rect_filled(
        (x - 6, y - 3), (x + size.x + 6, y + size.y + 3), imgui.get_color_u32((0, 0, 0, 0.55)), 4.0
    )
    dl.add_text((x, y), imgui.get_color_u32((1, 1, 1, 1)), text)


def _quit_chord(inp: InputState) -> bool:
    """Ctrl+Q closes the window (outputs asked for on the command line are written on the way out)."""
    # Read the modifiers from the key's own event: press and release can both land in one frame.
    return any(
        e.kind == "key" and e.code == glfw.KEY_Q and e.down and e.mods & glfw.MOD_CONTROL for e in inp.events
    )


class App:
    """Drives one scene.  Give it a `window` (engine.window.Window) or a headless `ctx` and `size`."""

    def __init__(
        self,
        scene: Scene,
        *,
        window=None,
        ctx=None,
        size: tuple[int, int] | None = None,
        ui_config: UiConfig | None = None,
        show_frame_time: bool = False,
        quit_chord: bool = True,  # Ctrl+Q closes the window; False where no key may close it (kiosk)
        shortcuts: bool | None = None,  # F1 / ? help and Ctrl+S / Print screenshots; None: as quit_chord
        remember_ui: bool | None = None,  # load / save the UI scale (settings.json); None: windowed runs
    ) -> None:
        if window is None and (ctx is None or size is None):
            raise ValueError("App needs a window, or a ctx and a size for headless runs")
        self.window = window
        self.ctx = window.ctx if window is not None else ctx
        self.scene = scene
        self.show_frame_time = show_frame_time
        self.quit_chord = quit_chord
        self.shortcuts_enabled = quit_chord if shortcuts is None else bool(shortcuts)
        self.shortcuts = Shortcuts()
        self.screenshot_root: Path | None = None  # where screenshots/ goes; None: Pictures, else cwd
        self.last_screenshot: Path | None = None
        self.stats = FrameStats()
        self.frames = 0
        self.ui = UiBackend(ui_config)
        # The config's scale (times the monitor's DPI hint) is the base the user's factor multiplies.
        self.base_scale = self.ui.ui_scale
        self.remember_ui = (
            (window is not None and self.shortcuts_enabled) if remember_ui is None else remember_ui
        )
        self.prefs = load_prefs() if self.remember_ui else UiPrefs()
        self._applied: tuple[float, bool] = (1.0, False)  # (prefs.ui_scale, presentation) in effect
        self._apply_prefs()
        self.imgui_renderer = ImGuiRenderer(self.ctx)
        self.offscreen: OffscreenTarget | None = None
        self._headless_input: InputCollector | None = None
        if window is None:
            self.offscreen = OffscreenTarget(self.ctx, size[0], size[1])
            self._headless_input = InputCollector(size, size)
        self._last = time.perf_counter()
        self._entered = False
        self.scene.on_enter(FrameContext(self.ctx, self.imgui_renderer, self))
        self._entered = True

    # -- one frame --------------------------------------------------------------------------------

    def poll(self) -> InputState:
        if self.window is not None:
            return self.window.poll()
        return self._headless_input.snapshot(time.perf_counter())

    @property
    def headless_input(self) -> InputCollector | None:
        """Headless runs: the event sink tests and scripted input feed (same calls a window makes)."""
        return self._headless_input

    def frame(self, inp: InputState | None = None) -> None:
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        inp = inp if inp is not None else self.poll()
        if inp.minimized:
            return
        if self.window is not None and self.quit_chord and _quit_chord(inp):
            self.window.request_close()
        viewport = inp.framebuffer_size
        self._apply_prefs()
        self.ui.new_frame(inp.window_size, inp.framebuffer_scale, dt, inp)
        shoot = self.shortcuts_enabled and self._app_keys(inp)
        self.scene.gui()
        if self.shortcuts_enabled:
            gui_help(self.shortcuts, self.help_sections(), self.ui.ui_scale)
            draw_note(self.shortcuts, self.ui.ui_scale)
        if self.show_frame_time:
            draw_frame_overlay(self.stats)
        self.scene.update(inp, dt, self.ui.want_capture_mouse, self.ui.want_capture_keyboard)
        self.scene.upload()
        target = self.offscreen if self.offscreen is not None else self.ctx.screen
        target.use()
        self.ctx.viewport = (0, 0, viewport[0], viewport[1])
        self.scene.draw(viewport)
        draw_data = self.ui.render()
        self.imgui_renderer.render(draw_data)
        if self.window is not None:
            self.window.swap()
        else:
            # What a swap does for a window: without it a software rasteriser queues frame after
            # frame and charges them all to whichever call next has to wait (a texture write, say).
            self.ctx.finish()
        self.stats.add(time.perf_counter() - now)
        self.frames += 1
        if shoot:
            self._screenshot()

    # -- app-wide keys -----------------------------------------------------------------------------

    def help_sections(self) -> list[HelpSection]:
        """The current scene's help (none for a scene without `help_sections`)."""
        sections = getattr(self.scene, "help_sections", None)
        return list(sections()) if callable(sections) else []

    @property
    def presentation(self) -> bool:
        """Presentation mode is on (the scenes fold their panels and fit the network to the room)."""
        return self.prefs.presentation

    @property
    def ui_scale(self) -> float:
        """The scale in effect: base x the user's factor (x PRESENTATION_SCALE in presentation mode)."""
        return self.ui.ui_scale

    def _apply_prefs(self) -> None:
        """Between frames: bring ImGui's style and the scene's scale to `prefs`; save a new scale."""
        p = self.prefs
        p.ui_scale = clamp_scale(p.ui_scale)
        wanted = (p.ui_scale, p.presentation)
        if wanted == self._applied:
            return
        scale_changed = wanted[0] != self._applied[0]
        self._applied = wanted
        scale = self.base_scale * p.ui_scale * (PRESENTATION_SCALE if p.presentation else 1.0)
        self.ui.set_ui_scale(scale)
        if hasattr(self.scene, "ui_scale"):
            self.scene.ui_scale = scale
        if scale_changed and self.remember_ui:
            try:
                save_prefs(p)
            except OSError as exc:
                self.shortcuts.show_note(f"UI scale not remembered: {exc}", error=True)

    def _app_keys(self, inp: InputState) -> bool:
        """F1 / ? / Esc for the help overlay, UI scale and presentation keys; True when a screenshot was
        asked for."""
        sc = self.shortcuts
        step = scale_step(inp)
        if step is not None:
            self.prefs.ui_scale = clamp_scale(self.prefs.ui_scale * step if step else 1.0)
        if presentation_toggled(inp):
            self.prefs.presentation = not self.prefs.presentation
        if help_toggled(inp, imgui.get_io().want_text_input):
            sc.help_open = not sc.help_open
        elif sc.help_open and help_closed(inp):
            sc.help_open = False
        return screenshot_wanted(inp)

    def _screenshot(self) -> None:
        path = screenshot_path(self.screenshot_root)
        try:
            self.save_screenshot(path)
        except OSError as exc:
            self.shortcuts.show_note(f"screenshot not saved: {exc}", error=True)
            return
        self.last_screenshot = path
        self.shortcuts.show_note(f"saved {path}")

    def run(self, frames: int | None = None) -> None:
        """Until the window closes (or `frames` frames have been drawn)."""
        while frames is None or self.frames < frames:
            if self.window is not None and self.window.should_close:
                break
            self.frame()

    def read_pixels(self) -> np.ndarray:
        """The last frame as (h, w, 3) uint8, top row first.  Windowed: the next frame is drawn again
        into an offscreen target of the window's size (reading the window's own buffer leaves a GL
        error on some drivers)."""
        if self.window is None:
            self.ctx.finish()
            return self.offscreen.read()
        w, h = self.window.framebuffer_size
        target = OffscreenTarget(self.ctx, w, h)
        try:
            inp = self.window.poll()
            viewport = inp.framebuffer_size
            self.ui.new_frame(inp.window_size, inp.framebuffer_scale, 1 / 60, inp)
            self.scene.gui()
            self.scene.update(inp, 1 / 60, self.ui.want_capture_mouse, self.ui.want_capture_keyboard)
            self.scene.upload()
            target.use()
            self.ctx.viewport = (0, 0, viewport[0], viewport[1])
            self.scene.draw(viewport)
            self.imgui_renderer.render(self.ui.render())
            self.ctx.finish()
            return target.read()
        finally:
            target.release()
            self.ctx.screen.use()

    def save_screenshot(self, path: Path) -> Path:
        """The last frame as a PNG at `path` (its folder made if missing), written whole or not at all."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_screenshot(self.read_pixels(), path)
        return path

    def close(self) -> None:
        """Scene first (it may hold textures the renderer shows), then ImGui, then the target."""
        if self._entered:
            self.scene.on_exit()
            self._entered = False
        self.imgui_renderer.release()
        self.ui.destroy()
        if self.offscreen is not None:
            self.offscreen.release()
            self.offscreen = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
