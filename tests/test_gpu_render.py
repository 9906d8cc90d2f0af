"""Headless rendering (Mesa llvmpipe via EGL): pixels of real frames checked against the colormap
table, the background, visibility, labels, highlight; plus the CPU halves (colormaps, ranges,
shader loader).  The LeNet home view is saved to /tmp/convscope_lenet.png for a human to look at.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from convscope.engine.camera import OrbitCamera
from convscope.engine.gpu import colormaps, programs
from convscope.engine.gpu.frame import OffscreenTarget
from convscope.engine.gpu.labels import GlyphAtlas
from convscope.engine.gpu.normalize import layer_ranges
from convscope.engine.gpu.scene_renderer import RenderSettings, SceneRenderer
from convscope.engine.graph.layout import build_layout
from gl_helpers import gl_context, lenet_spec, smooth_activations

gl = pytest.mark.gl
W, H = 1280, 720
SCREENSHOT = "/tmp/convscope_lenet.png"


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctx():
    return gl_context()


@pytest.fixture(scope="module")
def layout():
    return build_layout(lenet_spec())


@pytest.fixture
def target(ctx):
    t = OffscreenTarget(ctx, W, H)
    yield t
    t.release()
    assert ctx.error == "GL_NO_ERROR"


@pytest.fixture
def renderer(ctx, layout):
    r = SceneRenderer(ctx, layout)
    yield r
    r.release()


def no_labels(**kw) -> RenderSettings:
    return RenderSettings(show_class_labels=False, show_layer_names=False, **kw)


def render(target: OffscreenTarget, renderer: SceneRenderer, camera: OrbitCamera, settings: RenderSettings):
    target.use()
    renderer.draw(camera, target.size, settings)
    return target.read().astype(int)


def layer_bounds(layout, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    idx = [layout.spec.index(n) for n in names]
    return layout.layer_bounds[idx, 0].min(axis=0), layout.layer_bounds[idx, 1].max(axis=0)


def centre_pixels(img: np.ndarray, camera: OrbitCamera, points: np.ndarray) -> np.ndarray:
    px = camera.project(points, W, H)
    assert np.isfinite(px).all()
    x, y = np.floor(px[:, 0]).astype(int), np.floor(px[:, 1]).astype(int)
    assert (x >= 0).all() and (x < W).all() and (y >= 0).all() and (y < H).all(), "node off screen"
    return img[y, x]


def top_layers_scene(layout):
    """fc1 all low, fc2 all high, output at 0.37; every range [0, 1]; camera on the top three layers."""
    spec = layout.spec
    acts = np.zeros(spec.total_nodes, np.float32)
    acts[spec.layer("fc2").start : spec.layer("fc2").stop] = 1.0
    acts[spec.layer("output").start : spec.layer("output").stop] = 0.37
    ranges = np.tile([0.0, 1.0], (len(spec.layers), 1))
    cam = OrbitCamera()
    cam.fit(*layer_bounds(layout, ["fc1", "fc2", "output"]), W / H)
    return acts, ranges, cam


def layer_positions(layout, name: str) -> np.ndarray:
    layer = layout.spec.layer(name)
    return layout.positions[layer.start : layer.stop]


# --- CPU side -----------------------------------------------------------------------------------


def _lightness(rgb: np.ndarray) -> np.ndarray:
    """CIE L* of sRGB colours."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    y = lin @ np.array([0.2126, 0.7152, 0.0722])
    return np.where(y > (6 / 29) ** 3, 116 * np.cbrt(y) - 16, y * (29 / 3) ** 3)


def test_harley_colormap_has_a_linear_rising_value_curve():
    t = np.linspace(0, 1, 513)
    lightness = _lightness(colormaps.sample("harley", t).astype(np.float64))
    assert (np.diff(lightness) > 0).all(), "brightness must rise monotonically"
    line = lightness[0] + (lightness[-1] - lightness[0]) * t
    assert np.abs(lightness - line).max() < 3.0, "brightness should follow a straight line"
    assert lightness[0] < 15 and lightness[-1] > 90, "from dark to near white"
    hues = colormaps.sample("harley", np.linspace(0, 1, 9))
    assert len({tuple(np.argsort(c)) for c in hues}) >= 3, "a rainbow: several dominant channels"


def test_viridis_ends_on_the_published_values():
    np.testing.assert_allclose(colormaps.sample("viridis", 0.0), [0.267004, 0.004874, 0.329415], atol=1e-6)
    np.testing.assert_allclose(colormaps.sample("viridis", 1.0), [0.993248, 0.906157, 0.143936], atol=1e-6)
    # Entry 128 of the published 256 (t = 128/255), between two stops: interpolation stays close.
    np.testing.assert_allclose(
        colormaps.sample("viridis", 128 / 255), [0.127568, 0.566949, 0.550556], atol=0.01
    )


