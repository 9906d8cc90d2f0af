"""One picker for every scene: explore, kiosk and train all ask engine/view.py's NetworkView, whose
Picker (engine/graph/picking.py, the exact CPU ray cast) names the node; for the same layout, camera and
pointer, the explorer's node, the kiosk's layer and the training scene's map all come from that node.
No scene casts rays of its own.  No worker is started (the scenes are only constructed).
Run: python -m pytest tests/test_scene_picking.py -q
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.config import AppConfig
from convscope.engine.graph.layout import build_layout
from convscope.engine.graph.picking import Picker
from convscope.engine.orbit import Pose
from convscope.engine.view import NetworkView
from convscope.scenes.explore.scene import ExploreScene
from convscope.scenes.kiosk.config import KioskConfig
from convscope.scenes.kiosk.scene import KioskScene
from convscope.scenes.train.scene import Geometry, TrainScene
from convscope.scenes.train.state import TrainConfig
from gl_helpers import gl_context, lenet_spec

W, H = 960, 540
ROOT = Path(__file__).resolve().parents[1]


def test_the_same_ray_names_the_same_node_in_all_three_scenes():
    ctx = gl_context()
    spec = lenet_spec()
    layout = build_layout(spec)
    home = OrbitCamera()
    home.fit(*layout.bounds, W / H)
    home.orbit(60, -30)
    views = []

    def view() -> NetworkView:
        v = NetworkView(ctx)
        v.show(layout)
        views.append(v)
        return v

    explore = ExploreScene(AppConfig())
    explore.view, explore.net.spec = view(), spec
    explore.state.layer_visible = [True] * len(spec.layers)
    kiosk = KioskScene(AppConfig(), KioskConfig())
    kiosk.inner.view, kiosk.inner.net.spec = view(), spec
    kiosk.inner.state.layer_visible = [True] * len(spec.layers)
    kiosk._viewport = (W, H)
    train = TrainScene(TrainConfig())
    train.view, train.spec, train.geometry = view(), spec, Geometry(layout)
    try:
        for cam in (explore.camera, kiosk.camera, train.camera):
            Pose.of(home).apply(cam)
            cam.scene_radius = home.scene_radius
        reference = Picker(layout, views[0].renderer.nodes.style)
        assert all(isinstance(v.picker, Picker) for v in views)
        rng = np.random.default_rng(3)
        pts = home.project(layout.positions, W, H)
        inside = np.flatnonzero(np.isfinite(pts).all(1) & (pts[:, 0] > 2) & (pts[:, 0] < W - 2))
        hits = misses = 0
        for node in rng.choice(inside, 300, replace=False):
            x, y = pts[node]
            want = reference.pick(home, x, y, (W, H))
            assert explore.pick(x, y, (W, H)) == want
            if want < 0:
                misses += 1
                continue
            hits += 1
            layer = spec.layers[int(layout.layer_index[want])]
            assert kiosk.pick_layer(x, y) == spec.index(layer.name)
            got = train.pick(x, y, W, H)
            if layer.kind in ("conv", "pool"):
                c, h, w = layer.shape
                convs = [g.name for g in train.geometry.convs]
                assert got == (convs.index("conv" + layer.name[4:]), (want - layer.start) // (h * w))
            elif layer.kind != "input":
                assert got is None
        assert hits > 200, (hits, misses)
    finally:
        for v in views:
            v.release()


def test_no_scene_casts_rays_of_its_own():
    """Picking lives in engine/graph/picking.py only: no scene asks the camera for a ray."""
    for path in (ROOT / "scenes").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"camera\.ray\(|\.ray\(px|direction\[1\]", text), path
