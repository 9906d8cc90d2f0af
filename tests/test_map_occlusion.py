"""Far feature maps drawn opaque, near to far (NodeStyle.occlude): the same picture as blending every
map far to near, pixel for pixel, in a fitted deep net, in a view where one layer is partly near and
partly far (its maps split between the two passes), and with a highlighted node; and the opaque pass
really is taken where the maps are small on screen."""

import math

import numpy as np
import pytest
from convscope.engine.camera import OrbitCamera
from convscope.engine.gpu.frame import OffscreenTarget
from convscope.engine.gpu.nodes import CLOSED, MIXED, NodeBatch, NodeStyle
from convscope.engine.graph.layout import build_layout
from gl_helpers import gl_context, lenet_spec, resnet18_shaped_dag, smooth_activations

pytestmark = pytest.mark.gl
SIZE = (640, 360)


def frames(batch: NodeBatch, cam: OrbitCamera, acts: np.ndarray, highlight: int = -1) -> dict:
    """The frame drawn with occlusion on and off (same batch, same data)."""
    ctx = batch.ctx
    target = OffscreenTarget(ctx, *SIZE)
    out = {}
    try:
        batch.set_activations(acts)
        lo_hi = [[float(np.nanmin(acts[x.start : x.stop])), float(np.nanmax(acts[x.start : x.stop])) + 1e-3]
                 for x in batch.spec.layers]  # fmt: skip
        batch.set_ranges(np.array(lo_hi, np.float32))
        for occlude in (True, False):
            batch.style.occlude = occlude
            target.use()
            target.clear((0.0, 0.0, 0.0, 1.0))
            w, h = SIZE
            batch.draw(cam.view_matrix(), cam.projection(w / h), SIZE, highlight=highlight)
            ctx.finish()
            out[occlude] = target.read()
            if occlude:
                out["opaque"] = batch.last_opaque
    finally:
        batch.style.occlude = True
        target.release()
    return out


def map_node_px(layout, i: int, view: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """Node size in pixels at each map's nearest node of layer i (inf where a node is behind the eye)."""
    layer = layout.spec.layers[i]
    c = layer.shape[0]
    pos = layout.positions[layer.start : layer.stop].reshape(c, -1, 3)
    depth = (-(pos @ view[2, :3] + view[2, 3])).min(axis=1)
    size = float(layout.sizes[layer.start]) * proj[1, 1] * 0.5 * SIZE[1]
    return np.where(depth > 1e-6, size / np.maximum(depth, 1e-6), np.inf)


def differing(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 0).sum())


def test_fitted_resnet_shaped_net_is_drawn_opaque_and_looks_the_same():
    dag = resnet18_shaped_dag()
    layout = build_layout(dag)
    batch = NodeBatch(gl_context(), layout, NodeStyle())
    try:
        cam = OrbitCamera()
        cam.fit(*layout.bounds, SIZE[0] / SIZE[1])
        w, h = SIZE
        cover = batch.map_cover(cam.view_matrix(), cam.projection(w / h), SIZE)
        assert (cover[sorted(batch.map_layers)] == CLOSED).all(), cover
        acts = smooth_activations(dag, seed=4)
        got = frames(batch, cam, acts)
        assert got["opaque"] == len(batch.map_layers)
        lit = (got[True].max(axis=2) > 8).mean()
        assert lit > 0.01, f"only {lit:.1%} of the frame shows nodes"  # two columns, room for names: ~1.9 %
        n = differing(got[True], got[False])
        assert n == 0, f"{n} pixels differ between opaque near-to-far and blended far-to-near"
    finally:
        batch.release()


@pytest.mark.parametrize("highlight", [False, True], ids=["plain", "highlight"])
def test_a_layer_partly_near_splits_its_maps_and_looks_the_same(highlight):
    """LeNet's conv1 seen at a grazing angle from close by: its near maps show gaps, its far maps are
    closed; each map goes to one pass (maps.glsl decides per map), none is lost or drawn twice."""
    spec = lenet_spec()
    layout = build_layout(spec)
    batch = NodeBatch(gl_context(), layout)
    try:
        i = spec.index("conv1")
        cam = OrbitCamera()
        cam.fit(*layout.layer_bounds[i], SIZE[0] / SIZE[1], pitch=math.radians(8), yaw=math.radians(80))
        w, h = SIZE
        view, proj = cam.view_matrix(), cam.projection(w / h)
        # Find a distance where some conv1 maps are wholly under 2 px per node and others over.
        for scale in np.geomspace(0.2, 20.0, 80):
            cam.distance = scale * cam.scene_radius
            view = cam.view_matrix()
            px = map_node_px(layout, i, view, proj)
            if (px < 1.5).any() and (px > 2.5).any() and batch.map_cover(view, proj, SIZE)[i] == MIXED:
                break
        else:
            pytest.fail("no camera distance puts conv1 partly near, partly far")
        layer = spec.layers[i]
        node = layer.start + layer.count // 2 if highlight else -1
        got = frames(batch, cam, smooth_activations(spec, seed=5), highlight=node)
        assert got["opaque"] >= 1
        assert (got[True].max(axis=2) > 8).mean() > 0.02
        n = differing(got[True], got[False])
        assert n == 0, f"{n} pixels differ between the two ways of drawing"
    finally:
        batch.release()