def test_sample_clamps_and_rejects_unknown_names():
    np.testing.assert_array_equal(colormaps.sample("harley", -3.0), colormaps.sample("harley", 0.0))
    np.testing.assert_array_equal(colormaps.sample("grayscale", 7.0), [1, 1, 1])
    assert colormaps.sample("viridis", np.zeros((4, 5))).shape == (4, 5, 3)
    with pytest.raises(KeyError):
        colormaps.sample("jet", 0.5)


def test_glsl_block_carries_the_python_table():
    block = colormaps.glsl_block()
    assert f"#define CMAP_COUNT {len(colormaps.NAMES)}" in block
    first = colormaps.TABLES["harley"][0]
    assert f"vec3({first[0]:.6f}, {first[1]:.6f}, {first[2]:.6f})" in block


def test_layer_ranges_per_layer_global_constant_and_nan():
    spec = lenet_spec().to_dag()
    acts = np.zeros(spec.total_nodes, np.float32)
    conv1 = spec.layer("conv1")
    acts[conv1.start : conv1.stop] = np.linspace(-2, 5, conv1.count)
    acts[spec.layer("fc1").start] = np.nan
    acts[spec.layer("fc2").start : spec.layer("fc2").stop] = 3.0
    r = layer_ranges(spec, acts, "layer")
    assert r.shape == (len(spec.layers), 2) and r.dtype == np.float32
    np.testing.assert_allclose(r[spec.index("conv1")], [-2, 5])
    np.testing.assert_allclose(r[spec.index("fc2")], [3, 4])  # constant: low colour
    np.testing.assert_allclose(r[spec.index("fc1")], [0, 1])  # zeros with a NaN: NaN ignored
    g = layer_ranges(spec, acts, "global")
    np.testing.assert_allclose(g, np.tile([-2, 5], (len(spec.layers), 1)))
    with pytest.raises(ValueError):
        layer_ranges(spec, acts, "percentile")


def test_glyph_atlas_rasterises_digits_with_an_outline():
    atlas = GlyphAtlas()
    for c in "0123456789":
        x, y, w, h = atlas.glyphs[c].rect
        cell = atlas.image[y : y + h, x : x + w]
        assert cell[..., 0].max() == 255, f"glyph {c!r} is empty"
        assert (cell[..., 1] >= cell[..., 0]).all() and cell[..., 1].sum() > cell[..., 0].sum()


# --- shader loader ------------------------------------------------------------------------------


