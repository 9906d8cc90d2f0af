"""SceneSwitch: one app, several scenes, a small "Scene: Explore | Train" selector at the bottom centre.

A Scene itself (engine/scene.py): it forwards every call to the active scene and, when the user picks
another one, ends the active scene (on_exit: its worker process, its GL resources) and builds and enters
the new one, so only one scene's worker runs at a time.  The switch happens at the start of a frame,
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
        self.ui_scale = ui_scale
        self._fc: FrameContext | None = None
        self.switches = 0

    def on_enter(self, fc: FrameContext) -> None:
        self._fc = fc
        self.scene.on_enter(fc)

    def on_exit(self) -> None:
        self.scene.on_exit()

    def gui(self) -> None:
        if self.wanted != self.name:
            self.scene.on_exit()
            self.scene = self.factories[self.wanted]()
            self.name = self.wanted
            self.scene.on_enter(self._fc)
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
        imgui.end()

    def help_sections(self) -> list[HelpSection]:
        """The active scene's help (F1 or ?) and the switch's own line."""
        own = getattr(self.scene, "help_sections", None)
        sections = list(own()) if callable(own) else []
        return [*sections, HelpSection("Scenes", (("Scene: Explore | Train", "switch between the scenes"),))]

    def update(self, inp: InputState, dt: float, ui_mouse: bool, ui_keyboard: bool) -> None:
        self.scene.update(inp, dt, ui_mouse, ui_keyboard)

    def upload(self) -> None:
        self.scene.upload()

    def draw(self, viewport: tuple[int, int]) -> None:
        self.scene.draw(viewport)
