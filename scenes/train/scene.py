"""TrainScene: watch the ReVACNN network (Chung et al. 2016) learn in the 3D node-link view and steer it.

Owns the training worker's handle (features/training/handle.py), the camera and the GPU side of one
architecture: a NetworkView (engine/view.py: the nodes' renderer, the selected map's outline and the picker,
rebuilt whenever the worker announces a new architecture), a PathBatch for the paths; and the
Embedding window's view (scenes/train/embedding.py: the t-SNE process, the tooltip textures), linked to
the 3D selection.
Per frame: panels edit TrainState; `update` sends the panels' requests to the worker, reads the newest
snapshot, turns it into per-node jitter amplitudes and per-path widths (CPU, numpy), restarts a dead worker,
runs the embedding view, picks a clicked feature map and moves the camera; `upload` is the only place new
data reaches the GPU.

What is drawn, from each snapshot:
  nodes   activations of the monitored held-out image (output nodes: class probabilities).  A colour
          input (CIFAR-10, 3x32x32) is shown as three grids (R, G, B channel maps, in the colormap like every
          layer), a grey one (MNIST, the digits) as one; the image itself is in the Training panel.  The
          colours span a layer's min to a typical map's peak (or min..max, or per map: colour_values).
  jitter  each filter's conv map and its pooled map tremble together with an amplitude proportional to
          the smoothed mean |dL/dw| per coefficient of that filter; the scale is the largest value seen
          lately (a peak that decays with a 20 s half-life), so the amplitude follows training as it
          slows down, and the busiest filter moves `jitter_gain` world units (a node pitch is 1).
          Only while training runs: a paused net is not being trained.
  paths   one per filter pair between consecutive layers: previous map (input channel or pooled map) ->
          each filter of the next conv layer, and each conv map -> its pooled map.  A path's width is the
          sum of its target map for the monitored image; only the top half of each layer's maps (sorted
          by that sum; ties by index) get paths, as in the paper.  Past EXACT_EDGES of them (wide
          layers), the hover edges' rule picks which: the strongest |weight x input| (the pair's kernel
          sum times the source map's sum) and a sample of the rest, with the count in the View panel.

Length: the scene class and its Geometry (paths and jitter per architecture); the panels, state,
embedding view and help text are already modules of their own.
"""

from __future__ import annotations

import math
from collections import deque

import glfw
import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.cores import CoreReservation
from convscope.engine.gpu.background import Background
from convscope.engine.gpu.imgui_renderer import UiTexture
from convscope.engine.gpu.normalize import per_map, robust_ranges
from convscope.engine.gpu.paths import PathBatch
from convscope.engine.gpu.scene_renderer import RenderSettings
from convscope.engine.graph.edges import sample_edges
from convscope.engine.graph.layout import Layout, LayoutStyle, build_layout
from convscope.engine.graph.spec import NetSpec, as_dag
from convscope.engine.orbit import CLICK_SLOP, OrbitController
from convscope.engine.scene import FrameContext
from convscope.engine.ui.help import HelpSection
from convscope.engine.ui.input import InputState
from convscope.engine.ui.layout import PanelLayout, Rect, to_framebuffer
from convscope.engine.ui.settings import gui_view_row
from convscope.engine.view import NetworkView
from convscope.features.embedding.panel import EmbedPanelState
from convscope.features.training.handle import TrainHandle
from convscope.features.training.messages import TrainSnapshot
from convscope.scenes.train.embedding import EmbedView
from convscope.scenes.train.help_text import SECTIONS as HELP_SECTIONS
from convscope.scenes.train.panels import (
    filter_montage,
    gui_embedding,
    gui_left,
    gui_right,
)
from convscope.scenes.train.state import MONITOR_CYCLE_S, OPTIMIZERS, TrainConfig, TrainState
from imgui_bundle import imgui

