"""Layer names where nothing else is (engine/gpu/label_placement.py): at the fitted home view of
torchvision's ResNet-18 at 224 and of the small ResNet, inception and separable nets of tests/nets, at
1280 x 720 and 1920 x 1080 (the whole view, and a 1280 x 720 view whose panels leave a 700 px wide
column), no two drawn names overlap, no name covers a node or an arc (both checked against points
sampled on them, not the placement's own tests), the spine's names are all drawn, and the focused
layer's full name is drawn.  A frame of ResNet-18 shows each name's text in its box and no arc colour
in it.  Harley's LeNet and MLP keep their names left of their layers, whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from convscope.engine.camera import OrbitCamera
from convscope.engine.gpu.label_placement import place_names, project, short_name
from convscope.engine.gpu.labels import GlyphAtlas
from convscope.engine.gpu.scene_renderer import NAME_SCALE, layer_title
from convscope.engine.graph.layout import build_layout
from convscope.engine.orbit import fit_camera
from convscope.models.specs import lenet_spec, mlp_spec

NETS = Path(__file__).resolve().parent / "nets"
TRACED = {
    "resnet18": ("tv_resnet.py:resnet18_10", (3, 224, 224)),
    "small_resnet": ("small_resnet.py:SmallResNet", (3, 32, 32)),
    "inception": ("inception.py:Inception", (3, 16, 16)),
    "separable": ("separable.py:Separable", (3, 16, 16)),
}
VIEWS = {  # name: (viewport, the free rectangle the network is fitted into)
    "1280x720": ((1280, 720), (0, 0, 1280, 720)),
    "1920x1080": ((1920, 1080), (0, 0, 1920, 1080)),
    "1280x720-panels": ((1280, 720), (300, 0, 700, 720)),
    "1280x720-narrow": ((1280, 720), (500, 0, 500, 720)),  # panels on both sides
}
FITTED = ["1280x720", "1920x1080", "1280x720-panels"]
ATLAS = GlyphAtlas()


@pytest.fixture(scope="module")
def layouts() -> dict:
    pytest.importorskip("torchvision")
    from convscope.models.loader import load_model
    from convscope.models.trace import trace

    return {
        name: build_layout(trace(load_model(str(NETS / spec)), shape).dag)
        for name, (spec, shape) in TRACED.items()
    }


def home_view(layout, view: str) -> np.ndarray:
    viewport, free = VIEWS[view]
    cam = OrbitCamera()
    fit_camera(cam, layout.bounds, free, viewport)
    return cam.view_projection(viewport[0] / viewport[1])


def names(layout, view: str, focus: int = -1):
    titles = [layer_title(x) for x in layout.spec.layers]
    visible = [True] * len(titles)
    vp = home_view(layout, view)
    viewport, free = VIEWS[view]
    return place_names(
        layout, titles, visible, vp, viewport, ATLAS.ink_box, NAME_SCALE, focus=focus, region=free
    )


def inside(points: np.ndarray, box, grow: float = 0.0) -> np.ndarray:
    x0, y0, x1, y1 = box
    return (
        (points[:, 0] > x0 - grow)
        & (points[:, 0] < x1 + grow)
        & (points[:, 1] > y0 - grow)
        & (points[:, 1] < y1 + grow)
    )


def arc_points(layout, vp: np.ndarray, viewport) -> np.ndarray:
    """Points every pixel or so along every arc, column link and frame as projected."""
    out = []
    for pts in [a.points for a in (*layout.arcs, *layout.links)] + [f for _, f in layout.frames]:
        px = project(vp, pts, viewport)
        for a, b in zip(px[:-1], px[1:], strict=True):
            n = int(np.ceil(np.linalg.norm(b - a))) + 1
            out.append(a + np.linspace(0.0, 1.0, n)[:, None] * (b - a))
    return np.concatenate(out) if out else np.zeros((0, 2))


def check_readable(layout, view: str, tags) -> None:
    viewport = VIEWS[view][0]
    vp = home_view(layout, view)
    spec = layout.spec
    boxes = {spec.layers[t.layer].name: t.box for t in tags}
    for a in tags:
        for b in tags:
            if a.layer < b.layer:
                (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box, b.box
                assert not (ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1), (
                    a.text,
                    a.box,
                    b.text,
                    b.box,
                )
    arcs = arc_points(layout, vp, viewport)
    for name, box in boxes.items():
        hit = inside(arcs, box, grow=1.0)
        assert not hit.any(), f"an arc runs through the name {name!r} at {arcs[hit][0]}"
    # No name covers a node (of any layer, its own included): every node's centre, projected.
    nodes = [project(vp, layout.positions[x.start : x.stop], viewport) for x in spec.layers]
    for x, px in zip(spec.layers, nodes, strict=True):
        for name, box in boxes.items():
            assert not inside(px, box).any(), f"the name {name!r} covers a node of {x.name}"
    # A name beside its layer reads as that layer's: no other layer's node level with it lies nearer
    # on its other side (as a name beyond the arcs would, by the next column's sheets).
    for t in tags:
        if t.offset[1] != 0.0:
            continue  # over or under its layer
        x0, y0, x1, y1 = t.box
        own = nodes[t.layer][:, 0]
        right = own.min() >= x1  # its layer to its right: the other side is its left
        own_gap = own.min() - x1 if right else x0 - own.max()
        for j, px in enumerate(nodes):
            level = px[(px[:, 1] > y0) & (px[:, 1] < y1), 0]
            gaps = x0 - level[level <= x0] if right else level[level >= x1] - x1
            if j != t.layer and len(gaps):
                assert gaps.min() >= own_gap, f"{t.text!r} reads as {spec.layers[j].name}'s name"


@pytest.mark.parametrize("view", FITTED)
@pytest.mark.parametrize("net", sorted(TRACED))
def test_names_at_the_fitted_view_overlap_nothing(layouts, net, view):
    lay = layouts[net]
    tags = names(lay, view)
    check_readable(lay, view, tags)
    drawn = {t.layer: t.text for t in tags}
    titles = [layer_title(x) for x in lay.spec.layers]
    # Where the whole view is free, every layer on the spine (nothing beside it on its left) keeps its
    # whole name; with the panels beside it most names are still there.
    if view != "1280x720-panels":
        b, lv = lay.layer_bounds, lay.levels
        for i, t in enumerate(titles):
            if not any(lv[j] == lv[i] and b[j, 1, 0] <= b[i, 0, 0] for j in range(len(titles))):
                assert drawn.get(i) == t, (t, drawn.get(i))
    assert len(drawn) >= 0.8 * len(titles), sorted(set(titles) - {titles[i] for i in drawn})
    # The fit leaves the names room: all of them lie in the part of the view the network was fitted to.
    fx, fy, fw, fh = VIEWS[view][1]
    for t in tags:
        x0, y0, x1, y1 = t.box
        assert fx <= x0 and x1 <= fx + fw and fy <= y0 and y1 <= fy + fh, (t.text, t.box)


def test_eighty_layers_names_keep_to_their_columns():
    """A folded 80-layer Dag in the narrow part of a 1280 x 720 view the panels leave: far from every
    name fits, and those that do overlap nothing and read as their own layer's."""
    from layout_nets import deep_dag

    lay = build_layout(deep_dag(80))
    tags = names(lay, "1280x720-panels")
    assert len(tags) >= 30
    check_readable(lay, "1280x720-panels", tags)


