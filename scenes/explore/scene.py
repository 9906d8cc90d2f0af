"""ExploreScene: draw a digit and watch every node of the network follow it (Harley 2015).

Owns the worker handle, the drawing pad, the camera and the GPU side of one network (a
SceneRenderer rebuilt whenever the worker announces a new spec).  Per frame: panels edit state;
`update` sends the drawing to the worker when it changed (at most once a frame, and once more at
stroke end), picks up the newest result, restarts a dead worker and moves the camera;
`upload` is the only place new data reaches the GPU.
"""

from __future__ import annotations

import math
import os
import time

import glfw
import numpy as np

from engine.camera import OrbitCamera
from engine.config import AppConfig
from engine.gpu.background import Background
from engine.gpu.imgui_renderer import UiTexture
from engine.gpu.scene_renderer import RenderSettings, SceneRenderer
from engine.graph.layout import build_layout
from engine.graph.spec import NetSpec
from engine.scene import FrameContext
from engine.ui.input import MOUSE_LEFT, MOUSE_RIGHT, InputState
from engine.worker import WorkerHandle
from scenes.explore.pad import PadState
from scenes.explore.panels import gui_draw_panel, gui_network_panel
from scenes.explore.preprocess import pad_to_input
from scenes.explore.state import ExploreState

INPUT_SIDE = 28