PATH_RGBA = (1.0, 0.86, 0.55, 0.3)  # warm, translucent: hundreds overlap
OUTLINE_RGBA = (1.0, 0.95, 0.2, 1.0)
PATH_MIN_PX, PATH_MAX_PX = 0.75, 5.0  # width of the weakest / strongest drawn path, times the UI scale
JITTER_HALF_LIFE_S = 20.0  # how fast the jitter scale forgets a past peak of the gradients
RATE_WINDOW_S = 2.5  # the steps/s shown is measured over this much of the worker's clock
HEALTHY_STEPS = 50  # steps without a blow-up after which a red guard message gives way
# Every layer's maps in one row (up to 24; more wrap into a block), sheets further apart than the explorer's
# and seen from higher up, so the paths between consecutive layers fan out visibly.
LAYOUT_STYLE = LayoutStyle(max_maps_per_row=24, layer_gap=80.0)
HOME_PITCH = math.radians(30.0)
LABEL_ROOM = 50  # window units left of the widest sheet for its name
LABEL_HALF_LINE = 10  # window units above the top sheet and below the lowest, for their names
FREE_MIN_FRACTION = 0.28  # the network gets the whole view when the columns would leave it less
# (at 1280x720 the columns leave 44 %, 33 % at a UI scale of 121 %: the network fits there, not under them)


