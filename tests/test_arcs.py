"""Arcs on screen (engine/gpu/arcs.py, headless Mesa via EGL): a traced small ResNet's skip connections
and a folded 80-layer network's column links are drawn where the layout puts them, in their kind's
colour, and vanish with show_arcs off; an opaque layer's frame is drawn around it.  The frames are
saved to /tmp/convscope_arcs_*.png for a human to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from convscope.engine.camera import OrbitCamera
from convscope.engine.gpu.arcs import ArcStyle, polyline_vertices
from convscope.engine.gpu.frame import OffscreenTarget
from convscope.engine.gpu.scene_renderer import RenderSettings, SceneRenderer, layer_title
from convscope.engine.graph.layout import build_layout
from gl_helpers import gl_context, smooth_activations
from layout_nets import deep_dag

gl = pytest.mark.gl
W, H = 1280, 720
NETS = Path(__file__).resolve().parent / "nets"


@pytest.fixture(scope="module")
def ctx():
    return gl_context()


def trace_net(spec: str, shape):
    pytest.importorskip("torch")
    from convscope.models.loader import load_model
    from convscope.models.trace import trace

    return trace(load_model(str(NETS / spec)), shape).dag


def frame(ctx, layout, name: str, **settings) -> tuple[np.ndarray, OrbitCamera]:
    r = SceneRenderer(ctx, layout)
    target = OffscreenTarget(ctx, W, H)
    try:
        r.set_activations(smooth_activations(layout.spec))
        cam = OrbitCamera()
        cam.fit(*layout.bounds, W / H)
        target.use()
        r.draw(cam, (W, H), RenderSettings(**settings))
        img = target.read()
        assert ctx.error == "GL_NO_ERROR"
    finally:
        target.release()
        r.release()
    if name:
        from PIL import Image

        Image.fromarray(img).save(f"/tmp/convscope_arcs_{name}.png")
    return img.astype(int), cam


def near(img: np.ndarray, px: np.ndarray, rgb, tol: int = 60, radius: int = 2) -> bool:
    """Some pixel within `radius` of px is within `tol` (per channel) of `rgb`."""
    x, y = int(px[0]), int(px[1])
    patch = img[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
    return bool((np.abs(patch - np.asarray(rgb)).max(axis=-1) <= tol).any())


def arc_samples(arc) -> np.ndarray:
    """Points on the vertical run of an arc, a quarter of it in from either end (away from the layers it
    joins and the names written beside them)."""
    p = arc.points
    mid = len(p) // 2
    return np.array([p[mid - 1] + t * (p[mid] - p[mid - 1]) for t in (0.25, 0.5, 0.75)])


def test_polyline_vertices_make_a_band_of_two_triangles_per_segment():
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0]], np.float32)
    rows, tris = polyline_vertices(pts, 0.5, (1, 0, 0, 1))
    assert rows.shape == (6, 16) and tris.shape == (12,)
    assert set(rows[:, 9]) == {-1.0, 1.0}  # both sides of every point
    np.testing.assert_array_equal(rows[::2, 3:6], [[0, 0, 0], [0, 0, 0], [1, 0, 0]])  # prev
    np.testing.assert_array_equal(rows[::2, 6:9], [[1, 0, 0], [1, 1, 0], [1, 1, 0]])  # next
    assert tris.max() == 5


@gl
def test_resnet_skip_arcs_are_drawn_in_amber_and_go_with_show_arcs(ctx):
    lay = build_layout(trace_net("small_resnet.py:SmallResNet", (3, 32, 32)))
    assert len(lay.arcs) == 3
    on, cam = frame(ctx, lay, "small_resnet")
    off, _ = frame(ctx, lay, "", show_arcs=False)
    amber = (np.array(ArcStyle().colors["add"][:3]) * 255).astype(int)
    for arc in lay.arcs:
        px = cam.project(arc_samples(arc), W, H)
        assert np.all((px >= 0) & (px < [W, H]))
        # The band is brighter toward the target; the middle is about 3/4 of the full colour.
        for p in px:
            assert near(on, p, amber * 0.78, tol=70), f"no arc at {p}: {on[int(p[1]), int(p[0])]}"
            assert not near(off, p, amber * 0.78, tol=40), f"arc colour without arcs at {p}"
    changed = np.abs(on - off).max(axis=-1) > 30
    assert changed.sum() > 200, "the arcs changed too few pixels"


@gl
def test_eighty_layers_render_with_links_between_columns(ctx):
    lay = build_layout(deep_dag(80))
    assert lay.links
    on, cam = frame(ctx, lay, "deep80")
    off, _ = frame(ctx, lay, "", show_arcs=False)
    grey = (np.array(ArcStyle().link[:3]) * ArcStyle().link[3] * 255).astype(int)
    for link in lay.links:
        mid = link.points[len(link.points) // 2]
        px = cam.project(mid[None], W, H)[0]
        diff = np.abs(on - off).max(axis=-1)
        x, y = int(px[0]), int(px[1])
        assert diff[y - 2 : y + 3, x - 2 : x + 3].max() > 20, f"no link at {px}"
        assert near(on, px, grey, tol=90)
    # Every layer of the fitted view is on screen and drawn: its centre's neighbourhood is not the
    # background alone (nodes or their label).
    lit = np.abs(on - off).max(axis=-1) > 20
    assert lit.any()


@gl
def test_an_opaque_layer_is_drawn_with_its_frame_and_named(ctx):
    dag = trace_net("odd.py:WithRoll", (1, 8, 8))
    lay = build_layout(dag)
    on, cam = frame(ctx, lay, "with_roll", show_layer_names=False)
    off, _ = frame(ctx, lay, "", show_arcs=False, show_layer_names=False)
    ((i, pts),) = lay.frames
    # Corners of the frame, a little along its edges (a corner pixel is shared by two bands).
    edge_mid = (pts[:-1] + pts[1:]) / 2
    px = cam.project(edge_mid, W, H)
    diff = np.abs(on - off).max(axis=-1)
    for p in px:
        x, y = int(p[0]), int(p[1])
        assert diff[y - 2 : y + 3, x - 2 : x + 3].max() > 30, f"no frame edge at {p}"
    # The layer's name carries the op it stands for.
    assert layer_title(dag.layers[i]) == "roll [torch.roll]"
    assert layer_title(dag.layers[0]) == "input"
