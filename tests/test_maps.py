"""Feature maps drawn as one quad each (shaders/maps.glsl): no holes and no seams at any zoom or
window size, a checkerboard that shows when near, picks that name the node under the pointer at
every level of detail, and the GPU memory per node."""

import math

import numpy as np
import pytest
from convscope.engine.camera import OrbitCamera
from convscope.engine.gpu import colormaps
from convscope.engine.gpu.frame import OffscreenTarget
from convscope.engine.gpu.nodes import NodeBatch
from convscope.engine.graph.layout import build_layout
from convscope.engine.graph.picking import Picker
from convscope.engine.graph.spec import synthetic_spec
from gl_helpers import gl_context, lenet_spec, mlp_spec, resnet18_shaped_dag

pytestmark = pytest.mark.gl
SIZES = [(1280, 720), (1600, 900), (1920, 1080)]
PITCH_PX = [0.6, 1.3, 3.0, 7.0, 25.0]  # on-screen distance between neighbouring input nodes


def isolated_outliers(img: np.ndarray) -> int:
    """Pixels whose 8 neighbours agree (spread <= 12) while they differ from them by > 40: holes."""
    im = img.astype(np.int16)
    h, w, _ = im.shape
    nb = np.stack(
        [im[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    )
    spread = (nb.max(0) - nb.min(0)).max(-1)
    diff = np.abs(im[1:-1, 1:-1] - nb.mean(0)).max(-1)
    return int(((spread <= 12) & (diff > 40)).sum())


def camera_on(layout, layer: str, size, pitch_px: float) -> OrbitCamera:
    """Looking down at 60 degrees on `layer`'s centre, from where its node pitch is `pitch_px` pixels."""
    i = [x.name for x in layout.spec.layers].index(layer)
    cam = OrbitCamera()
    cam.fit(*layout.layer_bounds[i], size[0] / size[1], pitch=math.radians(60))
    proj11 = 1.0 / math.tan(cam.fov_y / 2)
    cam.distance = proj11 * 0.5 * size[1] / pitch_px
    cam.scene_radius = max(cam.scene_radius, 2 * cam.distance)
    return cam


def draw(ctx, batch, target, cam, acts, highlight=-1) -> np.ndarray:
    w, h = target.size
    batch.set_activations(acts)
    batch.set_ranges(np.tile(np.array([0.0, 1.0], np.float32), (len(batch.spec.layers), 1)))
    target.use()
    target.clear((0.0, 0.0, 0.0, 1.0))
    batch.draw(cam.view_matrix(), cam.projection(w / h), (w, h), highlight=highlight)
    ctx.finish()
    return target.read()


def inside_map(cam, size, corners: np.ndarray) -> np.ndarray:
    """Pixel mask of the convex quad with world `corners` (4, 3) in order."""
    w, h = size
    p = cam.project(corners, w, h)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    sign = []
    for k in range(4):
        a, b = p[k], p[(k + 1) % 4]
        sign.append((b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]))
    sign = np.stack(sign)
    return (sign > 0).all(0) | (sign < 0).all(0)


@pytest.fixture(scope="module")
def lenet():
    ctx = gl_context()
    layout = build_layout(lenet_spec())
    batch = NodeBatch(ctx, layout)
    yield ctx, layout, batch
    batch.release()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_uniform_map_renders_uniform_at_every_zoom(lenet, size):
    ctx, layout, batch = lenet
    spec = layout.spec
    acts = np.full(spec.total_nodes, 0.3, np.float32)
    want = np.round(colormaps.sample("harley", 0.3) * 255)
    step = np.abs(colormaps.sample("harley", 0.3 + 1 / 255) - colormaps.sample("harley", 0.3)).max() * 255
    layer = spec.layer("input")
    pos = layout.positions[layer.start : layer.stop]
    target = OffscreenTarget(ctx, *size)
    try:
        for pitch_px in PITCH_PX:
            cam = camera_on(layout, "input", size, pitch_px)
            img = draw(ctx, batch, target, cam, acts)
            holes = isolated_outliers(img)
            assert holes == 0, f"{size} at {pitch_px} px per node: {holes} hole pixels"
            # Two cells in from the map's edge, on screen; rows and columns both.
            lo, hi = pos.min(0) + 2, pos.max(0) - 2
            y = lo[1]
            quad = np.array([[lo[0], y, lo[2]], [hi[0], y, lo[2]], [hi[0], y, hi[2]], [lo[0], y, hi[2]]])
            mask = inside_map(cam, size, quad)
            assert mask.sum() > 200, f"{size} at {pitch_px} px: the map is not on screen"
            px = img[mask].astype(float)
            if pitch_px * 0.8 <= 2.0:  # far: the squares fill their cells, one seamless picture
                err = np.abs(px - want).max()
                assert err <= step + 2, f"{size} at {pitch_px} px per node: a pixel is off by {err}"
            else:  # near: node colour, its darker border, or the gap; never a stray pixel
                fill = (np.abs(px - want).max(1) <= step + 2).mean()
                assert fill > 0.3, f"{size} at {pitch_px} px: only {fill:.0%} of the map is node colour"
    finally:
        target.release()


def test_a_checkerboard_shows_when_near(lenet):
    ctx, layout, batch = lenet
    spec = layout.spec
    layer = spec.layer("input")
    _, h, w = layer.shape
    board = (np.add.outer(np.arange(h), np.arange(w)) % 2).astype(np.float32).ravel()
    acts = np.zeros(spec.total_nodes, np.float32)
    acts[layer.start : layer.stop] = board
    size = (1280, 720)
    target = OffscreenTarget(ctx, *size)
    try:
        cam = camera_on(layout, "input", size, 25.0)
        img = draw(ctx, batch, target, cam, acts)
        xy = cam.project(layout.positions[layer.start : layer.stop], *size)
        on = (xy[:, 0] > 2) & (xy[:, 0] < size[0] - 2) & (xy[:, 1] > 2) & (xy[:, 1] < size[1] - 2)
        assert on.sum() > 100
        got = img[xy[on, 1].astype(int), xy[on, 0].astype(int)].astype(float)
        want = np.round(np.stack([colormaps.sample("harley", t) for t in board[on]]) * 255)
        assert np.abs(got - want).max() <= 3
        assert len({tuple(c) for c in got.astype(int)}) == 2  # both colours, nothing else
    finally:
        target.release()


def test_picks_name_the_node_at_every_level(lenet):
    """Ray -> map plane -> cell arithmetic: the node whose centre is under the pointer, however many
    nodes share a pixel (far) or however big they are (near)."""
    _, layout, _ = lenet
    picker = Picker(layout)
    size = (1280, 720)
    rng = np.random.default_rng(2)
    for name in ("input", "conv2"):
        layer = layout.spec.layer(name)
        for pitch_px in PITCH_PX:
            cam = camera_on(layout, name, size, pitch_px)
            ids = rng.integers(layer.start, layer.stop, 200)
            xy = cam.project(layout.positions[ids], *size)
            on = (xy[:, 0] > 0) & (xy[:, 0] < size[0]) & (xy[:, 1] > 0) & (xy[:, 1] < size[1])
            assert on.sum() > 10
            only = [x.name == name for x in layout.spec.layers]  # the other layers may lie in front
            got = [picker.pick(cam, x, y, size, visible=only) for x, y in xy[on]]
            wrong = int((np.array(got) != ids[on]).sum())
            assert wrong == 0, f"{name} at {pitch_px} px per node: {wrong} of {on.sum()} picks wrong"


def test_gpu_memory_is_at_most_8_bytes_per_node():
    ctx = gl_context()
    for spec in (lenet_spec(), mlp_spec(), synthetic_spec(1_000_000), resnet18_shaped_dag()):
        batch = NodeBatch(ctx, build_layout(spec))
        try:
            # Every layer of build_layout is regular: no per-node geometry, feature maps or rows alike.
            assert set(batch.grids) == set(range(len(spec.layers)))
            total = sum(batch.gpu_bytes().values())
            per_node = total / spec.total_nodes
            assert per_node <= 8.0, f"{spec.model}: {per_node:.2f} bytes per node ({batch.gpu_bytes()})"
            # Per layer kind (row padding left out): 4 bytes per node + 12 per map.
            per_layer = batch.layer_bytes()
            assert per_layer.sum() <= total
            for kind in {layer.kind for layer in spec.layers}:
                mine = [i for i, layer in enumerate(spec.layers) if layer.kind == kind]
                nodes = sum(spec.layers[i].count for i in mine)
                got = per_layer[mine].sum() / nodes
                assert got <= 8.0, f"{spec.model}, {kind} layers: {got:.2f} bytes per node"
        finally:
            batch.release()


def test_resnet18_shaped_memory_figure():
    """The ResNet-18 case of the benchmark (3.6M nodes): 4 bytes per node and 12 per map, as laid out."""
    dag = resnet18_shaped_dag()
    assert dag.total_nodes == 3_588_106
    batch = NodeBatch(gl_context(), build_layout(dag))
    try:
        maps = sum(g.maps for g in batch.grids.values())
        assert batch.layer_bytes().sum() == 4 * dag.total_nodes + 12 * maps
        per_node = sum(batch.gpu_bytes().values()) / dag.total_nodes
        assert 4.0 <= per_node <= 4.1, f"{per_node:.3f} bytes per node ({batch.gpu_bytes()})"
    finally:
        batch.release()


def test_only_changed_layers_are_uploaded(lenet):
    _, layout, batch = lenet
    spec = layout.spec
    acts = np.zeros(spec.total_nodes, np.float32)
    batch.set_activations(acts)
    assert batch.set_activations(acts) == []
    fc1 = spec.layer("fc1")
    acts[fc1.start + 3] = 2.0
    changed = batch.set_activations(acts)
    assert [spec.layers[i].name for i in changed] == ["fc1"]


def test_a_wide_fc_layer_wraps_into_a_grid_and_picks_exactly():
    """4,096 fully connected units wrap into rows (a grid of camera-facing squares drawn by cell
    arithmetic); a pick at any unit's centre names that unit, far or near."""
    from convscope.engine.graph.spec import LayerSpec, NetSpec

    spec = NetSpec.build(
        "wide-fc",
        [
            LayerSpec("input", "input", (1, 28, 28)),
            LayerSpec("fc1", "fc", (4096,)),
            LayerSpec("output", "output", (10,)),
        ],
    )
    layout = build_layout(spec)
    fc = spec.layer("fc1")
    pos = layout.positions[fc.start : fc.stop]
    rows = len(np.unique(pos[:, 2]))
    assert rows > 1 and len(np.unique(pos[:, 0])) * rows >= fc.count
    ctx = gl_context()
    batch = NodeBatch(ctx, layout)
    try:
        assert 1 in batch.grids and batch.grids[1].cells[1] == rows
        assert sum(batch.gpu_bytes().values()) / spec.total_nodes <= 8.0
    finally:
        batch.release()
    picker = Picker(layout)
    size = (1280, 720)
    rng = np.random.default_rng(3)
    only = [x.name == "fc1" for x in spec.layers]
    for pitch_px in (1.5, 4.0, 12.0, 40.0):
        cam = camera_on(layout, "fc1", size, pitch_px / 2.0)  # fc pitch is 2 layout units
        ids = rng.integers(fc.start, fc.stop, 200)
        xy = cam.project(layout.positions[ids], *size)
        on = (xy[:, 0] > 0) & (xy[:, 0] < size[0]) & (xy[:, 1] > 0) & (xy[:, 1] < size[1])
        assert on.sum() > 5
        got = np.array([picker.pick(cam, x, y, size, visible=only) for x, y in xy[on]])
        assert (got == ids[on]).all(), f"at {pitch_px} px per unit: {(got != ids[on]).sum()} wrong picks"