def top_half(values: np.ndarray) -> np.ndarray:
    """Mask of the ceil(n/2) largest values, ties by index (features.training.trainer.top_half)."""
    order = np.argsort(-np.asarray(values, np.float64), kind="stable")
    mask = np.zeros(len(order), bool)
    mask[order[: (len(order) + 1) // 2]] = True
    return mask


class Geometry:
    """Everything about one layout that the paths, the jitter and the picking need (numpy, per layout)."""

    def __init__(self, layout: Layout) -> None:
        spec = layout.spec
        self.layout = layout
        self.grids = [layer for layer in spec.layers if layer.is_grid]
        self.convs = [layer for layer in spec.layers if layer.kind == "conv"]
        # Per grid layer: map centres (C, 3) and half extents (x, z), from the node positions.
        self.centres: dict[str, np.ndarray] = {}
        self.half: dict[str, tuple[float, float]] = {}
        for g in self.grids:
            c, h, w = g.shape
            pos = layout.positions[g.start : g.stop].reshape(c, h * w, 3)
            self.centres[g.name] = pos.mean(axis=1)
            lo, hi = pos[0].min(axis=0), pos[0].max(axis=0)
            half = layout.sizes[g.start] / 2
            self.half[g.name] = ((hi[0] - lo[0]) / 2 + half, (hi[2] - lo[2]) / 2 + half)
        # Offsets of each grid layer's maps in the snapshot's sums vector, and of each conv layer's
        # filters in its jitter vector.
        self.sum_at: dict[str, int] = {}
        at = 0
        for g in self.grids:
            self.sum_at[g.name] = at
            at += g.shape[0]
        self.conv_at: dict[str, int] = {}
        at = 0
        for cv in self.convs:
            self.conv_at[cv.name] = at
            at += cv.shape[0]
        self.n_filters = at
        # Jitter: the filter each node belongs to (its conv map or that map pooled), -1 for the rest.
        self.filter_of_node = np.full(spec.total_nodes, -1, np.int64)
        for cv in self.convs:
            k = cv.name[len("conv") :]
            for name in (cv.name, f"pool{k}"):
                try:
                    layer = spec.layer(name)
                except KeyError:
                    continue
                c = layer.shape[0]
                per = layer.count // c
                self.filter_of_node[layer.start : layer.stop] = self.conv_at[cv.name] + np.repeat(
                    np.arange(c), per
                )
        filt = np.arange(self.n_filters)
        phase_of_filter = (filt * 0.6180339887) % 1.0  # golden-ratio spread: neighbours differ
        has = self.filter_of_node >= 0
        self.node_phase = np.where(has, phase_of_filter[np.maximum(self.filter_of_node, 0)], 0.0).astype(
            np.float32
        )
        # Paths: source point, target point, where the source and target maps' sums sit in the sums
        # vector, and where the pair's weight sits in the pairs vector (-1: a pooling path, weight 1).
        p0, p1, dst, dst_layer, src, pair = [], [], [], [], [], []
        self.pair_at: dict[str, int] = {}
        at = 0
        for i, layer in enumerate(spec.layers):
            if layer.kind == "conv" and i > 0:
                self.pair_at[layer.name] = at
                at += layer.shape[0] * spec.layers[i - 1].shape[0]
        layers = spec.layers
        for i in range(1, len(layers)):
            a, b = layers[i - 1], layers[i]
            if not (a.is_grid and b.is_grid):
                continue
            ca, cb = self.centres[a.name], self.centres[b.name]
            if b.kind == "conv":
                ia, ib = np.meshgrid(np.arange(len(ca)), np.arange(len(cb)), indexing="ij")
                ia, ib = ia.ravel(), ib.ravel()
            elif b.kind == "pool" and len(ca) == len(cb):
                ia = ib = np.arange(len(cb))
            else:
                continue
            p0.append(ca[ia])
            p1.append(cb[ib])
            dst.append(self.sum_at[b.name] + ib)
            src.append(self.sum_at[a.name] + ia)
            conv = b.kind == "conv"
            pair.append(self.pair_at[b.name] + ib * len(ca) + ia if conv else np.full(len(ib), -1))
            dst_layer.append(np.full(len(ib), self.grids.index(b)))
        self.path_p0 = np.concatenate(p0) if p0 else np.zeros((0, 3), np.float32)
        self.path_p1 = np.concatenate(p1) if p1 else np.zeros((0, 3), np.float32)
        self.path_dst = np.concatenate(dst) if dst else np.zeros(0, np.int64)
        self.path_src = np.concatenate(src) if src else np.zeros(0, np.int64)
        self.path_pair = np.concatenate(pair) if pair else np.zeros(0, np.int64)

    def sums_vector(self, snap: TrainSnapshot) -> np.ndarray:
        return np.concatenate([snap.filter_sums[g.name] for g in self.grids]).astype(np.float64)

    def pairs_vector(self, snap: TrainSnapshot) -> np.ndarray:
        """Every conv layer's (C_out, C_in) kernel sums, flat in the order of path_pair."""
        flat = [snap.pair_weights[name].reshape(-1) for name in self.pair_at]
        return np.concatenate(flat).astype(np.float64) if flat else np.zeros(0)

    def path_contributions(self, sums: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """|weight x input| of every path: the source map's sum (its input) times the pair's kernel sum
        (a pooling path's weight is 1).  Summing a kernel first is exact for the map's total away from
        its borders: sum over the output of w * x = sum(w) * sum(x) there."""
        known = pairs[np.maximum(self.path_pair, 0)] if len(pairs) else np.ones(len(self.path_pair))
        weight = np.where(self.path_pair >= 0, known, 1.0)
        c = np.abs(weight * sums[self.path_src])
        return np.where(np.isfinite(c), c, 0.0)

    def sample_paths(
        self, widths: np.ndarray, contributions: np.ndarray, show_all: bool = False
    ) -> tuple[np.ndarray, int, int]:
        """The hover edges' rule for the paths that `widths` draws: all of them up to EXACT_EDGES, else
        that many chosen by |weight x input| (the strongest always; sample_edges).  Returns the widths
        with the others set to 0, how many are drawn and how many there were."""
        candidates = np.flatnonzero(widths > 0)
        pick = sample_edges(len(candidates), contributions[candidates], show_all=show_all)
        if not pick.sampled:
            return widths, len(candidates), len(candidates)
        out = np.zeros_like(widths)
        kept = candidates[pick.keep]
        out[kept] = widths[kept]
        return out, len(kept), pick.total

    def path_widths(self, sums: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Pixel width of every path: 0 unless its target map is in the top half of its layer."""
        visible = np.zeros(len(sums), bool)
        norm = np.ones(len(sums))
        for g in self.grids:
            at, c = self.sum_at[g.name], g.shape[0]
            s = sums[at : at + c]
            visible[at : at + c] = top_half(s)
            peak = float(np.max(s)) if c else 0.0
            norm[at : at + c] = peak if peak > 0 else 1.0
        v = np.clip(sums[self.path_dst] / norm[self.path_dst], 0.0, 1.0)
        w = (PATH_MIN_PX + (PATH_MAX_PX - PATH_MIN_PX) * v) * scale
        return np.where(visible[self.path_dst] & np.isfinite(w), w, 0.0).astype(np.float32)


class TrainScene:
    def __init__(self, config: TrainConfig | None = None, handle: TrainHandle | None = None) -> None:
        self.config = cfg = config or TrainConfig()
        st = TrainState(
            lr=cfg.lr,
            momentum=cfg.momentum,
            batch_size=cfg.batch_size,
            weight_decay=cfg.weight_decay,
            optimizer=cfg.optimizer,
            seed=cfg.seed,
            colormap=cfg.colormap,
            jitter_gain=cfg.jitter_gain,
            show_frame_time=cfg.show_frame_time,
            embed_include_train=cfg.embed_include_train,
        )
        counts = tuple(sorted({1000, 5000, 20_000, int(cfg.embed_images)}))
        st.embed = EmbedPanelState(
            refresh_every=cfg.embed_refresh_every, image_counts=counts, image_count=int(cfg.embed_images)
        )
        self.state = st
        self.ui_scale = cfg.ui_scale
        self.handle = handle or TrainHandle(
            cfg.dataset,
            cfg.data_dir,
            hyper=cfg.hyper(),
            widths=cfg.widths,
            val_every=cfg.val_every,
            publish_hz=cfg.publish_hz,
            start_paused=cfg.start_paused,
            download=cfg.download,
            data_mirror=cfg.data_mirror,
        )
        self.camera = OrbitCamera()
        self.controller = OrbitController(self.camera, CLICK_SLOP * self.ui_scale)
        self.panels = PanelLayout()  # where the panels go; what they leave free for the network
        self._fit_reflows = -1  # the panels' resize count at the last fit
        self.spec: NetSpec | None = None
        self.geometry: Geometry | None = None
        self.snapshot: TrainSnapshot | None = None
        self.time = 0.0  # seconds of animation (jitter)
        self.jitter_scale = 0.0  # decaying peak of the per-filter gradient magnitudes
        self.uploads = 0  # snapshots uploaded to the GPU (tests)
        self._spec_version = 0
        self._sent: dict[int, str] = {}  # command id -> command name, until answered
        self._notices_seen = 0
        self._notice_step = 0  # step when the newest red message (a blow-up) arrived
        self._rate_samples: deque[tuple[float, int]] = deque()  # (worker clock, step) per snapshot
        self._cycle_s = 0.0  # seconds since the monitored image last changed by cycling
        self._fit_pending = False
        self._new_snapshot = False
        self._jitter_nodes: np.ndarray | None = None
        self._path_widths: np.ndarray | None = None  # as drawn: past EXACT_EDGES a sample (sample_paths)
        self._path_raw: tuple[np.ndarray, np.ndarray] | None = None  # each path's width, |weight x input|
        self._view_key: tuple | None = None  # the view settings last uploaded (jitter, paths, selection)
        self.view: NetworkView | None = None  # renderer, outline and picker (made in on_enter)
        self._filters_size = (1, 1)
        self.ctx = None
        self.embedding = EmbedView(st)

    # -- lifecycle ------------------------------------------------------------------------------------
    def on_enter(self, fc: FrameContext) -> None:
        self.ctx = fc.ctx
        self.app = fc.app
        self._background = Background(self.ctx)
        self._paths = PathBatch(self.ctx)
        self.view = NetworkView(self.ctx)
        self._sample_tex = UiTexture(self.ctx, (32, 32), 3, smooth=False)
        self._filters_tex: UiTexture | None = None
        self.handle.launch()
        self.embedding.on_enter(self.ctx)
        # The worker gets a core of its own while this scene runs (engine/cores.py): paused or not, so
        # frame times compare like with like.
        self._cores = CoreReservation(1) if self.config.reserve_core else None
        self._cores_pids: tuple[int | None, int | None] = (None, None)

    def on_exit(self) -> None:
        self.embedding.on_exit()  # first: its t-SNE job may hold the images job's vectors
        self.handle.close()
        if self._cores is not None:
            self._cores.release()
        self.view.release()
        self._paths.release()
        self._background.release()
        self._sample_tex.release()
        if self._filters_tex is not None:
            self._filters_tex.release()
            self._filters_tex = None

    def reserve_core(self, on: bool) -> None:
        """Keep the render threads off a core for the worker (the default), or let them use every core."""
        if on and self._cores is None:
            self._cores, self._cores_pids = CoreReservation(1), (None, None)  # applied by the next frame
        elif not on and self._cores is not None:
            self._cores.release()
            self._cores = None

    # -- per frame ------------------------------------------------------------------------------------
    def gui(self) -> None:
        s = self.ui_scale
        io = imgui.get_io()
        presenting = bool(getattr(self.app, "presentation", False))
        if presenting != self.panels.presentation:
            self._fit_pending = True  # presentation mode on or off: frame the network in the new room
        self.panels.begin_frame((io.display_size.x, io.display_size.y), s, presenting)
        gui_left(self.state, self._sample_tex.ref if self.snapshot is not None else None, s, self.panels)
        tex = self._filters_tex.ref if self._filters_tex is not None else None
        prefs = getattr(self.app, "prefs", None)
        view_row = (lambda: gui_view_row(prefs)) if prefs is not None else None
        gui_right(self.state, tex, self._filters_size, s, self.panels, view_row)
        gui_embedding(self.state, self.embedding.textures(), s, self.panels)
        self.app.show_frame_time = self.state.show_frame_time

    def update(self, inp: InputState, dt: float, ui_mouse: bool, ui_keyboard: bool) -> None:
        self.time += dt
        st = self.state
        if not ui_keyboard and inp.key_pressed(glfw.KEY_SPACE):
            st.request("pause" if st.running else "resume")
        self._cycle_monitor(dt)
        self._send_requests()
        self._watch_worker()
        snap = self.handle.poll()
        if self.handle.spec_version != self._spec_version and self.handle.spec is not None:
            self._spec_version = self.handle.spec_version
            self._on_new_spec(self.handle.spec, self.handle.info)
        if snap is not None and snap.spec_version == self._spec_version:
            self._take_snapshot(snap, dt)
        self._read_replies()
        self.embedding.update(self.handle)
        self._steer_camera(inp, ui_mouse, ui_keyboard)

    def upload(self) -> None:
        self.embedding.upload()
        r = self.view.renderer
        if r is None:
            return
        st = self.state
        view_key = (
            st.show_jitter,
            st.show_paths,
            st.show_all_paths,
            st.selected,
            st.jitter_gain,
            self.ui_scale,
            st.color_range,
        )
        if self._new_snapshot or view_key != self._view_key:
            snap = self.snapshot
            range_changed = self._view_key is None or view_key[-1] != self._view_key[-1]
            if snap is not None and (self._new_snapshot or range_changed):
                r.set_activations(*self.colour_values())
            if self._new_snapshot:
                self._sample_tex.upload(self.sample_image())
                self._upload_filters(snap)
                self.uploads += 1
            jitter = self.jitter_amplitudes() if st.show_jitter else None
            r.nodes.set_jitter(jitter, self.geometry.node_phase if jitter is not None else None)
            g = self.geometry
            if self._path_raw is not None:
                picked = g.sample_paths(*self._path_raw, st.show_all_paths)
                self._path_widths, st.paths_drawn, st.paths_total = picked
            if st.show_paths and self._path_widths is not None and len(g.path_dst):
                self._paths.set_segments(g.path_p0, g.path_p1, self._path_widths, PATH_RGBA)
            else:
                self._paths.clear()
            self._upload_outline()
            self._new_snapshot = False
            self._view_key = view_key
        r.nodes.jitter_time = self.time

    def draw(self, viewport: tuple[int, int]) -> None:
        settling = self._fit_reflows != self.panels.reflows or self.panels.reflowing
        if settling and self.controller.at_home():
            self._fit_pending = True  # resized while at the home view: frame the network anew
        if self._fit_pending and self.geometry is not None:
            self._fit_pending = False
            self._fit(viewport)
        if self.view.renderer is None:
            self.ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
            self._background.draw(viewport)
            return
        self.view.draw(
            self.camera, viewport, RenderSettings(colormap=self.state.colormap), extra=(self._paths,)
        )

    # -- snapshot -> what is drawn ---------------------------------------------------------------------
    def display_values(self) -> np.ndarray:
        """Node values: activations, except the output layer shows class probabilities (softmax)."""
        values = self.snapshot.activations.copy()
        out = self.spec.layers[-1]
        logits = values[out.start : out.stop].astype(np.float64)
        if np.all(np.isfinite(logits)):
            e = np.exp(logits - logits.max())
            values[out.start : out.stop] = e / e.sum()
        return values

    def colour_values(self) -> tuple[np.ndarray, np.ndarray | None]:
        """What the node colours show under the chosen range: (values, per-layer ranges or None for the
        renderer's own min-max).  See state.RANGES."""
        values = self.display_values()
        mode = self.state.color_range
        if mode == "robust":
            return values, robust_ranges(as_dag(self.spec), values)
        if mode == "map":
            ones = np.tile(np.array([[0.0, 1.0]], np.float32), (len(self.spec.layers), 1))
            return per_map(as_dag(self.spec), values), ones
        return values, None

    def help_sections(self) -> tuple[HelpSection, ...]:
        """For the help overlay (F1 or ?)."""
        return HELP_SECTIONS

    def _cycle_monitor(self, dt: float) -> None:
        """With "cycle" on, the next held-out image every MONITOR_CYCLE_S seconds of training."""
        st = self.state
        if not st.monitor_cycle or not st.running or st.n_val <= 0:
            self._cycle_s = 0.0
            return
        self._cycle_s += dt
        if self._cycle_s >= MONITOR_CYCLE_S:
            self._cycle_s = 0.0
            st.request("set_monitor_index", index=(st.monitor_index + 1) % st.n_val)

    def sample_image(self) -> np.ndarray:
        """The monitored image as (32, 32, 3) floats in [0, 1] (grey images repeated to RGB)."""
        inp = self.spec.layers[0]
        img = self.snapshot.activations[inp.start : inp.stop].reshape(inp.shape)
        if img.shape[0] != 3:
            img = np.repeat(img[:1], 3, axis=0)
        img = img.transpose(1, 2, 0)
        if img.shape[:2] != (32, 32):
            img = np.resize(img, (32, 32, 3))
        return np.clip(img, 0.0, 1.0)

    def jitter_amplitudes(self) -> np.ndarray | None:
        """World-unit jitter per node, or None when nothing trembles (paused, no gradients yet)."""
        if self._jitter_nodes is None or not self.state.running:
            return None
        return self._jitter_nodes * float(self.state.jitter_gain)

    def background(self, dt: float) -> None:
        """While another scene is shown: the worker trains on, and its snapshots are still read for the
        counters and the charts (a straight line across the time away otherwise); the pictures wait."""
        self.time += dt
        self._watch_worker()
        snap = self.handle.poll()
        if snap is not None and snap.spec_version == self._spec_version and self.spec is not None:
            self.snapshot = snap
            self._new_snapshot = True  # drawn from on the first frame back
            self._take_stats(snap)

    def _take_snapshot(self, snap: TrainSnapshot, dt: float) -> None:
        self.snapshot = snap
        self._new_snapshot = True
        self._take_stats(snap)
        self._take_pictures(snap, dt)

    def _take_stats(self, snap: TrainSnapshot) -> None:
        """The snapshot's numbers: counters, the steps-a-second rate, the restored settings, the charts."""
        st, s = self.state, snap.stats
        st.running = not snap.paused
        # Steps a second over the last RATE_WINDOW_S of the worker's own clock (not the frame rate).
        clock, step = float(s["clock"]), int(s["step"])
        rates = self._rate_samples
        if rates and (step < rates[-1][1] or snap.paused):
            rates.clear()  # reset, load, guard restore or a pause: start counting again
        if not rates or step != rates[-1][1]:  # the clocks of step changes: no rounding at slow speeds
            rates.append((clock, step))
        while len(rates) > 2 and clock - rates[1][0] >= RATE_WINDOW_S:
            rates.popleft()
        if clock - rates[-1][0] > RATE_WINDOW_S:
            st.steps_per_s = 0.0  # no step for a while
        elif len(rates) >= 2 and rates[-1][0] - rates[0][0] >= 0.2:
            st.steps_per_s = (rates[-1][1] - rates[0][1]) / (rates[-1][0] - rates[0][0])
        if not s["ok"]:
            # The guard restored the weights (and the settings from before a suspect change): the
            # controls show what the worker now uses, not what blew up.  The lr is the one set, not the
            # optimizer's, which a warm-up after a layer edit holds lower for a while.
            st.lr, st.momentum = float(s["hyper_lr"]), float(s["opt_momentum"])
            st.weight_decay, st.batch_size = float(s["opt_weight_decay"]), int(s["batch_size"])
            st.optimizer = OPTIMIZERS[int(s["optimizer"])]
            self._notice_step = step
        elif st.message_is_error and st.running and step >= self._notice_step + HEALTHY_STEPS:
            st.message, st.message_is_error = f"training runs again (step {step:,})", False
        st.step = int(s["step"])
        st.epoch = s["epoch"]
        if s["ok"]:
            st.loss = s["loss"]
        st.loss_smooth = s["loss_smooth"]
        st.acc_smooth = s["acc_smooth"]
        st.val_acc = s["val_acc"]
        st.images_per_s = s["images_per_s"]
        st.monitor_index = int(s["monitor_index"])
        st.lr_now, st.warm_left = float(s["opt_lr"]), int(s["warm_left"])
        st.clip_norm = float(s["clip_norm"])
        st.monitor_label = int(s["monitor_label"])
        st.n_val = int(s["n_val"])
        out = self.spec.layers[-1]
        logits = snap.activations[out.start : out.stop]
        if np.all(np.isfinite(logits)):
            st.monitor_pred = int(np.argmax(logits))
            e = np.exp(logits - logits.max())
            st.monitor_prob = float(e[st.monitor_pred] / e.sum())
        # Charts: every step's batch loss from the history rows, the rest once per snapshot.
        c = st.charts
        rows = snap.history[snap.history[:, 0] > c.loss.last_x]
        if len(rows):
            c.loss.append(rows[:, 0], rows[:, 1])
        if st.step > c.loss_smooth.last_x and math.isfinite(st.loss_smooth):
            c.loss_smooth.append(st.step, st.loss_smooth)
            c.acc.append(st.step, st.acc_smooth)
            if math.isfinite(st.images_per_s) and st.running:
                c.rate.append(st.step, st.images_per_s)
        if math.isfinite(s["val_acc"]) and s["val_step"] > c.val_acc.last_x:
            c.val_acc.append(s["val_step"], s["val_acc"])

    def _take_pictures(self, snap: TrainSnapshot, dt: float) -> None:
        """What the snapshot changes in the view: gradient jitter per node and the activation paths."""
        # Jitter: per-filter magnitudes over a slowly forgetting peak, then per node.
        g = self.geometry
        jit = np.nan_to_num(np.asarray(snap.jitter, np.float64), nan=0.0, posinf=0.0)
        decay = 0.5 ** (max(dt, 0.0) / JITTER_HALF_LIFE_S)
        self.jitter_scale = max(float(jit.max(initial=0.0)), self.jitter_scale * decay)
        if self.jitter_scale > 0 and len(jit) == g.n_filters:
            rel = (jit / self.jitter_scale).astype(np.float32)
            idx = g.filter_of_node
            self._jitter_nodes = np.where(idx >= 0, rel[np.maximum(idx, 0)], 0.0).astype(np.float32)
        else:
            self._jitter_nodes = None
        sums = g.sums_vector(snap)
        contributions = g.path_contributions(sums, g.pairs_vector(snap))
        self._path_raw = (g.path_widths(sums, self.ui_scale), contributions)

    def _upload_filters(self, snap: TrainSnapshot) -> None:
        pic = filter_montage(snap.first_filters)
        size = (pic.shape[1], pic.shape[0])
        if self._filters_tex is None or self._filters_tex.size != size:
            if self._filters_tex is not None:
                self._filters_tex.release()
            self._filters_tex = UiTexture(self.ctx, size, 3, smooth=False)
            self._filters_size = size
        self._filters_tex.upload(pic)

    def _upload_outline(self) -> None:
        """Frame the selected filter's conv map and its pooled map."""
        sel, g = self.state.selected, self.geometry
        if sel is None or g is None or sel[0] >= len(g.convs) or sel[1] >= g.convs[sel[0]].shape[0]:
            self.view.outline_maps([], 0.0, OUTLINE_RGBA)
            return
        spec = g.layout.spec
        conv = g.convs[sel[0]]
        names = [n for n in (conv.name, "pool" + conv.name[len("conv") :]) if n in g.centres]
        self.view.outline_maps([(spec.index(n), sel[1]) for n in names], 2.5 * self.ui_scale, OUTLINE_RGBA)

    # -- worker ---------------------------------------------------------------------------------------
    def _send_requests(self) -> None:
        for name, kwargs in self.state.take_requests():
            cmd_id = self.handle.command(name, **kwargs)
            self._sent[cmd_id] = name

    def _read_replies(self) -> None:
        st = self.state
        for cmd_id in [i for i in self._sent if i in self.handle.replies]:
            name = self._sent.pop(cmd_id)
            ok, text = self.handle.replies[cmd_id]
            if name == "resume" and ok and st.message_is_error and not st.message.startswith("resumed"):
                st.message = "resumed; " + st.message  # feedback, kept red until it runs healthily
                self._notice_step = st.step
            elif not ok or name not in ("pause", "resume", "set_hyper", "set_monitor_index"):
                st.message, st.message_is_error = text, not ok
        if self.handle.messages_received != self._notices_seen:  # a NaN pause and the like
            self._notices_seen = self.handle.messages_received
            st.message, st.message_is_error = self.handle.message, True

    def _watch_worker(self) -> None:
        st, h = self.state, self.handle
        if h.check():
            st.worker_restarts = h.restarts
            self._sent.clear()  # the dead process will never answer them
            self.embedding.on_worker_restart()
            # Kept after the new worker is up (error clears then): the weights are fresh from the seed.
            st.message, st.message_is_error = h.error or "", True
        st.error = h.error
        st.stale = h.stale  # the Training panel marks its images/s out of date
        st.activity = h.activity() or ""
        st.progress = h.progress  # the data set loading (a download): shown in the Training panel
        pids = (h.pid, self.embedding.embed.pid)
        if self._cores is not None and pids != self._cores_pids:  # (re)started: the worker gets its core
            self._cores_pids = pids
            self._cores.apply([h.pid], narrow=[pids[1]])
        if h.spec is None:
            st.status = "starting the training process (importing torch, loading the data)..."

    def _on_new_spec(self, spec: NetSpec, info: dict) -> None:
        st = self.state
        first = self.spec is None
        self.spec = spec
        layout = build_layout(spec, LAYOUT_STYLE)
        self.geometry = Geometry(layout)
        self.view.show(layout)
        self.snapshot = None
        self._jitter_nodes = None
        self._path_widths = None
        self._path_raw = None
        self._view_key = None
        self._paths.clear()
        st.widths = [c.shape[0] for c in self.geometry.convs]
        st.nodes = spec.total_nodes
        st.classes = spec.classes
        st.dataset = info.get("dataset", "")
        st.dataset_source = info.get("source", "")
        st.dataset_note = info.get("note", "")
        arch = "-".join(map(str, st.widths))
        st.status = f"ReVACNN {arch}: {spec.total_nodes:,} nodes in {len(spec.layers)} layers"
        if st.selected is not None and (
            st.selected[0] >= len(st.widths) or st.selected[1] >= st.widths[st.selected[0]]
        ):
            st.selected = None
        reason = info.get("reason")
        if reason in ("reset", "load", "start"):
            st.charts.clear()
            self.jitter_scale = 0.0
        if reason in ("load", "start") and info.get("hyper"):
            hp = info["hyper"]
            st.lr, st.momentum = float(hp["lr"]), float(hp["momentum"])
            st.batch_size, st.weight_decay = int(hp["batch_size"]), float(hp["weight_decay"])
            st.optimizer, st.seed = hp["optimizer"], int(hp["seed"])
        st.new_layer_position = min(st.new_layer_position, len(st.widths))
        self.embedding.on_spec(spec, info, reason)
        if first or reason in ("start", "load"):
            self._fit_pending = True

    # -- camera and picking -------------------------------------------------------------------------
    def _fit(self, viewport: tuple[int, int]) -> None:
        """Fit the network between the two panel columns when they leave room, else the whole view.  Layer
        names are drawn left of their sheets: LABEL_ROOM more is kept clear on the left."""
        scale = viewport[0] / max(self.app.ui.display_width, 1.0)  # framebuffer pixels per window unit
        r = self.panels.free(FREE_MIN_FRACTION, reserve_left=LABEL_ROOM)
        # A name is centred on its sheet's row: half a line of it reaches above the top sheet (in a free area
        # above the Embedding band the fit is height-bound, and "output" touched the window's top edge).
        pad = min(LABEL_HALF_LINE * self.ui_scale, r.h / 4)
        free = to_framebuffer(Rect(r.x, r.y + pad, r.w, r.h - 2 * pad), (scale, scale))
        self.controller.fit(self.geometry.layout.bounds, free, viewport, margin=0.04, pitch=HOME_PITCH)
        self._fit_reflows = self.panels.reflows

    def _steer_camera(self, inp: InputState, ui_mouse: bool, ui_keyboard: bool) -> None:
        if self.state.reset_camera or (not ui_keyboard and inp.key_pressed(glfw.KEY_F)):
            self.state.reset_camera = False
            self._fit_pending = True
        w, h = inp.framebuffer_size
        for click in self.controller.update(inp, ui_mouse):
            self.pick(click.x_fb, click.y_fb, w, h)

    def pick(self, px: float, py: float, w: int, h: int) -> tuple[int, int] | None:
        """Select the filter whose conv (or pooled) map is under framebuffer pixel (px, py)."""
        if self.geometry is None:
            return None
        hit = self.view.pick_map(self.camera, px, py, (w, h))
        name = self.spec.layers[hit[0]].name if hit is not None else ""
        conv = "conv" + name[4:] if name.startswith(("conv", "pool")) else None
        names = [c.name for c in self.geometry.convs]
        if conv not in names:
            self.state.selected = None
            return None
        self.state.selected = (names.index(conv), hit[1])
        return self.state.selected
