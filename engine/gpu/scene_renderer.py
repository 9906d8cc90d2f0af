"""SceneRenderer: one frame of a network — background, nodes, arcs, labels — for one layout.

The scene owns a SceneRenderer per loaded network and calls, per frame:
    renderer.set_activations(acts)            # only when a new result came in
    renderer.draw(camera, (w, h), settings)   # into whatever framebuffer is bound
Everything GL-side lives here and below; settings are a plain dataclass the UI edits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import moderngl
import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.gpu.arcs import ArcBatch
from convscope.engine.gpu.background import Background, BackgroundStyle
from convscope.engine.gpu.label_placement import NameTag, place_names, project
from convscope.engine.gpu.labels import LabelBatch
from convscope.engine.gpu.nodes import NodeBatch, NodeStyle
from convscope.engine.gpu.normalize import all_ranges
from convscope.engine.graph.explain import class_names, output_layer
from convscope.engine.graph.layout import Layout
from convscope.engine.graph.spec import NetSpec, as_dag

NAME_SCALE = 0.8  # layer names' text size, against the class labels' 1.0


@dataclass
class RenderSettings:
    colormap: str = "harley"  # one of engine.gpu.colormaps.NAMES
    normalize: str = "layer"  # colour range per "layer" or "global" (see normalize.py)
    node_mode: str = "auto"  # "quads", "points", or "auto": points for layers whose nodes are small on
    # screen (about 1.3-1.4x faster on llvmpipe, same picture), quads up close; see tools/bench_render.py
    highlight: int = -1  # node id with a white outline (hover); -1 for none
    visible: tuple[bool, ...] | None = None  # per layer; None shows all
    show_class_labels: bool = True  # "0".."9" above the output nodes (while they have room side by side)
    show_layer_names: bool = True  # layer names beside each layer, where the view leaves them room
    label_scale: float = 1.0  # text size multiplier
    label_region: tuple[int, int, int, int] | None = None  # where layer names may go: x, y, w, h in
    # framebuffer pixels, y down (the part no panel covers); None: the whole view
    show_arcs: bool = True  # skip connections as arcs beside the layers, frames around opaque layers


def layer_title(layer) -> str:
    """The name drawn beside a layer; an opaque one adds the op it stands for (its frame marks it)."""
    if layer.kind == "opaque" and getattr(layer, "label", ""):
        return f"{layer.name} [{layer.label.split(' (')[0]}]"
    return layer.name


class SceneRenderer:
    def __init__(
        self,
        ctx: moderngl.Context,
        layout: Layout,
        background: BackgroundStyle | None = None,
        nodes: NodeStyle | None = None,
    ) -> None:
        self.ctx = ctx
        self.layout = layout
        self.background = Background(ctx, background)
        self.nodes = NodeBatch(ctx, layout, nodes)
        self.arcs = ArcBatch(ctx)
        self.arcs.set_layout(layout)
        self.labels = LabelBatch(ctx)
        self._ranges: dict[str, np.ndarray] | None = None
        self._label_key: tuple | None = None  # what the label buffer holds
        self._view_key: tuple | None = None  # the view and settings the names were placed for
        self.name_tags: list[NameTag] = []  # the layer names drawn in the last frame, with their boxes
        self._dag = as_dag(layout.spec)
        self._output = output_layer(self._dag)  # labelled with class names (None: no vector output)
        self._classes = class_names(self._dag, self._output.count) if self._output is not None else ()

    @property
    def spec(self) -> NetSpec:
        return self.layout.spec

    def set_layout(self, layout: Layout) -> None:
        """Re-layout of the same network (e.g. hidden layers closed up): rewrites node positions."""
        self.nodes.set_layout(layout)
        self.arcs.set_layout(layout)
        self.layout = layout
        self._label_key = self._view_key = None

    def set_activations(self, acts: np.ndarray, ranges: np.ndarray | None = None) -> None:
        """Upload a new result: float32 (N,) by node id.  Colour ranges are `ranges` (L, 2) when
        given, else computed here from the activations for both settings.normalize modes (so the
        caller may reuse its buffer right away)."""
        self.nodes.set_activations(acts)
        if ranges is not None:
            fixed = np.asarray(ranges, np.float32).reshape(-1, 2)
            self._ranges = {"layer": fixed, "global": fixed}
        else:
            self._ranges = all_ranges(self._dag, acts)

    def _update_labels(self, s: RenderSettings, view_proj: np.ndarray, viewport: tuple[int, int]) -> None:
        """Class labels over the output nodes, and every layer's name where this view leaves it room
        (label_placement.py); the label buffer is rewritten only when what is drawn changes."""
        visible = s.visible if s.visible is not None else (True,) * len(self.spec.layers)
        hl = s.highlight
        focus = int(self.layout.layer_index[hl]) if 0 <= hl < len(self.layout.layer_index) else -1
        view_key = (
            np.asarray(view_proj, np.float64).tobytes(),
            tuple(viewport),
            s.show_class_labels,
            s.show_layer_names,
            s.show_arcs,
            tuple(visible),
            focus if s.show_layer_names else -1,
            s.label_scale,
            s.label_region,
        )
        if view_key == self._view_key:
            return
        self._view_key = view_key
        atlas = self.labels.atlas
        texts, anchors, offsets, scales, colors, aligns, taken = [], [], [], [], [], [], []
        last = self._output
        if s.show_class_labels and last is not None and visible[self._dag.index(last.name)]:
            pos = self.layout.positions[last.start : last.stop]
            size = self.layout.sizes[last.start : last.stop]
            for name, p, sz in zip(self._classes, pos, size, strict=False):
                texts.append(name)
                # Anchored on the node's top-far edge, then lifted on screen: clear of the square
                # whether it faces the camera or lies in its layer's plane.
                anchors.append(p + np.array([0.0, 0.5 * sz, -0.5 * sz], np.float32))
                offsets.append((0.0, -14.0))
                scales.append(1.0)
                colors.append((1.0, 1.0, 1.0, 1.0))
                aligns.append("center")
            at = project(view_proj, np.array(anchors, np.float64).reshape(-1, 3), viewport)
            for a, name in zip(at, texts, strict=True):
                if not np.isnan(a).any():  # the layer names keep off them
                    x0, y0, x1, y1 = atlas.ink_box(name, "center")
                    k, up = s.label_scale, -14.0
                    taken.append((a[0] + k * x0, a[1] + k * (y0 + up), a[0] + k * x1, a[1] + k * (y1 + up)))
        self.name_tags = []
        if s.show_layer_names:
            titles = [layer_title(x) for x in self.spec.layers]
            self.name_tags = place_names(
                self.layout,
                titles,
                visible,
                view_proj,
                viewport,
                atlas.ink_box,
                scale=NAME_SCALE,
                ui_scale=s.label_scale,
                focus=focus,
                taken=taken,
                arcs=s.show_arcs,
                region=s.label_region,
            )
            for tag in self.name_tags:
                texts.append(tag.text)
                anchors.append(np.array(tag.anchor, np.float32))
                offsets.append(tag.offset)
                aligns.append(tag.align)
                scales.append(NAME_SCALE)
                colors.append((0.92, 0.94, 0.98, 0.9))
        where = np.round(np.array(anchors, np.float64).reshape(-1, 3), 4)
        label_key = (tuple(texts), where.tobytes(), tuple(map(tuple, offsets)), tuple(aligns))
        if label_key == self._label_key:
            return
        self._label_key = label_key
        self.labels.set_labels(
            texts, np.array(anchors, np.float32).reshape(-1, 3), offsets, colors, align=aligns, scale=scales
        )

    def draw(
        self, camera: OrbitCamera, viewport: tuple[int, int], settings: RenderSettings | None = None
    ) -> list[str]:
        """Clear and draw the whole frame into the bound framebuffer (its viewport as set); returns
        how each layer's nodes were drawn ("quads" / "points", "" where hidden)."""
        s = settings or RenderSettings()
        w, h = viewport
        view = camera.view_matrix()
        proj = camera.projection(w / max(h, 1))
        if self._ranges is not None:
            if s.normalize not in self._ranges:
                raise ValueError(f"unknown normalisation {s.normalize!r} (expected 'layer' or 'global')")
            self.nodes.set_ranges(self._ranges[s.normalize])
        self.nodes.set_visible(s.visible if s.visible is not None else [True] * len(self.spec.layers))
        if s.show_class_labels and not self.class_labels_fit(proj @ view, viewport, s.label_scale):
            s = replace(s, show_class_labels=False)  # zoomed out: they would run into one smudge
        self._update_labels(s, proj @ view, viewport)
        self.ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        self.background.draw(viewport)
        modes = self.nodes.draw(
            view, proj, viewport, colormap=s.colormap, highlight=s.highlight, mode=s.node_mode
        )
        if s.show_arcs:
            self.arcs.draw(view, proj, viewport)
        self.labels.draw(proj @ view, viewport, s.label_scale)
        return modes

    def class_labels_fit(self, view_proj: np.ndarray, viewport: tuple[int, int], scale: float = 1.0) -> bool:
        """Whether every output node is at least one class label's width (the widest, plus its outline)
        from its neighbours on screen; nodes behind the eye do not count."""
        last = self._output
        if last is None or last.count < 2:
            return True
        pos = self.layout.positions[last.start : last.stop].astype(np.float64)
        clip = pos @ view_proj[:3, :3].T + view_proj[:3, 3]
        w = pos @ view_proj[3, :3] + view_proj[3, 3]
        front = w > 1e-6
        if front.sum() < 2:
            return True
        px = clip[front, :2] / w[front, None] * 0.5 * np.asarray(viewport, np.float64)
        gaps = np.linalg.norm(np.diff(px, axis=0), axis=1)
        atlas = self.labels.atlas
        need = scale * (max(atlas.text_width(c) for c in self._classes) + 2 * atlas.outline_px)
        return bool(gaps.min() >= need)

    def release(self) -> None:
        self.labels.release()
        self.arcs.release()
        self.nodes.release()
        self.background.release()
