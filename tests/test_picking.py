"""Picking (engine/graph/picking.py) is exact: the node it names is the node the GPU drew there.

Pure part: every on-screen node centre picks its own node after orbit / zoom / pan; a point in
the gap between two nodes picks nothing up close and the nearer node far away (where the shader
grows nodes to fill their cells).  GL part: the real NodeBatch is drawn over black, all nodes lit,
and the pick at each sampled pixel centre must say "a node" exactly where a node was drawn; then
the picked node alone is lit and must be the one under that pixel.  Run:
python -m pytest tests/test_picking.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
from convscope.engine.camera import OrbitCamera
from convscope.engine.graph.layout import build_layout
from convscope.engine.graph.picking import Picker, PickStyle
from gl_helpers import gl_context, lenet_spec, mlp_spec

W, H = 640, 400


def camera_poses(layout):
    """(name, camera) after the moves a user makes: home, orbit, zoom toward a point, pan, far out."""
    home = OrbitCamera()
    home.fit(*layout.bounds, W / H)
    poses = [("home", home)]
    cam = OrbitCamera()
    cam.fit(*layout.bounds, W / H)
    cam.orbit(170, -40)
    poses.append(("orbit", cam))
    cam = OrbitCamera()
    cam.fit(*layout.bounds, W / H)
    cam.zoom(9, (-0.25, -0.35), W / H)
    poses.append(("zoom", cam))
    cam = OrbitCamera()
    cam.fit(*layout.bounds, W / H)
    cam.orbit(-90, 60)
    cam.zoom(4, (0.1, 0.2), W / H)
    cam.pan(120, -50, H)
    poses.append(("orbit-zoom-pan", cam))
    cam = OrbitCamera()
    cam.fit(*layout.bounds, W / H)
    cam.zoom(-6)
    poses.append(("far", cam))
    return poses


def on_screen(cam, layout, margin=2.0):
    pts = cam.project(layout.positions, W, H)
    ok = np.isfinite(pts).all(axis=1)
    ok &= (pts[:, 0] > margin) & (pts[:, 0] < W - margin) & (pts[:, 1] > margin) & (pts[:, 1] < H - margin)
    return pts, np.flatnonzero(ok)


def resnet_dag():
    """A traced network's Dag (residual adds, 1x1 shortcuts, a global pool): every layer is pickable."""
    from pathlib import Path

    import torch
    from convscope.models.loader import load_model
    from convscope.models.trace import trace

    torch.manual_seed(0)
    model = load_model(f"{Path(__file__).parent / 'nets' / 'small_resnet.py'}:SmallResNet")
    return trace(model, (3, 32, 32)).dag


@pytest.mark.parametrize("make", [lenet_spec, mlp_spec, resnet_dag])
def test_node_centres_pick_their_node_after_camera_moves(make):
    layout = build_layout(make())
    picker = Picker(layout)
    rng = np.random.default_rng(0)
    for name, cam in camera_poses(layout):
        pts, ids = on_screen(cam, layout)
        assert len(ids) > 20, name
        sample = rng.choice(ids, min(400, len(ids)), replace=False)
        eye = cam.eye
        wrong = []
        for node in sample:
            got = picker.pick(cam, *pts[node], (W, H))
            if got != node:
                # Only a node nearer the eye may cover another's centre (layers seen edge-on).
                if got < 0 or np.linalg.norm(layout.positions[got] - eye) >= np.linalg.norm(
                    layout.positions[node] - eye
                ):
                    wrong.append((int(node), got))
        assert not wrong, f"{name}: centre of node -> picked {wrong[:10]}"


def test_between_two_nodes():
    spec = lenet_spec()
    layout = build_layout(spec)
    picker = Picker(layout)
    conv1 = spec.layer("conv1")
    a = conv1.start + 14 * 28 + 10  # (y 14, x 10) and its right neighbour
    b = a + 1
    pa, pb = layout.positions[a].astype(float), layout.positions[b].astype(float)
    # Up close a node is 0.8 of its 1.0 pitch: the middle 20 % of the way is background.
    near = OrbitCamera()
    near.fit(*layout.bounds, W / H)
    near.target = (pa + pb) / 2
    near.distance = 12.0
    for f, want in ((0.3, a), (0.45, -1), (0.5, -1), (0.55, -1), (0.7, b)):
        p = near.project(pa + f * (pb - pa), W, H)[0]
        assert picker.pick(near, *p, (W, H)) == want, (f, want)
    # Far away the shader grows nodes to fill their cells: no gap, the nearer node wins.
    far = OrbitCamera()
    far.fit(*layout.bounds, W / H)
    far.zoom(-3)
    for f, want in ((0.2, a), (0.45, a), (0.55, b), (0.8, b)):
        p = far.project(pa + f * (pb - pa), W, H)[0]
        assert picker.pick(far, *p, (W, H)) == want, (f, want)
    # Outside the window, and hidden layers, pick nothing.
    p = near.project(pa, W, H)[0]
    assert picker.pick(near, -5, 10, (W, H)) == -1
    hidden = [layer.name != "conv1" for layer in spec.layers]
    assert picker.pick(near, *p, (W, H), visible=hidden) == -1
    assert picker.pick(near, *p, (W, H), visible=None) == a


