"""NetworkView: the GPU side and the picking of one laid-out network, shared by every scene.

Owns, for one Layout: the SceneRenderer (nodes, the arcs of skip connections, labels), an EdgeBatch
(the focus node's incoming edges), a PathBatch for a selection outline (a map's frame, drawn over
everything) and the Picker (engine/graph/picking.py, the one picking implementation: nodes, feature
maps, layers).  `show` takes a new network (renderer and picker rebuilt), `set_layout` the same
network laid out again (layers hidden or shown; the arcs follow the layout).  `draw` draws nodes and
arcs, then edges, then any extra path batches the scene owns (the training scene's paths), then the
outline.  Knows no particular network.

Whoever creates a NetworkView releases it (`release`); the scene creates it in on_enter.
"""

from __future__ import annotations

import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.gpu import colormaps
from convscope.engine.gpu.edges import EdgeBatch
from convscope.engine.gpu.paths import PathBatch
from convscope.engine.gpu.scene_renderer import RenderSettings, SceneRenderer
from convscope.engine.graph.layout import Layout
from convscope.engine.graph.picking import Picker
from convscope.engine.graph.spec import NetSpec


class NetworkView:
    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.layout: Layout | None = None
        self.renderer: SceneRenderer | None = None
        self.picker: Picker | None = None
        self.edges = EdgeBatch(ctx)
        self.outline = PathBatch(ctx)
        self.picks = 0  # picks made (tests, benchmarks)

    @property
    def spec(self) -> NetSpec | None:
        return self.layout.spec if self.layout is not None else None

    def show(self, layout: Layout) -> None:
        """A new network: renderer and picker built for `layout`; old edges and outline dropped."""
        if self.renderer is not None:
            self.renderer.release()
        self.layout = layout
        self.renderer = SceneRenderer(self.ctx, layout)
        self.picker = Picker(layout, self.renderer.nodes.style)
        self.edges.clear()
        self.outline.clear()

    def set_layout(self, layout: Layout) -> None:
        """The same network laid out again (a layer hidden or shown)."""
        if self.renderer is None or self.spec is not layout.spec:
            self.show(layout)
            return
        self.layout = layout
        self.renderer.set_layout(layout)
        self.picker.set_layout(layout)

    # -- picking --------------------------------------------------------------------------------

    def pick(
        self, camera: OrbitCamera, x: float, y: float, viewport, visible=None, highlight: int = -1
    ) -> int:
        """The node drawn at framebuffer position (x, y), or -1."""
        if self.picker is None:
            return -1
        self.picks += 1
        return self.picker.pick(camera, x, y, viewport, visible, highlight)

    def pick_map(
        self, camera: OrbitCamera, x: float, y: float, viewport, visible=None
    ) -> tuple[int, int] | None:
        """The feature map (layer index, channel) at (x, y), or None."""
        if self.picker is None:
            return None
        self.picks += 1
        return self.picker.pick_map(camera, x, y, viewport, visible)

    def pick_layer(self, camera: OrbitCamera, x: float, y: float, viewport, visible=None) -> int | None:
        """The layer at (x, y), or None."""
        if self.picker is None:
            return None
        self.picks += 1
        return self.picker.pick_layer(camera, x, y, viewport, visible)

    # -- outline --------------------------------------------------------------------------------

    def outline_maps(self, maps: list[tuple[int, int]], width_px: float, rgba, lift: float = 0.3) -> None:
        """Frame each (layer index, channel) map with four segments just above its plane; [] clears."""
        if not maps or self.layout is None:
            self.outline.clear()
            return
        starts, ends = [], []
        for i, ch in maps:
            layer = self.spec.layers[i]
            _, h, w = layer.shape
            base = layer.start + ch * h * w
            pos = self.layout.positions[base : base + h * w]
            half = self.layout.sizes[base : base + h * w, None] / 2
            (x0, _, z0), (x1, _, z1) = (pos - half).min(0), (pos + half).max(0)
            y = float(pos[:, 1].max()) + lift  # just above the plane, so the nodes never hide it
            corners = np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]], np.float32)
            starts.append(corners)
            ends.append(np.roll(corners, -1, axis=0))
        self.outline.set_segments(np.concatenate(starts), np.concatenate(ends), width_px, rgba)

    # -- drawing --------------------------------------------------------------------------------

    def draw(
        self,
        camera: OrbitCamera,
        viewport: tuple[int, int],
        settings: RenderSettings,
        edge_width: float | None = None,
        extra: tuple[PathBatch, ...] = (),
    ) -> None:
        """Nodes; the edges when `edge_width` (line width scale) is given; `extra` paths; the outline."""
        if self.renderer is None:
            return
        self.renderer.draw(camera, viewport, settings)
        w, h = viewport
        view, proj = camera.view_matrix(), camera.projection(w / max(h, 1))
        if edge_width is not None and self.edges.count:
            # Signed weights / contributions: the diverging map, centred on zero.
            self.edges.draw(view, proj, viewport, colormaps.DIVERGING, width_scale=edge_width)
        for paths in extra:
            paths.draw(view, proj, viewport, depth_test=True)
        if self.outline.count:
            self.outline.draw(view, proj, viewport, depth_test=False)

    def drop(self) -> None:
        """No network: the renderer and picker go (edges and outline stay allocated, empty)."""
        if self.renderer is not None:
            self.renderer.release()
        self.renderer = self.picker = self.layout = None
        self.edges.clear()
        self.outline.clear()

    def release(self) -> None:
        self.drop()
        self.edges.release()
        self.outline.release()