@gl
def test_shader_errors_name_the_glsl_file_and_line(ctx, tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helper.glsl").write_text("float helper() { return 1.0; }\n")
    (tmp_path / "broken.glsl").write_text(
        "#version 330 core\n"
        '#include "lib/helper.glsl"\n'
        "#if defined VERTEX_SHADER\n"
        "void main() { gl_Position = vec4(helper(), undeclared_thing, 0.0, 1.0); }\n"
        "#endif\n"
        "#if defined FRAGMENT_SHADER\n"
        "out vec4 f_color;\n"
        "void main() { f_color = vec4(1.0); }\n"
        "#endif\n"
    )
    monkeypatch.setattr(programs, "SHADER_DIR", tmp_path)
    programs.clear_cache()
    try:
        with pytest.raises(programs.ShaderError) as err:
            programs.create_program(ctx, "broken")
    finally:
        programs.clear_cache()
    assert "broken.glsl:4 (vertex)" in str(err.value), str(err.value)
    assert "undeclared_thing" in str(err.value)


# --- frames -------------------------------------------------------------------------------------


@gl
def test_background_is_a_wide_soft_light(target, renderer, layout):
    cam = OrbitCamera()
    cam.fit(*layout.bounds, W / H)
    img = render(target, renderer, cam, no_labels(visible=(False,) * len(layout.spec.layers)))
    lum = img.mean(axis=2)
    centre = lum[H // 2 - 2 : H // 2 + 2, W // 2 - 2 : W // 2 + 2].mean()
    corners = [lum[2, 2], lum[2, -3], lum[-3, 2], lum[-3, -3]]
    assert centre > 150, f"centre should be light, got {centre}"
    assert all(centre - c > 60 for c in corners), f"corners {corners} not darker than centre {centre}"
    # Wider than tall: 0.4 H to the side is lighter than 0.4 H up.
    side, up = lum[H // 2, W // 2 + int(0.4 * H)], lum[H // 2 - int(0.4 * H), W // 2]
    assert side > up + 5, f"ellipse should be wider than tall (side {side}, up {up})"
    # Smooth: brightness falls steadily from the centre to the right edge.
    row = lum[H // 2, W // 2 :: 64]
    assert (np.diff(row) < 2).all() and row[0] - row[-1] > 40


@gl
@pytest.mark.parametrize("mode", ["quads", "points"])
@pytest.mark.parametrize("cmap", ["harley", "viridis"])
def test_node_colours_match_the_colormap_table(target, renderer, layout, mode, cmap):
    acts, ranges, cam = top_layers_scene(layout)
    renderer.set_activations(acts, ranges)
    img = render(target, renderer, cam, no_labels(colormap=cmap, node_mode=mode))
    for name, t in (("fc1", 0.0), ("fc2", 1.0), ("output", 0.37)):
        got = centre_pixels(img, cam, layer_positions(layout, name))
        want = np.round(colormaps.sample(cmap, t) * 255)
        err = np.abs(got - want).max()
        assert err <= 2, f"{name} ({mode}, {cmap}) t={t}: expected {want}, got e.g. {got[0]} (max err {err})"


@gl
def test_flat_grid_nodes_take_the_colormap_colour(target, renderer, layout):
    spec = layout.spec
    acts = np.zeros(spec.total_nodes, np.float32)
    pool2 = spec.layer("pool2")
    acts[pool2.start : pool2.stop] = 1.0
    renderer.set_activations(acts, np.tile([0.0, 1.0], (len(spec.layers), 1)))
    cam = OrbitCamera()
    cam.fit(*layer_bounds(layout, ["pool2"]), W / H, pitch=math.radians(80))
    img = render(target, renderer, cam, no_labels())
    got = centre_pixels(img, cam, layer_positions(layout, "pool2"))
    want = np.round(colormaps.sample("harley", 1.0) * 255)
    assert np.abs(got - want).max() <= 2, f"expected {want}, got {got[:3]}"


@gl
def test_colormap_switch_changes_the_pixels(target, renderer, layout):
    acts, ranges, cam = top_layers_scene(layout)
    renderer.set_activations(acts, ranges)
    a = render(target, renderer, cam, no_labels(colormap="harley"))
    b = render(target, renderer, cam, no_labels(colormap="viridis"))
    changed = np.abs(a - b).max(axis=2) > 10
    assert changed.sum() > 500, f"only {changed.sum()} pixels changed between colormaps"


@gl
def test_hidden_layer_shows_the_background(target, renderer, layout):
    acts, ranges, cam = top_layers_scene(layout)
    renderer.set_activations(acts, ranges)
    n = len(layout.spec.layers)
    empty = render(target, renderer, cam, no_labels(visible=(False,) * n))
    hidden = [name != "fc2" for name in (x.name for x in layout.spec.layers)]
    img = render(target, renderer, cam, no_labels(visible=tuple(hidden)))
    fc2 = centre_pixels(img, cam, layer_positions(layout, "fc2"))
    np.testing.assert_array_equal(fc2, centre_pixels(empty, cam, layer_positions(layout, "fc2")))
    fc1 = centre_pixels(img, cam, layer_positions(layout, "fc1"))
    assert (np.abs(fc1 - centre_pixels(empty, cam, layer_positions(layout, "fc1"))).max(axis=1) > 30).all()


@gl
def test_class_labels_appear_above_the_output_nodes(target, renderer, layout):
    acts, ranges, cam = top_layers_scene(layout)
    renderer.set_activations(acts, ranges)
    bare = render(target, renderer, cam, no_labels())
    text = render(target, renderer, cam, RenderSettings(show_class_labels=True, show_layer_names=False))
    px = cam.project(layer_positions(layout, "output"), W, H)
    for digit, (x, y) in enumerate(px):
        x, y = int(x), int(y)
        box_t, box_b = slice(max(y - 50, 0), y - 4), slice(x - 12, x + 12)
        diff = np.abs(text[box_t, box_b] - bare[box_t, box_b]).max(axis=2)
        assert (diff > 40).sum() > 20, f"no label drawn above output node {digit}"
        assert text[box_t, box_b].min(axis=2).max() > 230, f"label {digit} has no white text pixels"


@gl
def test_class_labels_make_way_when_the_output_nodes_crowd_together(target, renderer, layout):
    """Zoomed out until the output nodes stand closer than a label's width, the labels are left out
    rather than drawn into one smudge; zoomed back in, they return."""
    acts, ranges, cam = top_layers_scene(layout)
    renderer.set_activations(acts, ranges)
    labels = RenderSettings(show_class_labels=True, show_layer_names=False)
    near = render(target, renderer, cam, labels)
    assert renderer.labels.count > 0 and not np.array_equal(near, render(target, renderer, cam, no_labels()))
    far = OrbitCamera(target=cam.target.copy(), distance=cam.distance * 12, yaw=cam.yaw, pitch=cam.pitch)
    px = far.project(layer_positions(layout, "output"), W, H)
    assert np.linalg.norm(np.diff(px, axis=0), axis=1).min() < 12, "the test needs crowded output nodes"
    crowded = render(target, renderer, far, labels)
    assert renderer.labels.count == 0, "labels drawn over each other"
    np.testing.assert_array_equal(crowded, render(target, renderer, far, no_labels()))
    render(target, renderer, cam, labels)
    assert renderer.labels.count > 0, "the labels must come back up close"


@gl
def test_highlighted_node_gets_a_white_outline(target, renderer, layout):
    acts, ranges, cam = top_layers_scene(layout)
    renderer.set_activations(acts, ranges)
    fc2 = layout.spec.layer("fc2")
    node = fc2.start + 50
    img = render(target, renderer, cam, no_labels(highlight=node))
    c = layout.positions[node]
    half = layout.sizes[node] / 2
    cx, cy = cam.project(c, W, H)[0]
    ex, _ = cam.project(c + cam.right * half, W, H)[0]
    x, y = int(math.floor(ex + 1.0)), int(math.floor(cy))
    assert (img[y, x] >= 250).all(), f"expected white outline at ({x}, {y}), got {img[y, x]}"
    x0, y0 = int(math.floor(cx)), int(math.floor(cy))
    want = np.round(colormaps.sample("harley", 1.0) * 255)
    assert np.abs(img[y0, x0] - want).max() <= 2, "the highlighted node keeps its colour inside"


@gl
def test_lenet_home_view_screenshot(ctx, layout):
    """The picture a user first sees (4x MSAA); saved for a human to look at."""
    from PIL import Image

    r = SceneRenderer(ctx, layout)
    t = OffscreenTarget(ctx, W, H, samples=4)
    try:
        r.set_activations(smooth_activations(layout.spec, seed=3))
        cam = OrbitCamera()
        cam.fit(*layout.bounds, W / H)
        t.use()
        r.draw(cam, (W, H), RenderSettings())
        img = t.read()
        Image.fromarray(img).save(SCREENSHOT)
    finally:
        t.release()
        r.release()
    img = img.astype(int)
    colours = {tuple(c) for c in (img[::4, ::4] // 16).reshape(-1, 3)}
    assert len(colours) > 80, f"only {len(colours)} distinct colours: is anything drawn?"
    for i in range(len(layout.spec.layers)):
        x, y = cam.project(layout.layer_center(i), W, H)[0]
        assert 0 < x < W and 0 < y < H, f"layer {layout.spec.layers[i].name} is off screen"


@gl
def test_points_and_quads_draw_the_same_picture(target, renderer, layout):
    renderer.set_activations(smooth_activations(layout.spec, seed=3))
    cam = OrbitCamera()
    cam.fit(*layout.bounds, W / H)
    quads = render(target, renderer, cam, RenderSettings(node_mode="quads"))
    points = render(target, renderer, cam, RenderSettings(node_mode="points"))
    differ = (np.abs(quads - points).max(axis=2) > 40).mean()
    assert differ < 0.002, f"{differ:.2%} of pixels differ between quads and points"


@gl
def test_release_frees_every_gl_object_without_errors(ctx, layout):
    r = SceneRenderer(ctx, layout)
    t = OffscreenTarget(ctx, 320, 180, samples=4)
    t.use()
    r.set_activations(smooth_activations(layout.spec))
    cam = OrbitCamera()
    cam.fit(*layout.bounds, 320 / 180)
    r.draw(cam, (320, 180), RenderSettings(node_mode="auto"))
    t.read()
    t.resize(200, 100)
    t.use()
    r.draw(cam, (200, 100))
    assert t.read().shape == (100, 200, 3)
    owned = [
        r.background.program,
        r.background.vao,
        r.nodes.maps,
        r.nodes.nodes,
        r.nodes.acts,
        *r.nodes.programs.values(),
        *r.nodes.vaos.values(),
        r.labels.program,
        r.labels.texture,
        r.labels.buffer,
        r.labels.vao,
        *t._objects,
    ]
    r.release()
    t.release()
    assert ctx.error == "GL_NO_ERROR"
    alive = [o for o in owned if type(o.mglo).__name__ != "InvalidObject"]
    assert not alive, f"not released: {alive}"
