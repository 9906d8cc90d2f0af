"""The Scene lifecycle the app drives, and what a scene gets from the app when it starts.

Per frame, in this order (engine/app.py):
    gui()                                      build panels; edits scene state only, no GL, no IPC
    update(inp, dt, ui_mouse, ui_keyboard)     turn state changes into work: worker commands, camera
    upload()                                   the one place new data goes to the GPU
    draw(viewport)                             into the bound framebuffer
A scene creates its GL resources in `on_enter` and releases them in `on_exit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from convscope.engine.ui.input import InputState


@dataclass
class FrameContext:
    ctx: Any  # moderngl.Context
    imgui_renderer: Any  # engine.gpu.imgui_renderer.ImGuiRenderer (for panels that show textures)
    app: Any  # engine.app.App


class Scene(Protocol):
    def on_enter(self, fc: FrameContext) -> None: ...

    def gui(self) -> None: ...

    def update(self, inp: InputState, dt: float, ui_mouse: bool, ui_keyboard: bool) -> None: ...

    def upload(self) -> None: ...

    def draw(self, viewport: tuple[int, int]) -> None: ...

    def on_exit(self) -> None: ...