def test_resnet18_names_beside_folded_columns(layouts):
    """The case from the walk: in ResNet-18's folded columns `layer3.0.downsample.0` and
    `layer4.0.downsample.0` are drawn whole, clear of the next column's names and of their arcs."""
    lay = layouts["resnet18"]
    drawn = {t.text for t in names(lay, "1280x720")}
    assert {"layer3.0.downsample.0", "layer4.0.downsample.0"} <= drawn


def test_the_focused_layer_shows_its_full_name(layouts):
    lay = layouts["resnet18"]
    idx = {x.name: i for i, x in enumerate(lay.spec.layers)}
    focus = idx["layer4.0.downsample.0"]
    # In a narrow view it has no room of its own ...
    assert focus not in {t.layer for t in names(lay, "1280x720-narrow")}
    # ... hovered (or selected), it comes first and whole; the others keep clear of it.
    tags = names(lay, "1280x720-narrow", focus=focus)
    assert tags[0].layer == focus and tags[0].text == "layer4.0.downsample.0"
    x0, y0, x1, y1 = tags[0].box
    for t in tags[1:]:
        assert t.box[2] <= x0 or x1 <= t.box[0] or t.box[3] <= y0 or y1 <= t.box[1], t.text
    check_readable(lay, "1280x720-narrow", tags[1:])