class ExploreScene:
    def __init__(self, config: AppConfig, drawing: np.ndarray | None = None, ui_scale: float = 1.0) -> None:
        self.config = config
        self.ui_scale = ui_scale
        self.state = ExploreState(model=config.model, colormap=config.colormap, normalize=config.normalize)
        self.state.show_frame_time = config.show_frame_time
        self.pad = PadState(size=config.pad_size, radius=config.brush)
        if drawing is not None:
            self.pad.set_image(drawing)
        self.camera = OrbitCamera()
        self.worker = WorkerHandle(config.model, weights=config.weights or None)
        self.spec: NetSpec | None = None
        self.activations: np.ndarray | None = None  # newest result, exactly as received
        self.result_seq = 0  # seq of the newest result shown
        self.sent_seq = 0  # seq of the newest drawing sent
        self._spec_version = 0
        self._fit_pending = False
        self._gui_frames = 0
        self._new_result = False
        self._renderer: SceneRenderer | None = None
        self._layout = None
        self.ctx = None
        self.started_at = time.perf_counter()
        self.first_frame_s: float | None = None
        self.first_result_s: float | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def on_enter(self, fc: FrameContext) -> None:
        self.ctx = fc.ctx
        self.app = fc.app
        self._background = Background(self.ctx)
        self._pad_texture = UiTexture(self.ctx, (self.pad.size, self.pad.size), 1)
        self._seen_texture = UiTexture(self.ctx, (INPUT_SIDE, INPUT_SIDE), 1, smooth=False)
        self.pad.texture_ref = self._pad_texture.ref
        self.worker.launch()
        self.pad.dirty = True  # send the starting drawing (blank or --input) as soon as the model is up

    def on_exit(self) -> None:
        self.worker.close()
        if self._renderer is not None:
            self._renderer.release()
            self._renderer = None
        self._background.release()
        self._pad_texture.release()
        self._seen_texture.release()

    # -- per frame --------------------------------------------------------------------------------

    def gui(self) -> None:
        s = self.ui_scale
        bottom = gui_draw_panel(self.state, self.pad, self._seen_texture.ref, self.pad.size * s, s)
        gui_network_panel(self.state, s, bottom + 8 * s, settle=self._gui_frames < 3)
        self._gui_frames += 1
        self.app.show_frame_time = self.state.show_frame_time

    def update(self, inp: InputState, dt: float, ui_mouse: bool, ui_keyboard: bool) -> None:
        self._watch_worker()
        changed, ended = self.pad.consume()
        if changed or ended:
            image = pad_to_input(self.pad.canvas)
            self.state.network_input = image
            self.sent_seq = self.worker.submit(image)
        self._take_result()
        if self.state.layers_changed and self.spec is not None:
            self.state.layers_changed = False
            self._relayout()
        self._steer_camera(inp, ui_mouse, ui_keyboard)

    def upload(self) -> None:
        self._pad_texture.sync(self.pad.canvas, self.pad.version)
        if self.state.network_input is not None:
            self._seen_texture.sync(self.state.network_input, self.sent_seq)
        if self._new_result and self._renderer is not None:
            self._new_result = False
            self._renderer.set_activations(self.display_values())

    def draw(self, viewport: tuple[int, int]) -> None:
        if self._fit_pending and self._layout is not None:
            self._fit_pending = False
            self._fit(viewport)
        if self._renderer is None:
            self.ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
            self._background.draw(viewport)
        else:
            self._renderer.draw(self.camera, viewport, self.render_settings())
        if self.first_frame_s is None:
            self.first_frame_s = time.perf_counter() - self.started_at
            _startup_log("first_frame")

    # -- helpers -----------------------------------------------------------------------------------

    def _fit(self, viewport: tuple[int, int]) -> None:
        """Fit the network into the part of the view right of the drawing panel, when there is room."""
        w, h = viewport
        scale = w / max(self.app.ui.display_width, 1.0)  # framebuffer pixels per window unit
        panel = (self.pad.size + 160) * self.ui_scale * scale
        free = w - panel if w - panel > 0.45 * w else w
        self.camera.fit(*self._layout.bounds, free / max(h, 1), margin=0.08)
        self.camera.pan((w - free) / 2, 0.0, h)

    def render_settings(self) -> RenderSettings:
        return RenderSettings(
            colormap=self.state.colormap,
            normalize=self.state.normalize,
            visible=tuple(self.state.layer_visible) if self.state.layer_visible else None,
        )

    def display_values(self) -> np.ndarray:
        """What the nodes show: the activations, except that output nodes show class probabilities
        (the network's confidence, as in the paper) rather than raw logits."""
        values = self.activations.copy()
        out = self.spec.layers[-1]
        if out.kind == "output" and self.state.probabilities is not None:
            values[out.start : out.stop] = self.state.probabilities
        return values

    @property
    def ready(self) -> bool:
        """The newest drawing sent has come back through the network."""
        return self.spec is not None and self.activations is not None and self.result_seq >= self.sent_seq

    def _watch_worker(self) -> None:
        if self.worker.check():
            self.state.worker_restarts = self.worker.restarts
            self.state.error = "The network process stopped; it was restarted."
        if self.state.model != self.worker.model:
            self.worker.switch_model(self.state.model)
            self.state.status = f"loading {self.state.model}..."
            self.state.probabilities = None
        if self.worker.error and self.worker.spec is None:
            self.state.error = self.worker.error
            self.state.status = "no network loaded"

    def _take_result(self) -> None:
        result = self.worker.poll()
        if self.worker.spec_version != self._spec_version and self.worker.spec is not None:
            self._spec_version = self.worker.spec_version
            self._on_new_spec(self.worker.spec)
        if result is None or result.spec_version != self._spec_version:
            return
        self.activations = result.activations
        self.state.probabilities = result.probabilities
        if self.first_result_s is not None and math.isfinite(result.latency_s):  # the first one waited for start-up
            self.state.latency_ms = result.latency_s * 1e3
        self.result_seq = result.seq
        self._new_result = True
        if self.worker.restarts == 0 or self.worker.alive:
            if self.state.error and self.state.error.startswith("The network process"):
                self.state.error = None
        if self.first_result_s is None:
            self.first_result_s = time.perf_counter() - self.started_at
            _startup_log("first_activations")

    def _on_new_spec(self, spec: NetSpec) -> None:
        keep = self.state.layer_visible if self.spec is not None and self.spec.model == spec.model else None
        self.spec = spec
        self.activations = None
        self.state.layer_names = [x.name for x in spec.layers]
        self.state.layer_visible = keep if keep and len(keep) == len(spec.layers) else [True] * len(spec.layers)
        self.state.classes = spec.classes
        self.state.status = f"{spec.model}: {spec.total_nodes:,} nodes in {len(spec.layers)} layers"
        self.state.error = None
        self._layout = build_layout(spec, visible=self.state.layer_visible)
        if self._renderer is not None:
            self._renderer.release()
        self._renderer = SceneRenderer(self.ctx, self._layout)
        self._fit_pending = True
        self.pad.dirty = True  # a new network has not seen the drawing yet

    def _relayout(self) -> None:
        self._layout = build_layout(self.spec, visible=self.state.layer_visible)
        self._renderer.set_layout(self._layout)
        self._fit_pending = True

    def _steer_camera(self, inp: InputState, ui_mouse: bool, ui_keyboard: bool) -> None:
        w, h = inp.framebuffer_size
        if self.state.reset_camera or (not ui_keyboard and inp.key_pressed(glfw.KEY_F)):
            self.state.reset_camera = False
            self._fit_pending = True
        if ui_mouse or w <= 0 or h <= 0:
            return
        sx, sy = inp.framebuffer_scale
        dx, dy = inp.mouse_delta[0] * sx, inp.mouse_delta[1] * sy
        if inp.is_down(MOUSE_LEFT) and not inp.was_pressed(MOUSE_LEFT):
            self.camera.orbit(dx, dy)
        elif inp.is_down(MOUSE_RIGHT) and not inp.was_pressed(MOUSE_RIGHT):
            self.camera.pan(dx, dy, h)
        if inp.scroll[1]:
            mx, my = inp.mouse_pos_fb
            ndc = (2.0 * mx / w - 1.0, 1.0 - 2.0 * my / h)
            self.camera.zoom(inp.scroll[1], ndc, w / h)


def _startup_log(event: str) -> None:
    """Benchmarks set CONVSCOPE_STARTUP_LOG to learn when the first frame / result appeared."""
    path = os.environ.get("CONVSCOPE_STARTUP_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{event} {time.time():.6f}\n")