def test_pick_style_matches_node_style():
    """The picker must know what NodeBatch draws: same defaults as NodeStyle."""
    from convscope.engine.gpu.nodes import NodeStyle

    node, pick = NodeStyle(), PickStyle()
    for f in ("corner", "size_scale", "flat", "close_gaps"):
        assert getattr(node, f) == getattr(pick, f), f


# -- against the rendered frame ---------------------------------------------------------------------


def render_nodes(ctx, batch, target, cam, acts, mode, highlight=-1):
    """Nodes only, grayscale over black, colour = activation (0 black, 1 white)."""
    batch.set_activations(acts)
    batch.set_ranges(np.tile(np.array([0.0, 1.0], np.float32), (len(batch.spec.layers), 1)))
    target.use()
    target.clear((0.0, 0.0, 0.0, 1.0))
    batch.draw(
        cam.view_matrix(), cam.projection(W / H), (W, H), colormap="grayscale", mode=mode, highlight=highlight
    )
    ctx.finish()
    return target.read()


@pytest.mark.gl
@pytest.mark.parametrize(
    ("make", "mode", "flat"),
    [
        (lenet_spec, "quads", "grids"),
        (lenet_spec, "auto", "grids"),
        (mlp_spec, "auto", "grids"),
        (lenet_spec, "quads", "none"),
    ],
)
def test_picks_agree_with_the_rendered_nodes(make, mode, flat):
    from convscope.engine.gpu.frame import OffscreenTarget
    from convscope.engine.gpu.nodes import NodeBatch, NodeStyle

    ctx = gl_context()
    spec = make()
    layout = build_layout(spec)
    style = NodeStyle(flat=flat)
    batch = NodeBatch(ctx, layout, style)
    target = OffscreenTarget(ctx, W, H)
    picker = Picker(layout, style)
    rng = np.random.default_rng(5)
    ones = np.ones(spec.total_nodes, np.float32)
    try:
        for name, cam in camera_poses(layout)[:4]:
            hl = int(rng.choice(on_screen(cam, layout, 20)[1]))  # a highlighted node, with its ring
            frame = render_nodes(ctx, batch, target, cam, ones, mode, hl)
            # Feature maps antialias node edges and sub-pixel gaps by coverage: a fully covered pixel
            # must pick its node and an empty one nothing; partly covered ones may go either way.
            lum = frame.max(axis=2)
            drawn = lum > 235
            decided = drawn | (lum < 20)
            dark = render_nodes(ctx, batch, target, cam, 0 * ones, mode, hl)  # only the ring is lit
            ys, xs = np.mgrid[1:H:4, 1:W:4]
            ys, xs = ys.ravel(), xs.ravel()
            picks = np.array(
                [
                    picker.pick(cam, x + 0.5, y + 0.5, (W, H), highlight=hl)
                    for x, y in zip(xs, ys, strict=True)
                ]
            )
            hit = picks >= 0
            disagree = np.flatnonzero((hit != drawn[ys, xs]) & decided[ys, xs])
            n_drawn = int(drawn[ys, xs].sum())
            assert n_drawn > 150, f"{name}: only {n_drawn} node pixels sampled"
            # Only a pixel centre on a square's very edge may go either way, and a map rounds its
            # node corners only once the gap between them spans pixels (a hole otherwise).
            assert len(disagree) <= max(2, 0.006 * n_drawn), (
                f"{name}: {len(disagree)} of {n_drawn} sampled node pixels disagree, e.g. "
                f"{[(int(xs[i]), int(ys[i]), int(picks[i])) for i in disagree[:5]]}"
            )
            # The picked node is the one drawn there: light it alone and look.  (Pixels whose
            # 3x3 neighbourhood is all one node, so an edge pixel cannot blur the verdict.)
            solid = [
                i
                for i in np.flatnonzero(hit)
                if drawn[max(ys[i] - 1, 0) : ys[i] + 2, max(xs[i] - 1, 0) : xs[i] + 2].all()
            ]
            for i in rng.choice(solid, min(8, len(solid)), replace=False):
                one = np.zeros(spec.total_nodes, np.float32)
                one[picks[i]] = 1.0
                lit = render_nodes(ctx, batch, target, cam, one, mode, hl)
                px = lit[ys[i], xs[i]]
                assert px.max() > 100, f"{name}: pixel ({xs[i]}, {ys[i]}) is not node {picks[i]}"
                if picks[i] != hl:
                    assert dark[ys[i], xs[i]].max() == 0, f"{name}: ({xs[i]}, {ys[i]}) is the ring of {hl}"
    finally:
        target.release()
        batch.release()
