"""The ImGui context: its lifetime, style, fonts and UI scale, and the per-frame begin / end calls.

The platform half of an ImGui backend, minus the window: display size, framebuffer scale, time
step and input arrive as arguments, so it runs the same under a GLFW window and headless (a test
passes a display size and an `InputState` it built itself, or none). The renderer half is
`engine.gpu.imgui_renderer.ImGuiRenderer`; this module makes no GL calls.

Per frame:

    ui.new_frame(state.window_size, state.framebuffer_scale, state.dt, state)
    gui_<panel>(panel_state) ...                # only edits state
    draw_data = ui.render()
    if not ui.want_capture_mouse: camera.update(state)
    ... draw the scene ...; ctx.screen.use(); renderer.render(draw_data)

No imgui.ini: panel layout is code, not leftovers from the last run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from convscope.engine.ui.input import InputState, forward_to_imgui
from imgui_bundle import imgui, implot

THEMES = ("dark", "light", "classic")


@dataclass
class UiConfig:
    ui_scale: float = 1.0  # multiplies fonts and every size / padding; Window.ui_scale_hint on HiDPI screens
    font_size: float = 15.0  # base font size in pixels at ui_scale 1
    font_path: str | None = None  # a .ttf / .otf file; None = ImGui's embedded scalable font
    theme: str = "dark"  # one of THEMES
    rounding: float = 4.0  # corner radius of windows, frames and grabs at ui_scale 1, in pixels


class UiBackend:
    """Owns one ImGui context. Create it before the renderer; `destroy()` it after `renderer.release()`."""

    def __init__(self, config: UiConfig | None = None) -> None:
        self.config = config if config is not None else UiConfig()
        if self.config.theme not in THEMES:
            raise ValueError(f"UiConfig.theme must be one of {THEMES}, got {self.config.theme!r}")
        self.context = imgui.create_context()
        imgui.set_current_context(self.context)
        # ImPlot (bar charts in the node details panel) keeps its own context beside ImGui's.
        self.plot_context = implot.create_context()
        io = imgui.get_io()
        io.set_ini_filename(None)
        # convscope's renderer serves ImGui 1.92's texture requests; setting the flag here, not only
        # in the renderer, lets a GL-free run (tests of panel logic) go through new_frame too.
        io.backend_flags |= imgui.BackendFlags_.renderer_has_textures
        self._load_font()
        self._frame_open = False
        self.set_ui_scale(self.config.ui_scale)

    def _load_font(self) -> None:
        fonts = imgui.get_io().fonts
        path = self.config.font_path
        if path is None:
            fonts.add_font_default_vector()
            return
        if not Path(path).is_file():
            raise FileNotFoundError(f"UiConfig.font_path: no font file at {path}")
        fonts.add_font_from_file_ttf(str(path), self.config.font_size)

    # -- style ---------------------------------------------------------------------------------

    @property
    def ui_scale(self) -> float:
        return self.config.ui_scale

    def set_ui_scale(self, scale: float) -> None:
        """Rebuild the style at `scale` from unscaled values (repeated scaling would drift)."""
        if not scale > 0:
            raise ValueError(f"ui scale must be positive, got {scale}")
        self.config.ui_scale = float(scale)
        style = imgui.Style()
        {
            "dark": imgui.style_colors_dark,
            "light": imgui.style_colors_light,
            "classic": imgui.style_colors_classic,
        }[self.config.theme](style)
        r = self.config.rounding
        style.window_rounding = style.child_rounding = style.popup_rounding = r
        style.frame_rounding = style.grab_rounding = style.tab_rounding = r
        style.scale_all_sizes(scale)
        style.font_size_base = self.config.font_size
        style.font_scale_dpi = scale
        self.context.style = style  # copies into the context

    # -- per frame -------------------------------------------------------------------------------

    def new_frame(
        self,
        display_size: tuple[float, float],
        framebuffer_scale: tuple[float, float] = (1.0, 1.0),
        dt: float = 1.0 / 60.0,
        input_state: InputState | None = None,
    ) -> None:
        """Start a frame: `display_size` in window coordinates, `framebuffer_scale` pixels per unit."""
        imgui.set_current_context(self.context)
        implot.set_current_context(self.plot_context)
        io = imgui.get_io()
        io.display_size = imgui.ImVec2(max(float(display_size[0]), 0.0), max(float(display_size[1]), 0.0))
        io.display_framebuffer_scale = imgui.ImVec2(float(framebuffer_scale[0]), float(framebuffer_scale[1]))
        io.delta_time = max(float(dt), 1e-4)  # ImGui asserts on dt <= 0
        if input_state is not None:
            forward_to_imgui(input_state, io)
        imgui.new_frame()
        self._frame_open = True

    def render(self) -> imgui.ImDrawData:
        """End the frame; the draw data stays valid until the next `new_frame`."""
        imgui.set_current_context(self.context)
        imgui.render()
        self._frame_open = False
        return imgui.get_draw_data()

    @property
    def display_width(self) -> float:
        """Width of the last frame's display in window coordinates (0 before the first frame)."""
        imgui.set_current_context(self.context)
        return float(imgui.get_io().display_size.x)

    @property
    def want_capture_mouse(self) -> bool:
        """True while the pointer is over (or dragging) a panel: the camera should ignore the mouse."""
        return bool(imgui.get_io().want_capture_mouse)

    @property
    def want_capture_keyboard(self) -> bool:
        """True while a text field or panel has keyboard focus: shortcuts should stay quiet."""
        return bool(imgui.get_io().want_capture_keyboard)

    # -- lifetime ------------------------------------------------------------------------------

    def destroy(self) -> None:
        if self.context is None:
            return
        imgui.set_current_context(self.context)
        if self._frame_open:
            imgui.end_frame()  # a frame abandoned by an exception
        implot.destroy_context(self.plot_context)  # before ImGui's, as ImPlot asks
        self.plot_context = None
        imgui.destroy_context(self.context)
        self.context = None
