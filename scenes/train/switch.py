"""SceneSwitch: one app, several scenes, a small "Scene: Explore | Train" selector at the bottom centre.

A Scene itself (engine/scene.py): it forwards every call to the active scene.  A scene is built and
entered the first time it is picked and then kept: switching away only stops drawing it, so training goes
on in its worker process (running or paused, as it was) while the explorer is shown, and coming back finds
the run where it is now, not restarted.  The hidden scene builds no panels, so none of its windows stays
behind.  Every scene entered is exited with the switch.  The switch happens at the start of a frame,
before any panel is built.  Used by scenes/train/run.py; the explorer's own entry point is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from convscope.engine.scene import FrameContext, Scene
from convscope.engine.ui.help import HelpSection
from convscope.engine.ui.input import InputState
from imgui_bundle import imgui


class SceneSwitch:
    def __init__(self, factories: dict[str, Callable[[], Scene]], first: str, ui_scale: float = 1.0) -> None:
        if first not in factories:
            raise ValueError(f"unknown scene {first!r}; known: {list(factories)}")
        self.factories = factories
        self.name = first
        self.wanted = first
        self.scene: Scene = factories[first]()
        self.scenes: dict[str, Scene] = {first: self.scene}  # every scene built so far, kept when hidden
        self._entered: set[str] = set()
        self._ui_scale = ui_scale
        self._fc: FrameContext | None = None
        self.switches = 0

    @property
    def ui_scale(self) -> float:
        return self._ui_scale

    @ui_scale.setter
    def ui_scale(self, scale: float) -> None:
        """The app's UI scale (Ctrl+= / Ctrl+-, presentation mode) reaches every scene, hidden ones too."""
        self._ui_scale = scale
        for scene in self.scenes.values():
            if hasattr(scene, "ui_scale"):
                scene.ui_scale = scale

    def on_enter(self, fc: FrameContext) -> None:
        self._fc = fc
        self.scene.on_enter(fc)
        self._entered.add(self.name)

    def on_exit(self) -> None:
        for name in list(self._entered):
            self.scenes[name].on_exit()
        self._entered.clear()

    def gui(self) -> None:
        if self.wanted != self.name:
            self.name = self.wanted
            if self.name not in self.scenes:
                self.scenes[self.name] = self.factories[self.name]()
                if hasattr(self.scenes[self.name], "ui_scale"):
                    self.scenes[self.name].ui_scale = self._ui_scale  # built at the scale of its time
            self.scene = self.scenes[self.name]
            if self.name not in self._entered:
                self.scene.on_enter(self._fc)
                self._entered.add(self.name)
            self.switches += 1
        self.scene.gui()
        self._selector()

    def _selector(self) -> None:
        s = self.ui_scale
        io = imgui.get_io()
        imgui.set_next_window_pos(
            imgui.ImVec2(io.display_size.x / 2, io.display_size.y - 8 * s), imgui.Cond_.always, (0.5, 1.0)
        )
        flags = (
            imgui.WindowFlags_.always_auto_resize
            | imgui.WindowFlags_.no_title_bar
            | imgui.WindowFlags_.no_move
            | imgui.WindowFlags_.no_saved_settings
        )
        imgui.begin("##scene_switch", None, flags)
        imgui.text("Scene:")
        for name in self.factories:
            imgui.same_line()
            if imgui.radio_button(name, self.wanted == name):
                self.wanted = name
        panels = getattr(self.scene, "panels", None)
        if hasattr(panels, "bottom_reserve"):  # the scene keeps its band and its network above this strip
            panels.bottom_reserve = imgui.get_window_size().y + 8 * s
        imgui.end()

    def help_sections(self) -> list[HelpSection]:
        """The active scene's help (F1 or ?) and the switch's own line."""
        own = getattr(self.scene, "help_sections", None)
        sections = list(own()) if callable(own) else []
        return [*sections, HelpSection("Scenes", (("Scene: Explore | Train", "switch between the scenes"),))]

    def update(self, inp: InputState, dt: float, ui_mouse: bool, ui_keyboard: bool) -> None:
        self.scene.update(inp, dt, ui_mouse, ui_keyboard)
        for scene in self.scenes.values():  # a scene left behind that goes on working (training) keeps up
            if scene is not self.scene and callable(getattr(scene, "background", None)):
                scene.background(dt)

    def upload(self) -> None:
        self.scene.upload()

    def draw(self, viewport: tuple[int, int]) -> None:
        self.scene.draw(viewport)
