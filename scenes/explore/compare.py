"""Compare mode: LeNet and the MLP side by side on the same drawing, each with its top guesses.

`CompareView` owns everything about the *second* network: its own torch worker (a WorkerHandle for the
other model), its layout and SceneRenderer, and its camera.  The scene keeps its own network (the
"primary") and passes its renderer and camera in; the view splits a region of the framebuffer into two
halves, the primary on the left and the other model on the right, each drawn through a TileCamera (a
lens shift of the projection; see there why not a GL viewport per half) inside a scissor box
(SceneRenderer.draw clears the bound framebuffer, and a clear honours the scissor, so one half never
erases the other).  Both cameras, the scene's included, are fitted to their halves when a half changes
size or a network changes layout (`refit()` asks again); `steer` routes pointer drags and the wheel to
the camera under the pointer (orbits are linked, so both diagrams turn together).  The scene refits its
own camera to the full view when compare mode ends.

Per frame, in the scene (compare mode on):

    compare.gui(state.probabilities, "LeNet (CNN)")   # top-3 overlays near each half (ImGui only)
    ... when the drawing changed: compare.submit(image) next to worker.submit(image)
    compare.update()                                   # poll, new spec -> new renderer, restart dead worker
    compare.steer(inp, ui_mouse, self.camera)          # instead of the scene's own camera steering
    compare.upload()                                   # new activations to the GPU
    compare.draw(viewport, settings, primary=(renderer, camera), region=(x, y, w, h))

and `compare.release()` when compare mode ends or the scene exits (stops its worker, frees its GL
objects).  `region` is in framebuffer pixels with a top-left origin (default: the whole viewport).  No
torch here: the worker process is the only place torch runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.gpu.scene_renderer import RenderSettings, SceneRenderer
from convscope.engine.graph.dag import Dag
from convscope.engine.graph.explain import class_names, output_layer
from convscope.engine.graph.layout import Layout, build_layout
from convscope.engine.graph.spec import as_dag
from convscope.engine.orbit import HALF_TURN, fit_camera
from convscope.engine.ui.input import MOUSE_LEFT, MOUSE_RIGHT, InputState
from convscope.features.inference import WorkerHandle
from imgui_bundle import imgui

Rect = tuple[int, int, int, int]  # x, y, width, height in framebuffer pixels, top-left origin

LABELS = {"lenet": "LeNet (CNN)", "mlp": "MLP (784-300-100-10)"}
FIT_MARGIN = 0.08  # fraction of each half's half-size kept free around a fitted network
LABEL_ROOM = 90  # framebuffer pixels kept free left of each network for its layer names (not in the bounds)
GUESS_ROOM = 100  # framebuffer pixels kept free at the top of each half for its guesses card

_TITLE = (1.0, 1.0, 1.0, 1.0)
_DIM = (0.75, 0.78, 0.85, 1.0)
_BAR = (0.35, 0.45, 0.65, 0.9)
_BAR_TOP = (0.95, 0.65, 0.2, 1.0)
_PANEL = (0.0, 0.0, 0.0, 0.55)


def split(region: Rect) -> tuple[Rect, Rect]:
    """The left and right halves of `region` (the left one gets the odd pixel)."""
    x, y, w, h = region
    left = (w + 1) // 2
    return (x, y, left, h), (x + left, y, w - left, h)


class TileCamera:
    """A camera seen through one tile of the framebuffer: the same view, and its projection (for the
    tile's own aspect) squeezed and shifted in clip space (a lens shift) so the picture lands in the tile
    while the GL viewport stays the whole framebuffer.

    Why not a GL viewport per half: the node shader maps clip space to gl_FragCoord assuming the
    viewport starts at (0, 0) (shaders/nodes.glsl, v_center), so nodes in a half that does not start at
    the left edge lose every fragment.  With a full-size viewport that assumption holds; the scissor box
    keeps each half's clear and background inside it.  Anything else asked of it comes from the camera.
    """

    def __init__(self, camera: OrbitCamera, tile: Rect, framebuffer: tuple[int, int]) -> None:
        self.camera = camera
        self.tile = tile  # x, y, w, h in GL convention (rows from the bottom)
        self.framebuffer = framebuffer

    def view_matrix(self) -> np.ndarray:
        return self.camera.view_matrix()

    def projection(self, aspect: float | None = None) -> np.ndarray:
        """`aspect` (the framebuffer's, as SceneRenderer passes it) is ignored: the tile's is used."""
        x, y, w, h = self.tile
        fw, fh = self.framebuffer
        shift = np.eye(4, dtype=np.float64)
        shift[0, 0], shift[1, 1] = w / fw, h / fh
        shift[0, 3], shift[1, 3] = (2.0 * x + w) / fw - 1.0, (2.0 * y + h) / fh - 1.0  # times clip w
        return shift @ self.camera.projection(w / max(h, 1))

    def view_projection(self, aspect: float | None = None) -> np.ndarray:
        return self.projection() @ self.view_matrix()

    def __getattr__(self, name: str):
        return getattr(self.camera, name)


class CompareView:
    def __init__(
        self,
        ctx,  # moderngl.Context
        other_model: str,
        weights: Mapping[str, str | os.PathLike] | None = None,
        *,
        launch: bool = True,  # start the worker now (it loads while the frames go on)
    ) -> None:
        self.ctx = ctx
        self.worker = WorkerHandle(other_model, weights)
        self.camera = OrbitCamera()
        self.spec: Dag | None = None  # the other network (its worker's spec through as_dag)
        self.layout: Layout | None = None
        self.activations: np.ndarray | None = None  # newest result of the other model, as received
        self.probabilities: np.ndarray | None = None  # its class probabilities, (10,)
        self.result_seq = 0  # seq of the newest result taken
        self.sent_seq = 0  # seq of the newest image submitted
        self.linked_orbit = True  # a drag that turns one diagram turns both
        self._renderer: SceneRenderer | None = None
        self._spec_version = 0
        self._new_result = False
        self._fit_keys: dict[str, tuple] = {}  # per camera: (layout, half size) it was fitted for
        self._halves_fb: tuple[Rect, Rect] | None = None  # the halves of the last draw
        self._halves_win: tuple[tuple[float, ...], ...] | None = None  # the same in window units
        self._steering: str | None = None  # "primary" / "other": the half a drag started in
        self._released = False
        if launch:
            self.worker.launch()

    # -- state ------------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self.worker.model

    @property
    def ready(self) -> bool:
        """The newest image submitted has come back through the other network."""
        return self.spec is not None and self.activations is not None and self.result_seq >= self.sent_seq

    @property
    def error(self) -> str | None:
        return self.worker.error

    def set_model(self, name: str) -> None:
        """Show another model on the right (e.g. the user switched the primary to it); no-op if same."""
        if name != self.worker.model:
            self.worker.switch_model(name)
            self.probabilities = None

    def refit(self) -> None:
        """Fit both cameras to their halves again on the next draw ("Fit all")."""
        self._fit_keys.clear()

    # -- per frame ----------------------------------------------------------------------------------

    def submit(self, image: np.ndarray) -> int:
        """Send the (28, 28) input the primary network got; returns its seq.  Never blocks."""
        self.sent_seq = self.worker.submit(image)
        return self.sent_seq

    def update(self) -> bool:
        """Restart a dead worker, pick up a new spec and the newest result.  True if a result came in."""
        self.worker.check()
        result = self.worker.poll()
        if self.worker.spec_version != self._spec_version:
            self._spec_version = self.worker.spec_version
            self._on_new_spec(self.worker.spec)
        if result is None or result.spec_version != self._spec_version or self.spec is None:
            return False
        self.activations = result.activations
        self.probabilities = result.probabilities
        self.result_seq = result.seq
        self._new_result = True
        return True

    def upload(self) -> None:
        if self._new_result and self._renderer is not None and self.activations is not None:
            self._new_result = False
            self._renderer.set_activations(self.display_values())

    def display_values(self) -> np.ndarray:
        """What the nodes show: the activations, with class probabilities on the output nodes (as the
        explore scene does)."""
        values = self.activations.copy()
        out = output_layer(self.spec)
        p = self.probabilities
        if out is not None and p is not None and len(p) == out.count:
            values[out.start : out.stop] = p
        return values

    @property
    def classes(self) -> tuple[str, ...]:
        """The other network's class names (its Dag's, else "0", "1", ...)."""
        if self.spec is None or output_layer(self.spec) is None:
            return ()
        return class_names(self.spec, output_layer(self.spec).count)

    def draw(
        self,
        viewport: tuple[int, int],
        settings: RenderSettings | None = None,
        primary: tuple[SceneRenderer, OrbitCamera] | None = None,
        region: Rect | None = None,
    ) -> None:
        """Clear the bound framebuffer (`viewport` = its (w, h)), then the primary network in the left
        half of `region` and the other one in the right half.  `settings` apply to the primary as given
        and to the other network without its per-layer visibility and highlight (they name the primary's
        layers and nodes).  Leaves the viewport covering the framebuffer and the scissor off."""
        fb_w, fb_h = viewport
        s = settings or RenderSettings()
        region = region or (0, 0, fb_w, fb_h)
        left, right = split(region)
        self.ctx.scissor = None
        self.ctx.viewport = (0, 0, fb_w, fb_h)  # whole framebuffer: see TileCamera
        self.ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        jobs = []
        if primary is not None:
            jobs.append(("primary", primary[0], primary[1], left, s))
        if self._renderer is not None:
            jobs.append(("other", self._renderer, self.camera, right, replace(s, visible=None, highlight=-1)))
        try:
            for key, renderer, camera, rect, rs in jobs:
                x, y, w, h = rect
                if w <= 0 or h <= 0:
                    continue
                self._fit(key, camera, renderer.layout, (w, h))
                gl_rect = (x, fb_h - y - h, w, h)  # GL counts rows from the bottom
                # The renderer's clear and background stay in the half, but the outer halves reach the
                # framebuffer's edges: the strip under the docked panels showed black between them.
                x0 = 0 if key == "primary" else x
                x1 = fb_w if key == "other" or len(jobs) == 1 else x + w
                self.ctx.scissor = (x0, 0, x1 - x0, fb_h)
                renderer.draw(TileCamera(camera, gl_rect, (fb_w, fb_h)), (fb_w, fb_h), rs)
        finally:
            self.ctx.scissor = None
            self.ctx.viewport = (0, 0, fb_w, fb_h)
        # ImGui draws in window units; remember where the halves were for gui() and steer().
        scale = imgui.get_io().display_framebuffer_scale if imgui.get_current_context() is not None else None
        sx, sy = (scale.x or 1.0, scale.y or 1.0) if scale is not None else (1.0, 1.0)
        self._halves_fb = (left, right)
        self._halves_win = tuple((r[0] / sx, r[1] / sy, r[2] / sx, r[3] / sy) for r in (left, right))

    def gui(
        self,
        primary_probabilities: np.ndarray | None = None,
        primary_title: str = "",
        primary_classes: tuple[str, ...] = (),
    ) -> None:
        """Each half's title and top-3 guesses in its top-left corner, a divider between them (ImGui's
        background draw list: over the 3D view, under the panels).  Uses the halves of the last draw."""
        if self._halves_win is None:
            return
        dl = imgui.get_background_draw_list()
        (lx, ly, lw, lh), (rx, ry, rw, rh) = self._halves_win
        dl.add_line((rx, ry), (rx, ry + rh), imgui.get_color_u32(_DIM), 1.0)
        _guesses(dl, (lx + 12, ly + 10), primary_title, primary_probabilities, None, primary_classes)
        title = LABELS.get(self.model, self.model)
        status = None
        if self.spec is None:
            status = self.worker.error or f"loading {self.model}..."
        probs = self.probabilities if self.spec is not None else None
        _guesses(dl, (rx + 12, ry + 10), title, probs, status, self.classes)

    def steer(self, inp: InputState, ui_mouse: bool, primary_camera: OrbitCamera | None) -> None:
        """Camera input for compare mode: a drag orbits (left) or pans (right) the camera of the half it
        started in (orbits of both when `linked_orbit`); the wheel zooms the half under the pointer."""
        halves = self._halves_fb
        if halves is None:
            return
        cams = {"primary": primary_camera, "other": self.camera}
        mx, my = inp.mouse_pos_fb
        under = next(
            (
                k
                for k, (x, y, w, h) in zip(("primary", "other"), halves, strict=True)
                if x <= mx < x + w and y <= my < y + h
            ),
            None,
        )
        pressed = inp.was_pressed(MOUSE_LEFT) or inp.was_pressed(MOUSE_RIGHT)
        if pressed:
            self._steering = None if ui_mouse else under
        if not (inp.is_down(MOUSE_LEFT) or inp.is_down(MOUSE_RIGHT)):
            self._steering = None
        if ui_mouse:
            return
        sx, sy = inp.framebuffer_scale
        dx, dy = inp.mouse_delta[0] * sx, inp.mouse_delta[1] * sy
        key = self._steering
        if key is not None and cams[key] is not None and not pressed:
            h = halves[0 if key == "primary" else 1][3]
            if inp.is_down(MOUSE_LEFT):
                for k, cam in cams.items():
                    if cam is not None and (k == key or self.linked_orbit):
                        cam.orbit_speed = HALF_TURN / max(inp.framebuffer_size[0], 1)  # as engine/orbit.py
                        cam.orbit(dx, dy)
            elif inp.is_down(MOUSE_RIGHT):
                cams[key].pan(dx, dy, h)
        if inp.scroll[1] and under is not None and cams[under] is not None:
            x, y, w, h = halves[0 if under == "primary" else 1]
            ndc = (2.0 * (mx - x) / w - 1.0, 1.0 - 2.0 * (my - y) / h)
            cams[under].zoom(inp.scroll[1], ndc, w / max(h, 1))

    def release(self) -> None:
        """Stop the worker (freeing its shared memory) and the GL objects.  Idempotent."""
        if self._released:
            return
        self._released = True
        self.worker.close()
        if self._renderer is not None:
            self._renderer.release()
            self._renderer = None

    # -- helpers -----------------------------------------------------------------------------------

    def _on_new_spec(self, spec) -> None:
        spec = as_dag(spec) if spec is not None else None
        self.spec = spec
        self.activations = None
        self.probabilities = None
        self._new_result = False
        if self._renderer is not None:
            self._renderer.release()
            self._renderer = None
        self.layout = None
        self._fit_keys.pop("other", None)
        if spec is not None:
            self.layout = build_layout(spec)
            self._renderer = SceneRenderer(self.ctx, self.layout)

    def _fit(self, key: str, camera: OrbitCamera, layout: Layout, size: tuple[int, int]) -> None:
        done = self._fit_keys.get(key)
        if done is not None and done[0] is layout and done[1] == size:
            return
        self._fit_keys[key] = (layout, size)
        w, h = size
        room = min(LABEL_ROOM, w // 4)
        top = min(GUESS_ROOM, h // 4)
        # Framed like the single view (engine/orbit.py): the network's projected box fills the half, less
        # room on the left for the layer names and at the top for the guesses card.  camera.fit alone
        # framed the bounding sphere and left both networks small.
        fit_camera(camera, layout.bounds, (room, top, w - room, h - top), (w, h), margin=FIT_MARGIN)


def _guesses(
    dl: imgui.ImDrawList,
    pos: tuple[float, float],
    title: str,
    probs,
    status: str | None,
    classes: tuple[str, ...] = (),
) -> None:
    """A small dark card: title, then the top three classes (by name where `classes` has one) as bars
    with percentages (or a status)."""
    line = imgui.get_text_line_height_with_spacing()
    bar_w = 9.0 * imgui.get_font_size()
    rows = 1 + (3 if probs is not None and np.all(np.isfinite(probs)) else 1)
    x, y = pos
    width = max(bar_w + 12, imgui.calc_text_size(title).x + 12)
    dl.add_rect_filled((x - 6, y - 4), (x + width, y + rows * line + 2), imgui.get_color_u32(_PANEL), 4.0)
    dl.add_text((x, y), imgui.get_color_u32(_TITLE), title)
    y += line
    if rows == 2:
        dl.add_text((x, y), imgui.get_color_u32(_DIM), status or "waiting for the network...")
        return
    p = np.asarray(probs, np.float64)
    for rank, k in enumerate(np.argsort(-p)[:3]):
        h = line - 4
        dl.add_rect_filled(
            (x, y),
            (x + bar_w * float(p[k]), y + h),
            imgui.get_color_u32(_BAR_TOP if rank == 0 else _BAR),
            2.0,
        )
        name = classes[k] if k < len(classes) else str(k)
        dl.add_text((x + 3, y), imgui.get_color_u32(_TITLE), f"{name}   {100.0 * p[k]:5.1f} %")
        y += line
