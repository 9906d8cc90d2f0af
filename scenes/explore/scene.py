"""ExploreScene: draw a digit and watch every node of the network follow it (Harley 2015).

Owns the worker handle, the drawing pad, the camera (steered by engine/orbit.py) and the GPU side of
one network (engine/view.py: renderer, edges, outline and picker; rebuilt per new spec).  Per frame:
panels edit state; `update` sends the drawing to the worker when it changed (at most once a
frame, and once more at stroke end), picks up the newest result and the model's weights,
restarts a dead worker, moves the camera and picks the node under the pointer; `upload` is the
only place new data reaches the GPU (activations, the hovered node's edges, the details images).

The Embedding window (scenes/explore/embedding.py and scenes/embedding_view.py) places a
conv layer's filters for the drawing, or many images, with t-SNE: its view runs while the window is
open (the t-SNE process starts when it first opens), its selection is linked with the 3D one, and the
selected filter's feature map is outlined in 3D meanwhile.

Pointer (engine/orbit.py): a left drag (beyond the click slop) orbits, a right drag pans, the wheel zooms;
a left click that did not move picks: a node selects it (details panel), empty space clears the
selection.  While the pointer is over the scene and not over a panel, the node under it is hovered:
highlighted, with its incoming edges drawn.  Picking is a CPU ray cast (engine/graph/picking.py).

State lives in typed groups (scenes/explore/parts.py), node details in scenes/explore/details.py; the
file stays a little over 500 lines because the frame's wiring (worker, pad, experiments, view, hover,
edges, outline) reads best in one place.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace

import glfw
import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.config import AppConfig
from convscope.engine.gpu.background import Background
from convscope.engine.gpu.imgui_renderer import UiTexture
from convscope.engine.gpu.normalize import all_ranges
from convscope.engine.gpu.scene_renderer import RenderSettings, SceneRenderer
from convscope.engine.graph.dag import Dag
from convscope.engine.graph.edges import EXACT_EDGES, edge_scale, edge_values, incoming, sample_edges
from convscope.engine.graph.explain import class_names, output_layer
from convscope.engine.graph.layout import Layout, build_layout
from convscope.engine.graph.spec import as_dag
from convscope.engine.orbit import CLICK_SLOP, Click, OrbitController
from convscope.engine.scene import FrameContext
from convscope.engine.ui.help import HelpSection
from convscope.engine.ui.input import MOD_CONTROL, MOD_SHIFT, InputState
from convscope.engine.ui.layout import PanelLayout, to_framebuffer
from convscope.engine.ui.settings import gui_view_row
from convscope.engine.view import NetworkView
from convscope.features.embedding.panel import SELECTED_RGB
from convscope.features.inference import WorkerHandle
from convscope.scenes.explore import robustness
from convscope.scenes.explore.compare import CompareView
from convscope.scenes.explore.details import NodeDetails
from convscope.scenes.explore.embedding import explore_embed_view
from convscope.scenes.explore.help_text import SECTIONS as HELP_SECTIONS
from convscope.scenes.explore.image_panel import ImagePanel, model_input_spec, takes_images
from convscope.scenes.explore.morph import MorphState, load_idx_digits
from convscope.scenes.explore.pad import PadState
from convscope.scenes.explore.panels import (
    gui_details_panel,
    gui_draw_panel,
    gui_embedding_panel,
    gui_experiments_panel,
    gui_network_panel,
)
from convscope.scenes.explore.parts import Experiments, Interaction, NetworkData, PadPart, Startup
from convscope.scenes.explore.preprocess import denormalize, to_model_input
from convscope.scenes.explore.robustness import RobustnessState
from convscope.scenes.explore.state import MODELS, ExploreState, Legend, model_label, nonfinite_note
from imgui_bundle import imgui

INPUT_SIDE = 28
MIN_PAD_SIDE = 150.0  # window units at UI scale 1: smaller, a finger or mouse cannot draw a digit
PAD_CHROME = 100.0  # window units at UI scale 1: the pad panel's title bar, tool rows and padding
# The network gets the whole view when the panels would leave it less: at 1280x720 the left column and the
# Embedding window leave 35 % (21 % at a UI scale of 121 %); framed there it is smaller, but under no panel.
FREE_MIN_FRACTION = 0.2
OUTLINE_RGBA = (
    *SELECTED_RGB,
    1.0,
)  # the selected filter's map: the colour of its ring in the Embedding window


def pad_side(layout: PanelLayout, full: float, scale: float) -> float:
    """The pad's side in window units: `full` (its canvas size x the UI scale), less when the left
    column (the pad's panel above the Network panel, as measured last frame) would not fit the window's
    height, so the Network panel never has to cover the pad's tools; never under MIN_PAD_SIDE.  The
    panel around the pad is taken as PAD_CHROME, not measured: the panel's height also follows the
    guesses beside the pad, and measuring it would shrink the pad a little more every frame."""
    network = layout.previous("Network")
    if network is None:
        return full
    room = layout.display[1] - (2 * layout.margin + layout.gap + PAD_CHROME) * scale - network.h
    return float(min(max(room, MIN_PAD_SIDE * scale), full))


def loaded_status(spec: Dag) -> str:
    """The status line of a loaded network: its name, nodes and layers."""
    return f"{model_label(spec.model)}: {spec.total_nodes:,} nodes in {len(spec.layers)} layers"


class ExploreScene:
    def __init__(self, config: AppConfig, drawing: np.ndarray | None = None, ui_scale: float = 1.0) -> None:
        self.config = config
        self.ui_scale = ui_scale
        self.state = ExploreState(model=config.model, colormap=config.colormap, normalize=config.normalize)
        self.state.own_models = () if config.model in MODELS else (config.model,)
        self.state.show_frame_time = config.show_frame_time
        self.pads = PadPart(PadState(size=config.pad_size, radius=config.brush))
        if drawing is not None:
            self.pad.set_image(drawing)
        self.interaction = Interaction.new(CLICK_SLOP * ui_scale)
        self.images = ImagePanel(config.data_dir or "")  # replaces the pad for 3-channel models
        self.model_input: np.ndarray | None = None  # the tensor last submitted: the dump's "input"
        self._fitted_for: tuple | None = None  # _fit_key of the last fit
        # Camera flights (fly to a layer) are stepped and ended here; a host that shares the controller
        # and flies it itself (the kiosk) turns this off.
        self.owns_flights = True
        self._blank_for: tuple | None = None  # the model a black "no picture" input was sent to
        self._uploaded_normalize = self.state.normalize  # the colour-range mode the node colours were set for
        self.worker = WorkerHandle(
            config.model, weights=config.weights or None, card=config.card or None, device=config.device
        )
        self.net = NetworkData()
        self.view: NetworkView | None = None  # renderer, edges, outline and picker (made in on_enter)
        self.details = NodeDetails()  # the selected node's calculation and images
        self.experiments = Experiments()
        self.morph_batch: int | None = None  # the worker's infer_batch id of the morph curve in flight
        if config.data_dir:
            try:
                self.morph.test_images, self.morph.test_labels = load_idx_digits(config.data_dir)
            except (FileNotFoundError, ValueError) as exc:
                self.state.error = f"morph: no MNIST test digits ({exc})"
        self.embedding = explore_embed_view(self)  # the Embedding window's view (entered when first opened)
        self.ctx = None
        self.startup = Startup()

    # -- the groups' parts most callers want ------------------------------------------------------

    @property
    def camera(self) -> OrbitCamera:
        return self.interaction.camera

    @property
    def controller(self) -> OrbitController:
        return self.interaction.controller

    @property
    def panels(self) -> PanelLayout:
        return self.interaction.panels

    @property
    def pad(self) -> PadState:
        return self.pads.pad

    @property
    def spec(self) -> Dag | None:
        """The network shown, as a Dag (a worker's NetSpec is turned into one where it arrives)."""
        return self.net.spec

    @property
    def activations(self) -> np.ndarray | None:
        return self.net.activations

    @property
    def weights(self) -> dict | None:
        return self.net.weights

    @property
    def result_seq(self) -> int:
        return self.net.result_seq

    @property
    def sent_seq(self) -> int:
        return self.net.sent_seq

    @property
    def robust(self) -> RobustnessState:
        return self.experiments.robust

    @property
    def morph(self) -> MorphState:
        return self.experiments.morph

    @property
    def compare(self) -> CompareView | None:
        return self.experiments.compare

    @property
    def first_frame_s(self) -> float | None:
        return self.startup.first_frame_s

    @property
    def first_result_s(self) -> float | None:
        return self.startup.first_result_s

    # -- lifecycle --------------------------------------------------------------------------------

    def on_enter(self, fc: FrameContext) -> None:
        self.ctx = fc.ctx
        self.app = fc.app
        self._background = Background(self.ctx)
        self.pads.texture = UiTexture(self.ctx, (self.pad.size, self.pad.size), 1)
        self.pads.seen = UiTexture(self.ctx, (INPUT_SIDE, INPUT_SIDE), 1, smooth=False)
        self.pad.texture_ref = self.pads.texture.ref
        self.view = NetworkView(self.ctx)
        self.worker.launch()
        self.pad.dirty = True  # send the starting drawing (blank or --input) as soon as the model is up

    def on_exit(self) -> None:
        if self.compare is not None:
            self.compare.release()
            self.experiments.compare = None
        self.embedding.on_exit()  # first: its t-SNE job may hold the images job's vectors
        self.worker.close()
        self.view.release()
        self.details.release()
        self._background.release()
        self.pads.texture.release()
        self.pads.seen.release()
        self.images.release()

    # -- per frame --------------------------------------------------------------------------------

    def gui(self) -> None:
        s = self.ui_scale
        io = imgui.get_io()
        presenting = bool(getattr(self.app, "presentation", False))
        if presenting != self.panels.presentation:
            self.interaction.fit_pending = True  # presentation mode on or off: frame the network anew
        self.panels.begin_frame((io.display_size.x, io.display_size.y), s, presenting)
        if takes_images(model_input_spec(self.worker)):
            self.images.gui(self.state, s, self.panels)
        else:
            self.pads.side = pad_side(self.panels, self.pad.size * s, s)
            gui_draw_panel(self.state, self.pad, self.pads.seen.ref, self.pads.side, s, self.panels)
        prefs = getattr(self.app, "prefs", None)
        gui_network_panel(self.state, s, self.panels, (lambda: gui_view_row(prefs)) if prefs else None)
        self.panels.avoid("Node details", self._selected_on_screen(io.display_size))
        # The Embedding window first: Node details stacks under it in the right-hand column.
        gui_embedding_panel(self.state, self.embedding.textures(), s, self.panels)
        gui_details_panel(self.state, self.details.refs(), s, self.panels)
        gui_experiments_panel(self.state, self.robust, self.morph, s, self.panels)
        if self.compare is not None:
            self.compare.gui(self.state.probabilities, self.state.model, self.state.classes)
        self.app.show_frame_time = self.state.show_frame_time

    def update(self, inp: InputState, dt: float, ui_mouse: bool, ui_keyboard: bool) -> None:
        self._watch_worker()
        self._toggle_compare()
        if not ui_keyboard:
            self._undo_keys(inp)
        canvas, resend = robustness.consume(self.robust, self.pad.canvas)
        if canvas is not None:
            self.pad.set_image(canvas)
        elif resend:
            self.pad.dirty = True
        if self.morph.take_back_to_pad():
            self.pad.dirty = True  # "back to the pad": the network still holds the blend
        changed, ended = self.pad.consume()
        image = canvas = None
        if changed or ended:
            self.morph.stop()  # drawing again hands the input back to the pad
            self.morph.take_back_to_pad()  # the drawing goes out below anyway
            image = robustness.network_input(self.pad.canvas, self.robust.mnist_centering)
            self.state.drawing_input = image
            if not self.robust.mnist_centering:
                canvas = self.pad.canvas  # a grey model of another size reads the pad itself, not its 28x28
        if self.morph.active and self.morph.take_input_changed():
            image = self.morph.image()
        spec = model_input_spec(self.worker)  # None until the worker describes its model's input
        blank = False
        if takes_images(spec):
            image = self.images.take_input(spec, self.net.spec_version)  # the picture, not the pad
            key = (tuple(spec.shape), tuple(spec.mean), tuple(spec.std), self.net.spec_version)
            if image is None and self.images.state.pixels is None and self._blank_for != key:
                # No picture (none given, no data set found): the model reads a black image, shown as
                # "no input" like an empty pad, so the view and a headless run never wait for one.
                self._blank_for, blank = key, True
                image = to_model_input(np.zeros((*spec.shape[1:], 3), np.float32), spec)
        if image is not None:
            self.state.network_input = np.zeros_like(image) if blank else image
            model_input = (
                image if spec is None or takes_images(spec) else self._drawing_input(image, spec, canvas)
            )
            if model_input is not None:
                self.net.sent_seq = self.worker.submit(model_input)
                self.model_input = model_input
            if self.compare is not None and not takes_images(spec):  # the compared nets take drawings
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
            self._steer_camera(inp, dt, ui_mouse, ui_keyboard)
            self._hover(inp, ui_mouse)
        if self.state.show_embedding:
            if not self.embedding.entered:
                self.embedding.on_enter(self.ctx)
            self.embedding.update(self.worker)
        self._update_details()
        self._update_legend()

    def upload(self) -> None:
        self.pads.texture.sync(self.pad.canvas, self.pad.version)
        seen = self._seen_image()
        if seen is not None:
            size = (seen.shape[1], seen.shape[0])
            if self.pads.seen.size != size:  # a grey model of another H x W than the last
                self.pads.seen.release()
                self.pads.seen = UiTexture(self.ctx, size, 1, smooth=False)
            self.pads.seen.sync(seen, self.sent_seq)
        self.images.upload(self.ctx)
        norm_changed = self.state.normalize != self._uploaded_normalize
        self._uploaded_normalize = self.state.normalize
        redraw = self.net.new_result or (norm_changed and self.activations is not None)
        if redraw and self.view.renderer is not None:
            self.net.new_result = False
            if self.input_blank:  # an empty pad: every node rests at the "no input" grey
                nan = np.full(self.spec.total_nodes, np.nan, np.float32)
                self.view.renderer.set_activations(
                    nan, np.tile(np.float32([0.0, 1.0]), (len(self.spec.layers), 1))
                )
            else:
                # NaN in the node texture means "no data yet" (grey); a NaN the network computed is
                # shown like inf, in the colormap's colour for non-finite values.
                values = self._global_outputs(self.display_values())
                self.view.renderer.set_activations(np.where(np.isnan(values), np.float32(np.inf), values))
        self._upload_edges()
        self.details.upload(self.ctx)
        self.embedding.upload()
        self._upload_outline()
        if self.compare is not None:
            self.compare.upload()

    def _seen_image(self) -> np.ndarray | None:
        """What "what the network sees" shows: a grey model's input at its own H x W (the tensor handed
        over, back in [0, 1]), else the 28 x 28 drawing; None for a colour model (its panel shows it)."""
        seen = self.state.network_input
        if seen is None or seen.shape != (INPUT_SIDE, INPUT_SIDE):
            return None
        x, spec = self.model_input, model_input_spec(self.worker)
        if (
            x is not None
            and spec is not None
            and x.ndim == 3
            and x.shape[0] == 1
            and x.shape[1:] != seen.shape
        ):
            return np.clip(denormalize(x, spec.mean, spec.std)[0], 0.0, 1.0)
        return seen

    def draw(self, viewport: tuple[int, int]) -> None:
        settling = self.interaction.fit_reflows != self.panels.reflows or self.panels.reflowing
        if settling and self.controller.at_home() and self._fit_key(viewport) != self._fitted_for:
            # Resized, or the panels left another free area, while at the home view: frame the network
            # anew (not when a panel only changed height and the free area stayed: no jump on hover).
            self.interaction.fit_pending = True
        if self.interaction.fit_pending and self.layout is not None:
            self.interaction.fit_pending = False
            self._fit(viewport)
        if self.compare is not None:
            self.compare.draw(
                viewport, self.render_settings(), primary=self._primary(), region=self._free_region(viewport)
            )
        elif self.view.renderer is None:
            self.ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
            self._background.draw(viewport)
        else:
            w = viewport[0]
            scale = w / max(self.app.ui.display_width, 1.0)  # framebuffer pixels per window unit
            width = self.ui_scale * scale if self.state.show_edges else None
            # Layer names keep to the part of the view the panels leave free, as the fit does.
            settings = replace(self.render_settings(), label_region=self._free_region(viewport))
            self.view.draw(self.camera, viewport, settings, edge_width=width)
        if self.first_frame_s is None:
            self.startup.first_frame_s = time.perf_counter() - self.startup.started_at
            _startup_log("first_frame")

    # -- helpers -----------------------------------------------------------------------------------

    def _primary(self) -> tuple[SceneRenderer, OrbitCamera] | None:
        return (self.view.renderer, self.camera) if self.view.renderer is not None else None

    @property
    def picks(self) -> int:
        """Hover / click picks made (tests, benchmarks)."""
        return self.view.picks if self.view is not None else 0

    @property
    def layout(self) -> Layout | None:
        """The single view's node positions (None until the first network arrives)."""
        return self.view.layout if self.view is not None else None

    def _free_region(self, viewport: tuple[int, int]) -> tuple[int, int, int, int]:
        """The framebuffer rectangle the docked panels leave free (all of it on narrow screens)."""
        free = self.panels.free(FREE_MIN_FRACTION)
        if free.w <= 0:  # the panels were not drawn (the kiosk draws its own): all of it
            return 0, 0, int(viewport[0]), int(viewport[1])
        scale = viewport[0] / max(self.app.ui.display_width, 1.0)  # framebuffer pixels per window unit
        x, y, w, h = to_framebuffer(free, (scale, scale))
        return int(x), int(y), int(w), int(h)

    def _toggle_compare(self) -> None:
        other = "mlp" if self.state.model == "lenet" else "lenet"
        if self.state.compare and self.compare is None:
            self.experiments.compare = CompareView(self.ctx, other, weights=self.config.weights or None)
            self.state.selected = -1  # details and hover belong to the single view
        elif not self.state.compare and self.compare is not None:
            self.compare.release()
            self.experiments.compare = None
            self.interaction.fit_pending = True
        elif self.compare is not None and self.compare.model != other:
            self.compare.set_model(other)
        if self.compare is not None and self.state.network_input is not None and self.compare.sent_seq == 0:
            self.compare.submit(self.state.network_input)
        if self.compare is not None and self.state.reset_camera:
            self.state.reset_camera = False
            self.compare.refit()

    def help_sections(self) -> tuple[HelpSection, ...]:
        """For the help overlay (F1 or ?)."""
        return HELP_SECTIONS

    def _undo_keys(self, inp: InputState) -> None:
        """Ctrl+Z undoes the pad's newest edit (stroke, Clear, shift, turn); Ctrl+Y / Ctrl+Shift+Z redo."""
        if inp.chord_pressed(glfw.KEY_Z, MOD_CONTROL):
            self.pad.undo()
        elif inp.chord_pressed(glfw.KEY_Y, MOD_CONTROL) or inp.chord_pressed(
            glfw.KEY_Z, MOD_CONTROL | MOD_SHIFT
        ):
            self.pad.redo()

    def _drawing_input(self, image: np.ndarray, spec, canvas: np.ndarray | None = None) -> np.ndarray | None:
        """The drawing as the model's tensor (resized, normalised); None, with the reason shown, when the
        model's input cannot take a drawing.  `canvas`, the pad itself, is read straight at the model's
        H x W when that is not 28 x 28: resizing the 28 x 28 view up again would blur the strokes."""
        shape = tuple(spec.shape)
        if canvas is not None and len(shape) == 3 and shape[1:] != image.shape:
            image = canvas
        try:
            return to_model_input(image, spec)
        except ValueError as exc:
            self.state.error = f"the drawing does not fit this model: {exc}"
            return None

    def _run_morph_curve(self) -> None:
        """Once per new A / B: the blends go to the worker as one batch; its answer is picked up by a
        later frame, so update() never waits for the network."""
        if self.morph_batch is not None:
            got = self.worker.batch(self.morph_batch)
            if got is not None:
                self.morph_batch = None
                if got.probabilities is not None:
                    self.morph.take(got.probabilities)  # False (dropped) if A / B changed meanwhile
                elif got.lost:
                    self.morph.ask_again()  # the worker restarted: send the same blends once it is up
                else:
                    self.state.error = f"morph: {got.error}"
        if not self.worker.ready:
            return
        blends = self.morph.requests()
        if len(blends):
            self.morph_batch = self.worker.infer_batch(blends)  # a newer pair replaces any older batch

    def _fit(self, viewport: tuple[int, int]) -> None:
        """Frame the whole network inside the part of the view the docked panels leave free."""
        if self.owns_flights:
            self.controller.flight = None  # a fit wins over a flight to one layer still on its way
        self.controller.fit(self.layout.bounds, self._free_region(viewport), viewport, margin=0.08)
        self.interaction.fit_reflows = self.panels.reflows
        self._fitted_for = self._fit_key(viewport)

    def _fit_key(self, viewport: tuple[int, int]) -> tuple:
        """What a fit depends on: the free area, the view's size and the layout."""
        return self._free_region(viewport), tuple(viewport), id(self.layout)

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
        """What the nodes show: the activations, except that the output layer shows class probabilities
        (the network's confidence, as in the paper) rather than logits or log-probabilities."""
        values = self.activations.copy()
        out = output_layer(self.spec)
        p = self.state.probabilities
        if out is not None and p is not None and len(p) == out.count:
            values[out.start : out.stop] = p
        return values

    def _selected_on_screen(self, display) -> tuple[float, float] | None:
        """The selected node's place on screen in window units (the details panel keeps off it), or None."""
        node, lay = self.state.selected, self.layout
        if node < 0 or lay is None or node >= len(lay.positions) or self.compare is not None:
            return None
        p = self.camera.project(lay.positions[node : node + 1], max(display.x, 1.0), max(display.y, 1.0))[0]
        return (float(p[0]), float(p[1])) if np.all(np.isfinite(p)) else None

    def _global_outputs(self, values: np.ndarray) -> np.ndarray:
        """With one colour range for the whole network the output's probabilities (0..1) sat at the dark
        end of a range set by activations in the tens, winner included: they are drawn stretched over the
        other layers' range instead (p = 1 at its top), for the colours only."""
        out, p = output_layer(self.spec), self.state.probabilities
        if self.state.normalize != "global" or out is None or p is None or len(p) != out.count:
            return values
        rest = values[: out.start]
        rest = rest[np.isfinite(rest)]
        if not len(rest):
            return values
        lo, hi = float(rest.min()), float(rest.max())
        values = values.copy()
        values[out.start : out.stop] = lo + p * (hi - lo)
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
        if self.state.model != self.worker.model and self.worker.failed_model == self.state.model:
            self.state.model = self.worker.model  # it did not load: the previous network runs on
            self.state.error = self.worker.error
        elif self.state.model != self.worker.model:
            self.worker.switch_model(self.state.model)
            self.state.status = f"loading {model_label(self.state.model)}..."
            self.state.probabilities = None
        if self.worker.status:
            self.state.status = f"{model_label(self.worker.model)}: {self.worker.status}"  # "tracing..."
        elif self.worker.ready and self.worker.spec is not None and self.state.status.endswith("..."):
            spec = self.worker.spec  # loaded again after a failed switch: the same spec, no new layout
            self.state.status = loaded_status(spec)
        if self.worker.error and self.worker.spec is None:
            self.state.error = self.worker.error
            self.state.status = "no network loaded"

    def _take_result(self) -> None:
        result = self.worker.poll()
        if self.worker.spec_version != self.net.spec_version and self.worker.spec is not None:
            self.net.spec_version = self.worker.spec_version
            self._on_new_spec(self._dag_of(self.worker))
        if (
            self.worker.weights_version != self.net.weights_version
            and self.worker.spec_version == self.net.spec_version
        ):
            # Weights arrive once per model, a moment after its spec; they describe worker.spec,
            # which is ours now.
            self.net.weights_version = self.worker.weights_version
            self.net.weights = self.worker.weights
            self.net.scale_cache.clear()
        if result is None or result.spec_version != self.net.spec_version:
            return
        self.net.activations = result.activations
        self.state.probabilities = result.probabilities
        self.state.nonfinite = nonfinite_note(self.spec, result.activations, result.probabilities)
        self.net.result_version += 1
        self.net.scale_cache.clear()
        self.net.node_ranges = all_ranges(self.spec, self.display_values())  # both modes, one pass
        if self.first_result_s is not None and math.isfinite(
            result.latency_s
        ):  # the first one waited for start-up
            self.state.latency_ms = result.latency_s * 1e3
        self.net.result_seq = result.seq
        self.net.new_result = True
        if self.worker.restarts == 0 or self.worker.alive:
            if self.state.error and self.state.error.startswith("The network process"):
                self.state.error = None
        if self.first_result_s is None:
            self.startup.first_result_s = time.perf_counter() - self.startup.started_at
            _startup_log("first_activations")

    @staticmethod
    def _dag_of(worker) -> Dag:
        """The worker's network as a Dag, with the class names its input description gives when the
        Dag has none of its own."""
        dag = as_dag(worker.spec)
        names = tuple(getattr(getattr(worker, "input_spec", None), "classes", ()) or ())
        if names and not dag.classes:
            dag = Dag(dag.model, dag.layers, dag.output, dag.output_kind, names)
        return dag

    def _on_new_spec(self, spec: Dag) -> None:
        keep = self.state.layer_visible if self.spec is not None and self.spec.model == spec.model else None
        reason = "start" if self.spec is None else "model"
        self.net.spec = spec
        self.net.activations = None
        self.net.node_ranges = None
        self.net.weights = self.worker.weights  # None until they arrive (weights_version bumps then)
        self.net.weights_version = self.worker.weights_version
        self.net.scale_cache.clear()
        # Node ids of the old network mean nothing in the new one.
        self.state.hovered = self.state.selected = -1
        self.state.details = None
        self.interaction.hover_key = self.net.edge_key = None
        self.details.invalidate()
        self.state.layer_names = [x.name for x in spec.layers]
        self.state.current_layer = -1
        self.state.layer_visible = (
            keep if keep and len(keep) == len(spec.layers) else [True] * len(spec.layers)
        )
        out = output_layer(spec)
        self.state.classes = class_names(spec, out.count) if out is not None else spec.classes
        self.state.one_channel = spec.layers[0].is_grid and spec.layers[0].shape[0] == 1
        if not self.state.one_channel:
            self.state.compare = False  # the pad experiments apply to one-channel models only
        if len(self.state.classes) == len(self.morph.classes):
            self.morph.classes = self.state.classes  # the morph chart's lines by class name
        self.state.status = loaded_status(spec)
        self.state.error = None
        self.view.show(build_layout(spec, visible=self.state.layer_visible))
        self.interaction.fit_pending = True
        self.pad.dirty = True  # a new network has not seen the drawing yet
        self.net.outline_key = None
        self.embedding.on_spec(spec, reason)

    def _relayout(self) -> None:
        self.view.set_layout(build_layout(self.spec, visible=self.state.layer_visible))
        self.interaction.hover_key = self.net.edge_key = self.net.outline_key = None
        self.interaction.fit_pending = True

    def _steer_camera(self, inp: InputState, dt: float, ui_mouse: bool, ui_keyboard: bool) -> None:
        s = self.state
        if s.reset_camera or (not ui_keyboard and inp.key_pressed(glfw.KEY_F)):
            s.reset_camera = False
            s.current_layer = -1
            if self.owns_flights:
                self.controller.flight = None
            self.interaction.fit_pending = True
        if not ui_keyboard and s.layer_names:
            step = inp.key_pressed(glfw.KEY_PAGE_UP) - inp.key_pressed(glfw.KEY_PAGE_DOWN)
            if step:
                start = s.current_layer if s.current_layer >= 0 else (-1 if step > 0 else len(s.layer_names))
                s.fly_to = min(max(start + step, 0), len(s.layer_names) - 1)
        if s.fly_to is not None and self.owns_flights:
            self._fly_to_layer(s.fly_to, inp.framebuffer_size)
        s.fly_to = None
        for click in self.controller.update(inp, ui_mouse):
            self._click(click, inp.framebuffer_size)
        if self.owns_flights:
            self.controller.step(dt)

    def _fly_to_layer(self, index: int, viewport: tuple[int, int]) -> None:
        """Fly to layer `index` from the current angle (looking down on it a little), framed in the free
        area; a hidden layer is shown first."""
        s = self.state
        if self.layout is None or not 0 <= index < len(s.layer_names):
            return
        if not s.layer_visible[index]:
            s.layer_visible[index] = True
            self._relayout()
            self.interaction.fit_pending = False  # the flight frames the new layout's layer instead
        x, y, w, h = self._free_region(viewport)
        renderer = self.view.renderer
        if renderer is not None:  # the layer's name sits at its left: keep room for it beside the panels
            atlas = renderer.labels.atlas
            name_px = (
                atlas.text_width(s.layer_names[index]) + 2 * atlas.outline_px + 8
            ) * self.render_settings().label_scale
            name_px = min(name_px, 0.35 * w)
            x, w = x + name_px, w - name_px
        goal = self.controller.fit_pose(
            tuple(self.layout.layer_bounds[index]),
            (x, y, w, h),
            viewport,
            margin=0.25,
            keep_angle=True,
            min_pitch=math.radians(25.0),
        )
        self.controller.fly_to(goal)
        s.current_layer = index

    # -- picking, edges, details -------------------------------------------------------------------

    def pick(self, x: float, y: float, viewport: tuple[int, int]) -> int:
        """The node drawn at framebuffer position (x, y) this frame, or -1."""
        return self.view.pick(self.camera, x, y, viewport, self._visible(), self.focus_node)

    def _click(self, click: Click, viewport: tuple[int, int]) -> None:
        """A click that did not move: select the node under it, or clear the selection on empty space."""
        node = self.pick(click.x_fb, click.y_fb, viewport)
        self.state.selected = node
        self.details.invalidate()

    def _hover(self, inp: InputState, ui_mouse: bool) -> None:
        """Pick the node under the pointer when the pointer, the camera or the layout moved."""
        if ui_mouse or not inp.cursor_inside or self.view.picker is None:
            self.state.hovered = -1
            self.interaction.hover_key = None
            return
        if self.controller.dragging:
            return  # orbiting / panning: the hovered node stays until the drag ends
        c = self.camera
        key = (
            inp.mouse_pos_fb,
            inp.framebuffer_size,
            (*c.target, c.yaw, c.pitch, c.distance),
            id(self.layout),
            self._visible(),
            self.focus_node,  # the highlighted node's outline ring is part of what is drawn
        )
        if key == self.interaction.hover_key:
            return
        self.interaction.hover_key = key
        self.state.hovered = self.pick(*inp.mouse_pos_fb, inp.framebuffer_size)

    def _edge_scale(self, layer) -> float:
        """[-m, m] of the edges into `layer`, cached until the result, weights or settings change."""
        s = self.state
        key = (layer.name, s.edge_mode, s.normalize)
        if key not in self.net.scale_cache:
            self.net.scale_cache[key] = edge_scale(
                self.spec, layer, self.weights, self.activations, s.edge_mode, s.normalize
            )
        return self.net.scale_cache[key]

    def _upload_edges(self) -> None:
        """Regenerate the focus node's edges only when the node, the numbers or the settings changed."""
        if self.view is None:
            return
        s = self.state
        node = self.focus_node if s.show_edges else -1
        net = self.net
        key = (
            node,
            net.result_version,
            net.weights_version,
            s.edge_mode,
            s.normalize,
            s.show_all_edges,
            id(self.layout),
        )
        if key == self.net.edge_key:
            return
        self.net.edge_key = key
        s.edge_note, s.edges_sampled = "", False
        net.edge_sources = None
        if node < 0 or self.spec is None or node >= self.spec.total_nodes:
            self.view.edges.clear()
            return
        edges = incoming(self.spec, node, self.weights)
        keep = np.arange(edges.count)
        if s.layer_visible:  # edges from hidden layers go: their nodes are not drawn
            keep = keep[np.asarray(s.layer_visible)[self.layout.layer_index[edges.sources]]]
        sample = sample_edges(
            _subset(edges, keep), self._contributions(edges, keep), show_all=s.show_all_edges
        )
        keep = keep[sample.keep]
        s.edge_note = sample.note
        s.edges_sampled = sample.total > EXACT_EDGES  # the toggle stays while "show all" is on
        if not len(keep):
            self.view.edges.clear()  # input node, or its inputs are hidden
            return
        net.edge_sources = edges.sources[keep]
        values = edge_values(edges, self.weights, self.activations, s.edge_mode)[keep]
        pos = self.layout.positions
        self.view.edges.set_edges(pos[edges.sources[keep]], values, pos[node], self._edge_scale(edges.layer))

    def _contributions(self, edges, keep: np.ndarray) -> np.ndarray | None:
        """|weight x input| of the edges `keep`, what a sample of many edges is chosen by (None while the
        numbers are not there; only computed for nodes with many edges)."""
        if len(keep) <= EXACT_EDGES or self.activations is None:
            return None
        return edge_values(edges, self.weights, self.activations, "contribution")[keep]

    def _update_details(self) -> None:
        net = self.net
        versions = (net.result_version, net.weights_version)
        self.details.update(self.state, net.spec, net.activations, net.weights, versions, self._node_range)

    def _upload_outline(self) -> None:
        """Outline the selected node's feature map while the Embedding window is open: the filter its
        point stands for."""
        s = self.state
        show = s.show_embedding and self.compare is None and self.spec is not None and self.layout is not None
        key = (show, s.selected, id(self.layout), self.ui_scale)
        if key == self.net.outline_key or self.view is None:
            return
        self.net.outline_key = key
        node = s.selected
        if not show or not 0 <= node < self.spec.total_nodes:
            self.view.outline_maps([], 0.0, OUTLINE_RGBA)
            return
        layer = self.spec.layer_of(node)
        i = self.spec.index(layer.name)
        visible = s.layer_visible
        if not layer.is_grid or layer.kind == "input" or (visible and not visible[i]):
            self.view.outline_maps([], 0.0, OUTLINE_RGBA)
            return
        _, h, w = layer.shape
        self.view.outline_maps([(i, (node - layer.start) // (h * w))], 2.5 * self.ui_scale, OUTLINE_RGBA)

    def _node_range(self, layer_name: str) -> tuple[float, float]:
        if self.net.node_ranges is None:
            return (0.0, 1.0)
        lo, hi = self.net.node_ranges[self.state.normalize][self.spec.index(layer_name)]
        return float(lo), float(hi)

    def _update_legend(self) -> None:
        """The numbers at the ends of the colour legend, for the focus node's layer."""
        node = self.focus_node
        if self.spec is None or node < 0 or node >= self.spec.total_nodes:
            self.state.legend = Legend()
            return
        layer = self.spec.layer_of(node)
        lo, hi = self._node_range(layer.name)
        drawn = any(e.kind != "opaque" for e in layer.inputs)  # an opaque block has no node edges
        m = self._edge_scale(layer) if drawn and self.state.show_edges else None
        self.state.legend = Legend(layer.name, lo, hi, m)


def _subset(edges, keep: np.ndarray):
    """The edges `keep` of one node's incoming edges (same node and layer)."""
    return replace(
        edges,
        sources=edges.sources[keep],
        weight_index=edges.weight_index[keep],
        edge_set=edges.edge_set[keep],
        tap=edges.tap[keep],
    )


def _startup_log(event: str) -> None:
    """Benchmarks set CONVSCOPE_STARTUP_LOG to learn when the first frame / result appeared."""
    path = os.environ.get("CONVSCOPE_STARTUP_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{event} {time.time():.6f}\n")
