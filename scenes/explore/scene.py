"""ExploreScene: draw a digit and watch every node of the network follow it (Harley 2015).

Owns the worker handle, the drawing pad, the camera and the GPU side of one network (a
SceneRenderer and an EdgeBatch rebuilt whenever the worker announces a new spec).  Per frame:
panels edit state; `update` sends the drawing to the worker when it changed (at most once a
frame, and once more at stroke end), picks up the newest result and the model's weights,
restarts a dead worker, moves the camera and picks the node under the pointer; `upload` is the
only place new data reaches the GPU (activations, the hovered node's edges, the details images).

The Embedding window (scenes/explore/embedding.py and scenes/embedding_view.py) places a
conv layer's filters for the drawing, or many images, with t-SNE: its view runs while the window is
open (the t-SNE process starts when it first opens), its selection is linked with the 3D one, and the
selected filter's feature map is outlined in 3D meanwhile.

Pointer: a left drag (beyond CLICK_SLOP window units) orbits, a right drag pans, the wheel zooms;
a left click that did not move picks: a node selects it (details panel), empty space clears the
selection.  While the pointer is over the scene and not over a panel, the node under it is hovered:
highlighted, with its incoming edges drawn.  Picking is a CPU ray cast (engine/graph/picking.py).
"""

from __future__ import annotations

import math
import os
import time

import glfw
import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.config import AppConfig
from convscope.engine.gpu import colormaps
from convscope.engine.gpu.background import Background
from convscope.engine.gpu.edges import EdgeBatch
from convscope.engine.gpu.imgui_renderer import UiTexture
from convscope.engine.gpu.normalize import layer_ranges
from convscope.engine.gpu.paths import PathBatch
from convscope.engine.gpu.scene_renderer import RenderSettings, SceneRenderer
from convscope.engine.graph.edges import edge_scale, edge_values, incoming
from convscope.engine.graph.explain import Explanation, explain
from convscope.engine.graph.layout import build_layout
from convscope.engine.graph.picking import Picker
from convscope.engine.graph.spec import NetSpec
from convscope.engine.scene import FrameContext
from convscope.engine.ui.embed_panel import SELECTED_RGB
from convscope.engine.ui.input import MOUSE_LEFT, MOUSE_RIGHT, InputState
from convscope.engine.worker import WorkerHandle
from convscope.scenes.explore import robustness
from convscope.scenes.explore.compare import CompareView
from convscope.scenes.explore.embedding import explore_embed_view
from convscope.scenes.explore.morph import MorphState, load_idx_digits
from convscope.scenes.explore.pad import PadState
from convscope.scenes.explore.panels import (
    gui_details_panel,
    gui_draw_panel,
    gui_embedding_panel,
    gui_experiments_panel,
    gui_network_panel,
)
from convscope.scenes.explore.robustness import RobustnessState
from convscope.scenes.explore.state import ExploreState, Legend