def test_a_name_is_shortened_from_its_last_word_on():
    assert short_name("layer2.0.downsample.0") == "downsample.0"
    assert short_name("layer2.1.conv2") == "conv2"
    assert short_name("features.3.roll [roll]") == "roll [roll]"
    assert short_name("block1.add") == ""  # short already: whole or dropped
    assert short_name("conv1") == ""
    # Never another layer's whole name: ResNet-18 has a "conv1" of its own.
    assert short_name("layer1.0.conv1", {"conv1", "layer1.0.conv1"}) == "0.conv1"
    assert short_name("a.b.c", {"c", "b.c"}) == ""


@pytest.mark.parametrize("make", [lenet_spec, mlp_spec])
def test_harley_networks_keep_their_names_left_of_each_layer(make):
    spec = make()
    lay = build_layout(spec)
    titles = [x.name for x in spec.layers]
    tags = names(lay, "1280x720-panels")
    assert [t.text for t in sorted(tags, key=lambda t: t.layer)] == titles
    for t in tags:
        lo, hi = lay.layer_bounds[t.layer]
        # 12 px left of the edge's middle, a little more where the edge slants out under the name
        assert t.align == "right" and t.offset[1] == 0.0 and -16.0 <= t.offset[0] <= -12.0
        np.testing.assert_allclose(t.anchor, [lo[0], (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2], atol=1e-4)


@pytest.mark.gl
@pytest.mark.parametrize("view", ["1280x720", "1920x1080"])
def test_resnet18_frame_shows_each_name_in_its_box_and_no_arc_under_it(layouts, view):
    """Three frames of ResNet-18 from the home view: names and arcs, arcs alone, neither.  Every pixel
    the names change lies in a drawn name's box (the boxes are where the text is), each box holds some
    of its text, and no pixel an arc changes lies in a box."""
    from convscope.engine.gpu.frame import OffscreenTarget
    from convscope.engine.gpu.scene_renderer import RenderSettings, SceneRenderer
    from gl_helpers import gl_context, smooth_activations
    from PIL import Image

    lay = layouts["resnet18"]
    ctx = gl_context()
    (w, h), free = VIEWS[view]
    cam = OrbitCamera()
    fit_camera(cam, lay.bounds, free, (w, h))
    r = SceneRenderer(ctx, lay)
    target = OffscreenTarget(ctx, w, h)
    frames = {}
    try:
        r.set_activations(smooth_activations(lay.spec))
        for key, names_on, arcs_on in (("all", True, True), ("arcs", False, True), ("none", False, False)):
            target.use()
            r.draw(cam, (w, h), RenderSettings(show_layer_names=names_on, show_arcs=arcs_on))
            frames[key] = target.read().astype(int)
            if key == "all":
                tags = list(r.name_tags)
        assert ctx.error == "GL_NO_ERROR"
    finally:
        target.release()
        r.release()
    Image.fromarray(frames["all"].astype(np.uint8)).save(f"/tmp/convscope_names_resnet18_{view}.png")
    text = np.abs(frames["all"] - frames["arcs"]).max(-1) > 40
    arc = np.abs(frames["arcs"] - frames["none"]).max(-1) > 20
    assert arc.sum() > 500, "no arcs drawn"
    in_box = np.zeros((h, w), bool)
    for t in tags:
        x0, y0, x1, y1 = (
            int(np.floor(t.box[0])),
            int(np.floor(t.box[1])),
            int(np.ceil(t.box[2])),
            int(np.ceil(t.box[3])),
        )
        box = np.zeros((h, w), bool)
        box[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
        assert (text & box).sum() >= 20, f"no text in the box of {t.text}"
        assert not (arc & box).any(), f"an arc is drawn under the name {t.text}"
        in_box |= box
    grown = in_box.copy()
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):  # a pixel of slack for the anchor's rounding
        grown |= np.roll(in_box, (dy, dx), axis=(0, 1))
    stray = text & ~grown
    assert stray.sum() == 0, f"{stray.sum()} text pixels outside every box, e.g. at {np.argwhere(stray)[:3]}"