INPUT_SIDE = 28
CLICK_SLOP = 4.0  # window units a press may move and still be a click (a pick), not a drag (orbit)
DETAIL_IMAGES = ("patch", "filter", "product")  # conv node details: three strips of k x k tiles
OUTLINE_RGBA = (
    *SELECTED_RGB,
    1.0,
)  # the selected filter's map: the colour of its ring in the Embedding window


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
        self.weights: dict | None = None  # the model's parameters, for self.spec (from the worker)
        self._weights_version = 0
        self._result_version = 0  # bumped per new result shown
        self._node_ranges: dict[str, np.ndarray] | None = None  # per normalisation mode, (L, 2)
        self._picker: Picker | None = None
        self._edges: EdgeBatch | None = None
        self._edge_key: tuple | None = None  # what the edges on the GPU show
        self._scale_cache: dict[tuple, float] = {}
        self._hover_key: tuple | None = None  # pointer + camera + layout of the last hover pick
        self._details_key: tuple | None = None
        self._press: dict[int, tuple[float, float]] = {}  # button -> where it went down (in the scene)
        self._dragging: set[int] = set()  # buttons whose press became a drag
        self.picks = 0  # hover / click picks made (tests, benchmarks)
        self._detail_textures: dict[str, UiTexture] = {}
        self._detail_images: dict[str, np.ndarray] = {}  # built in update, uploaded in upload
        self._detail_version = 0
        self.robust = RobustnessState()  # shift / rotate / MNIST-style centring experiments
        self.morph = MorphState()  # slide between two drawings
        if config.data_dir:
            try:
                self.morph.test_images, self.morph.test_labels = load_idx_digits(config.data_dir)
            except (FileNotFoundError, ValueError) as exc:
                self.state.error = f"morph: no MNIST test digits ({exc})"
        self.compare: CompareView | None = None  # LeNet and MLP side by side, when on
        self.embedding = explore_embed_view(self)  # the Embedding window's view (entered when first opened)
        self._outline: PathBatch | None = (
            None  # the selected filter's map, while the Embedding window is open
        )
        self._outline_key: tuple | None = None
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
        self._outline = PathBatch(self.ctx)
        self.worker.launch()
        self.pad.dirty = True  # send the starting drawing (blank or --input) as soon as the model is up

    def on_exit(self) -> None:
        if self.compare is not None:
            self.compare.release()
            self.compare = None
        self.embedding.on_exit()  # first: its t-SNE job may hold the images job's vectors
        self._outline.release()
        self.worker.close()
        self._release_network()
        for tex in self._detail_textures.values():
            tex.release()
        self._detail_textures = {}
        self._background.release()
        self._pad_texture.release()
        self._seen_texture.release()

    # -- per frame --------------------------------------------------------------------------------

    def gui(self) -> None:
        s = self.ui_scale
        bottom = gui_draw_panel(self.state, self.pad, self._seen_texture.ref, self.pad.size * s, s)
        gui_network_panel(self.state, s, bottom + 8 * s, settle=self._gui_frames < 3)
        images = {
            k: t.ref for k, t in self._detail_textures.items() if self._detail_images.get(k) is not None
        }
        gui_details_panel(self.state, images, s)
        gui_experiments_panel(self.state, self.robust, self.morph, s)
        gui_embedding_panel(self.state, self.embedding.textures(), s, self._left_column() + 10 * s)
        if self.compare is not None:
            self.compare.gui(self.state.probabilities, self.state.model)
        self._gui_frames += 1
        self.app.show_frame_time = self.state.show_frame_time

    def update(self, inp: InputState, dt: float, ui_mouse: bool, ui_keyboard: bool) -> None:
        self._watch_worker()
        self._toggle_compare()
        canvas, resend = robustness.consume(self.robust, self.pad.canvas)
        if canvas is not None:
            self.pad.set_image(canvas)
        elif resend:
            self.pad.dirty = True
        changed, ended = self.pad.consume()
        image = None
        if changed or ended:
            self.morph.stop()  # drawing again hands the input back to the pad
            image = robustness.network_input(self.pad.canvas, self.robust.mnist_centering)
        if self.morph.active and self.morph.take_input_changed():
            image = self.morph.image()
        if image is not None:
            self.state.network_input = image
            self.sent_seq = self.worker.submit(image)
            if self.compare is not None:
                self.compare.submit(image)
        self._run_morph_curve()
        self._take_result()
        if self.compare is not None:
            self.compare.update()
        if self.state.layers_changed and self.spec is not None:
            self.state.layers_changed = False
            self._relayout()
        if self.compare is not None:
            self.compare.steer(inp, ui_mouse, self.camera)
        else:
            self._steer_camera(inp, ui_mouse, ui_keyboard)
            self._hover(inp, ui_mouse)
        if self.state.show_embedding:
            if not self.embedding.entered:
                self.embedding.on_enter(self.ctx)
            self.embedding.update(self.worker)
        self._update_details()
        self._update_legend()

    def upload(self) -> None:
        self._pad_texture.sync(self.pad.canvas, self.pad.version)
        if self.state.network_input is not None:
            self._seen_texture.sync(self.state.network_input, self.sent_seq)
        if self._new_result and self._renderer is not None:
            self._new_result = False
            if self.input_blank:  # an empty pad: every node rests at the "no input" grey
                nan = np.full(self.spec.total_nodes, np.nan, np.float32)
                self._renderer.set_activations(
                    nan, np.tile(np.float32([0.0, 1.0]), (len(self.spec.layers), 1))
                )
            else:
                self._renderer.set_activations(self.display_values())
        self._upload_edges()
        self._upload_detail_images()
        self.embedding.upload()
        self._upload_outline()
        if self.compare is not None:
            self.compare.upload()

    def draw(self, viewport: tuple[int, int]) -> None:
        if self._fit_pending and self._layout is not None:
            self._fit_pending = False
            self._fit(viewport)
        if self.compare is not None:
            self.compare.draw(
                viewport, self.render_settings(), primary=self._primary(), region=self._free_region(viewport)
            )
        elif self._renderer is None:
            self.ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
            self._background.draw(viewport)
        else:
            self._renderer.draw(self.camera, viewport, self.render_settings())
            if self._edges is not None and self._edges.count and self.state.show_edges:
                w, h = viewport
                scale = w / max(self.app.ui.display_width, 1.0)  # framebuffer pixels per window unit
                self._edges.draw(
                    self.camera.view_matrix(),
                    self.camera.projection(w / max(h, 1)),
                    viewport,
                    self.state.colormap,
                    width_scale=self.ui_scale * scale,
                )
            if self._outline.count:
                w, h = viewport
                self._outline.draw(
                    self.camera.view_matrix(),
                    self.camera.projection(w / max(h, 1)),
                    viewport,
                    depth_test=False,
                )
        if self.first_frame_s is None:
            self.first_frame_s = time.perf_counter() - self.started_at
            _startup_log("first_frame")

    # -- helpers -----------------------------------------------------------------------------------

    def _primary(self) -> tuple[SceneRenderer, OrbitCamera] | None:
        return (self._renderer, self.camera) if self._renderer is not None else None

    def _left_column(self) -> float:
        """Window units taken by the drawing and network panels on the left."""
        return (self.pad.size + 160) * self.ui_scale

    def _free_region(self, viewport: tuple[int, int]) -> tuple[int, int, int, int]:
        """The part of the framebuffer right of the drawing panel (all of it on narrow screens)."""
        w, h = viewport
        scale = w / max(self.app.ui.display_width, 1.0)
        panel = int((self.pad.size + 160) * self.ui_scale * scale)
        return (panel, 0, w - panel, h) if w - panel > 0.45 * w else (0, 0, w, h)

    def _toggle_compare(self) -> None:
        other = "mlp" if self.state.model == "lenet" else "lenet"
        if self.state.compare and self.compare is None:
            self.compare = CompareView(self.ctx, other, weights=self.config.weights or None)
            self.state.selected = -1  # details and hover belong to the single view
        elif not self.state.compare and self.compare is not None:
            self.compare.release()
            self.compare = None
            self._fit_pending = True
        elif self.compare is not None and self.compare.model != other:
            self.compare.set_model(other)
        if self.compare is not None and self.state.network_input is not None and self.compare.sent_seq == 0:
            self.compare.submit(self.state.network_input)
        if self.compare is not None and self.state.reset_camera:
            self.state.reset_camera = False
            self.compare.refit()

    def _run_morph_curve(self) -> None:
        """Once per new A / B: the 21 blends through the network, for the probability curve."""
        if not self.worker.ready:
            return
        blends = self.morph.requests()
        if len(blends):
            self.morph.take([self.worker.infer_sync(b).probabilities for b in blends])
            if self.state.network_input is not None:  # infer_sync used up the live result
                self.sent_seq = self.worker.submit(self.state.network_input)

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
            highlight=self.focus_node,
            visible=self._visible(),
        )

    def _visible(self) -> tuple[bool, ...] | None:
        return tuple(self.state.layer_visible) if self.state.layer_visible else None

    @property
    def focus_node(self) -> int:
        """The node whose edges are drawn and which is outlined: the hovered one, else the selected one."""
        return self.state.hovered if self.state.hovered >= 0 else self.state.selected

    def display_values(self) -> np.ndarray:
        """What the nodes show: the activations, except that output nodes show class probabilities
        (the network's confidence, as in the paper) rather than raw logits."""
        values = self.activations.copy()
        out = self.spec.layers[-1]
        if out.kind == "output" and self.state.probabilities is not None:
            values[out.start : out.stop] = self.state.probabilities
        return values

    @property
    def input_blank(self) -> bool:
        """The network's input is empty (a blank or cleared pad): there is no reading to show."""
        x = self.state.network_input
        return x is None or not np.any(x)

    @property
    def ready(self) -> bool:
        """The newest drawing sent has come back through the network."""
        return self.spec is not None and self.activations is not None and self.result_seq >= self.sent_seq

    def _watch_worker(self) -> None:
        if self.worker.check():
            self.state.worker_restarts = self.worker.restarts
            self.state.error = "The network process stopped; it was restarted."
            self.embedding.on_worker_restart()
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
        if (
            self.worker.weights_version != self._weights_version
            and self.worker.spec_version == self._spec_version
        ):
            # Weights arrive once per model, a moment after its spec; they describe worker.spec,
            # which is ours now.
            self._weights_version = self.worker.weights_version
            self.weights = self.worker.weights
            self._scale_cache.clear()
        if result is None or result.spec_version != self._spec_version:
            return
        self.activations = result.activations
        self.state.probabilities = result.probabilities
        self._result_version += 1
        self._scale_cache.clear()
        self._node_ranges = {
            m: layer_ranges(self.spec, self.display_values(), m) for m in ("layer", "global")
        }
        if self.first_result_s is not None and math.isfinite(
            result.latency_s
        ):  # the first one waited for start-up
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
        reason = "start" if self.spec is None else "model"
        self.spec = spec
        self.activations = None
        self._node_ranges = None
        self.weights = self.worker.weights  # None until they arrive (weights_version bumps then)
        self._weights_version = self.worker.weights_version
        self._scale_cache.clear()
        # Node ids of the old network mean nothing in the new one.
        self.state.hovered = self.state.selected = -1
        self.state.details = None
        self._hover_key = self._edge_key = self._details_key = None
        self.state.layer_names = [x.name for x in spec.layers]
        self.state.layer_visible = (
            keep if keep and len(keep) == len(spec.layers) else [True] * len(spec.layers)
        )
        self.state.classes = spec.classes
        self.state.status = f"{spec.model}: {spec.total_nodes:,} nodes in {len(spec.layers)} layers"
        self.state.error = None
        self._layout = build_layout(spec, visible=self.state.layer_visible)
        self._release_network()
        self._renderer = SceneRenderer(self.ctx, self._layout)
        self._picker = Picker(self._layout, self._renderer.nodes.style)
        self._edges = EdgeBatch(self.ctx)
        self._fit_pending = True
        self.pad.dirty = True  # a new network has not seen the drawing yet
        self._outline_key = None
        self.embedding.on_spec(spec, reason)

    def _release_network(self) -> None:
        if self._renderer is not None:
            self._renderer.release()
            self._renderer = None
        if self._edges is not None:
            self._edges.release()
            self._edges = None
        self._picker = None

    def _relayout(self) -> None:
        self._layout = build_layout(self.spec, visible=self.state.layer_visible)
        self._renderer.set_layout(self._layout)
        self._picker.set_layout(self._layout)
        self._hover_key = self._edge_key = self._outline_key = None
        self._fit_pending = True

    def _steer_camera(self, inp: InputState, ui_mouse: bool, ui_keyboard: bool) -> None:
        w, h = inp.framebuffer_size
        if self.state.reset_camera or (not ui_keyboard and inp.key_pressed(glfw.KEY_F)):
            self.state.reset_camera = False
            self._fit_pending = True
        if w <= 0 or h <= 0:
            return
        sx, sy = inp.framebuffer_scale
        for button in (MOUSE_LEFT, MOUSE_RIGHT):
            if inp.was_pressed(button):
                self._dragging.discard(button)
                if ui_mouse:
                    self._press.pop(button, None)  # a press on a panel belongs to the panel
                else:
                    self._press[button] = inp.drag_origin.get(button, inp.mouse_pos)
            if button not in self._press:
                continue
            if inp.is_down(button):
                if button not in self._dragging:
                    ox, oy = self._press[button]
                    dx, dy = inp.mouse_pos[0] - ox, inp.mouse_pos[1] - oy
                    if math.hypot(dx, dy) <= CLICK_SLOP:
                        continue  # still a click, maybe: the camera stays put
                    self._dragging.add(button)  # now a drag: catch up with the whole way moved
                else:
                    dx, dy = inp.mouse_delta
                if button == MOUSE_LEFT:
                    self.camera.orbit(dx * sx, dy * sy)
                else:
                    self.camera.pan(dx * sx, dy * sy, h)
            else:  # released (possibly in the frame it went down)
                if button == MOUSE_LEFT and button not in self._dragging:
                    self._click(inp)
                self._press.pop(button, None)
                self._dragging.discard(button)
        if inp.scroll[1] and not ui_mouse:
            mx, my = inp.mouse_pos_fb
            ndc = (2.0 * mx / w - 1.0, 1.0 - 2.0 * my / h)
            self.camera.zoom(inp.scroll[1], ndc, w / h)

    # -- picking, edges, details -------------------------------------------------------------------

    def pick(self, x: float, y: float, viewport: tuple[int, int]) -> int:
        """The node drawn at framebuffer position (x, y) this frame, or -1."""
        if self._picker is None:
            return -1
        self.picks += 1
        return self._picker.pick(self.camera, x, y, viewport, self._visible(), self.focus_node)

    def _click(self, inp: InputState) -> None:
        """A click that did not move: select the node under it, or clear the selection on empty space."""
        node = self.pick(*inp.mouse_pos_fb, inp.framebuffer_size)
        self.state.selected = node
        self._details_key = None

    def _hover(self, inp: InputState, ui_mouse: bool) -> None:
        """Pick the node under the pointer when the pointer, the camera or the layout moved."""
        if ui_mouse or not inp.cursor_inside or self._picker is None:
            self.state.hovered = -1
            self._hover_key = None
            return
        if self._dragging:
            return  # orbiting / panning: the hovered node stays until the drag ends
        c = self.camera
        key = (
            inp.mouse_pos_fb,
            inp.framebuffer_size,
            (*c.target, c.yaw, c.pitch, c.distance),
            id(self._layout),
            self._visible(),
            self.focus_node,  # the highlighted node's outline ring is part of what is drawn
        )
        if key == self._hover_key:
            return
        self._hover_key = key
        self.state.hovered = self.pick(*inp.mouse_pos_fb, inp.framebuffer_size)

    def _edge_scale(self, layer) -> float:
        """[-m, m] of the edges into `layer`, cached until the result, weights or settings change."""
        s = self.state
        key = (layer.name, s.edge_mode, s.normalize)
        if key not in self._scale_cache:
            self._scale_cache[key] = edge_scale(
                self.spec, layer, self.weights, self.activations, s.edge_mode, s.normalize
            )
        return self._scale_cache[key]

    def _upload_edges(self) -> None:
        """Regenerate the focus node's edges only when the node, the numbers or the settings changed."""
        if self._edges is None:
            return
        s = self.state
        node = self.focus_node if s.show_edges else -1
        key = (node, self._result_version, self._weights_version, s.edge_mode, s.normalize, id(self._layout))
        if key == self._edge_key:
            return
        self._edge_key = key
        if node < 0 or self.spec is None or node >= self.spec.total_nodes:
            self._edges.clear()
            return
        edges = incoming(self.spec, node)
        visible = s.layer_visible
        if edges.count == 0 or (visible and not visible[self.spec.index(edges.source_layer.name)]):
            self._edges.clear()  # input node, or its inputs are hidden (their nodes are not drawn)
            return
        values = edge_values(edges, self.weights, self.activations, s.edge_mode)
        pos = self._layout.positions
        self._edges.set_edges(pos[edges.sources], values, pos[node], self._edge_scale(edges.layer))

    def _update_details(self) -> None:
        """The selected node's calculation, redone when the selection or the numbers change."""
        s = self.state
        key = (s.selected, self._result_version, self._weights_version, s.colormap, s.normalize)
        if key == self._details_key:
            return
        self._details_key = key
        s.details, s.details_note = None, None
        self._detail_images = {}
        self._detail_version += 1
        if s.selected < 0 or self.spec is None or s.selected >= self.spec.total_nodes:
            return
        if self.activations is None:
            s.details_note = "waiting for the network..."
            return
        try:
            e = explain(self.spec, s.selected, self.activations, self.weights)
        except ValueError:
            s.details_note = (
                "waiting for the model's weights..." if self.weights is None else "no weights for this layer"
            )
            return
        s.details = e
        if e.patch is not None:
            self._detail_images = self._conv_images(e)

    def _conv_images(self, e: Explanation) -> dict[str, np.ndarray]:
        """The input patch (coloured like its nodes), the filter and their product (over [-m, m]), as
        RGB strips of one k x k tile per input channel, 1 px apart."""
        cmap = self.state.colormap
        below = self.spec.layers[self.spec.index(e.layer.name) - 1]
        lo, hi = self._node_range(below.name)
        out = {}
        for name, block, rng in (
            ("patch", e.patch, (lo, hi)),
            ("filter", e.filter, None),
            ("product", e.product, None),
        ):
            if rng is None:
                m = float(np.abs(block).max()) or 1.0
                rng = (-m, m)
            t = (block.astype(np.float64) - rng[0]) / max(rng[1] - rng[0], 1e-20)
            rgb = colormaps.sample(cmap, t)  # (C, k, k, 3)
            c, k, _ = block.shape
            strip = np.zeros((k, c * (k + 1) - 1, 3), np.float32)
            for ch in range(c):
                strip[:, ch * (k + 1) : ch * (k + 1) + k] = rgb[ch]
            out[name] = strip
        return out

    def _upload_detail_images(self) -> None:
        for name in DETAIL_IMAGES:
            img = self._detail_images.get(name)
            if img is None:
                continue
            h, w = img.shape[:2]
            tex = self._detail_textures.get(name)
            if tex is None or tex.size != (w, h):
                if tex is not None:
                    tex.release()
                tex = self._detail_textures[name] = UiTexture(self.ctx, (w, h), 3, smooth=False)
            tex.sync(img, self._detail_version)

    def _upload_outline(self) -> None:
        """Outline the selected node's feature map while the Embedding window is open: the filter its
        point stands for."""
        s = self.state
        show = (
            s.show_embedding and self.compare is None and self.spec is not None and self._layout is not None
        )
        key = (show, s.selected, id(self._layout), self.ui_scale)
        if key == self._outline_key or self._outline is None:
            return
        self._outline_key = key
        node = s.selected
        if not show or not 0 <= node < self.spec.total_nodes:
            self._outline.clear()
            return
        layer = self.spec.layer_of(node)
        visible = s.layer_visible
        if (
            not layer.is_grid
            or layer.kind == "input"
            or (visible and not visible[self.spec.index(layer.name)])
        ):
            self._outline.clear()
            return
        _, h, w = layer.shape
        base = layer.start + (node - layer.start) // (h * w) * (h * w)
        pos = self._layout.positions[base : base + h * w]
        half = self._layout.sizes[base : base + h * w, None] / 2
        (x0, y, z0), (x1, _, z1) = (pos - half).min(0), (pos + half).max(0)
        y = float(pos[:, 1].max()) + 0.3  # just above the plane, so the nodes never hide it
        corners = np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]], np.float32)
        self._outline.set_segments(corners, np.roll(corners, -1, axis=0), 2.5 * self.ui_scale, OUTLINE_RGBA)

    def _node_range(self, layer_name: str) -> tuple[float, float]:
        if self._node_ranges is None:
            return (0.0, 1.0)
        lo, hi = self._node_ranges[self.state.normalize][self.spec.index(layer_name)]
        return float(lo), float(hi)

    def _update_legend(self) -> None:
        """The numbers at the ends of the colour legend, for the focus node's layer."""
        node = self.focus_node
        if self.spec is None or node < 0 or node >= self.spec.total_nodes:
            self.state.legend = Legend()
            return
        layer = self.spec.layer_of(node)
        lo, hi = self._node_range(layer.name)
        m = self._edge_scale(layer) if layer.kind != "input" and self.state.show_edges else None
        self.state.legend = Legend(layer.name, lo, hi, m)


def _startup_log(event: str) -> None:
    """Benchmarks set CONVSCOPE_STARTUP_LOG to learn when the first frame / result appeared."""
    path = os.environ.get("CONVSCOPE_STARTUP_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{event} {time.time():.6f}\n")
