"""The explore scene on a traced network's Dag, without a worker: the Dag, its applied weights and its
activations (models/trace.py) go in where the worker's would, and the scene's own code does the rest.

- a small ResNet (3 channels, batch norm, residual adds, an adaptive pool): hover edges of every layer
  kind reach the GPU with the values edges.py gives, the details equal torch's numbers, the output
  layer shows the class probabilities under the names the input description gives, the pad
  experiments are off for a 3-channel model, and a frame with a node's edges shows them;
- a wide linear model (12,288 inputs per output node): its hover edges are a sample of 5,000 that
  holds the largest |weight x input| terms, the scene says "showing 5,000 of 12,288 edges", and
  "show all edges" draws every one.
Run: python -m pytest tests/test_explore_dag.py -q
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from convscope.engine.config import AppConfig
from convscope.engine.gpu.frame import OffscreenTarget
from convscope.engine.graph.edges import EXACT_EDGES, edge_values, incoming
from convscope.engine.graph.explain import heatmap_grid
from convscope.engine.view import NetworkView
from convscope.scenes.explore.scene import ExploreScene
from gl_helpers import gl_context

pytestmark = pytest.mark.gl
NETS = Path(__file__).parent / "nets"
W, H = 640, 400
CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def traced(model: torch.nn.Module, shape: tuple[int, ...], seed: int = 0):
    from convscope.models.trace import activations, trace

    t = trace(model, shape)
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(seed))
    return t, activations(t, x)


def resnet():
    from convscope.models.loader import load_model

    torch.manual_seed(1)
    model = load_model(f"{NETS / 'small_resnet.py'}:SmallResNet")
    sys.modules[type(model).__module__].randomize_batch_norm(model, 1)
    return traced(model, (3, 32, 32))


class Scene:
    """An ExploreScene with a NetworkView on a headless context and a network handed in by hand."""

    def __init__(self, t, acts, classes: tuple[str, ...] = ()) -> None:
        self.ctx = gl_context()
        s = self.scene = ExploreScene(AppConfig(pad_size=280))
        s.ctx = self.ctx
        s.view = NetworkView(self.ctx)
        worker = SimpleNamespace(spec=t.dag, input_spec=SimpleNamespace(classes=classes))
        s._on_new_spec(s._dag_of(worker))
        s.net.weights = t.weights
        s.net.weights_version += 1
        s.net.activations = acts.flat.copy()
        s.state.probabilities = acts.probabilities
        s.state.network_input = np.ones((28, 28), np.float32)
        s.net.result_version += 1
        s.camera.fit(*s.layout.bounds, W / H)

    def hover(self, node: int) -> None:
        self.scene.state.hovered = node
        self.scene._upload_edges()

    def frame(self) -> np.ndarray:
        s = self.scene
        target = OffscreenTarget(self.ctx, W, H)
        try:
            target.use()
            s.view.renderer.set_activations(s.display_values())
            s.view.draw(s.camera, (W, H), s.render_settings(), edge_width=1.0)
            self.ctx.finish()
            return target.read()
        finally:
            target.release()

    def close(self) -> None:
        self.scene.view.release()
        self.scene.details.release()


def test_a_traced_resnet_in_the_explorer():
    t, acts = resnet()
    dag = t.dag
    sc = Scene(t, acts, CLASSES)
    s = sc.scene
    try:
        assert s.spec is not None and s.spec.total_nodes == dag.total_nodes
        assert s.state.classes == CLASSES
        assert s.state.top_guesses(1)[0][0] == CLASSES[acts.probabilities.argmax()]
        assert not s.state.one_channel and not s.state.compare  # the pad experiments do not apply
        out = dag.layer(dag.output)
        np.testing.assert_allclose(s.display_values()[out.start : out.stop], acts.probabilities)
        rng = np.random.default_rng(2)
        seen = set()
        for layer in dag.layers[1:]:
            node = int(rng.integers(layer.start, layer.stop))
            sc.hover(node)
            edges = incoming(dag, node, t.weights)
            assert s.view.edges.count == edges.count > 0, layer.name
            assert s.state.edge_note == "" and not s.state.edges_sampled
            seen.add(layer.kind)
            # the details: the scene's explanation of the node equals what the network computed
            s.state.selected = node
            s._update_details()
            e = s.state.details
            assert e is not None and e.node == node, (layer.name, s.state.details_note)
            assert e.result == pytest.approx(float(acts.flat[node]), rel=1e-4, abs=2e-5), layer.name
            if layer.kind == "conv":
                assert set(s.details.images) == {"patch", "filter", "product"}
                kh, kw = layer.inputs[0].kernel
                c = min(layer.inputs[0].in_shape[0], 64)
                per_row, rows, _ = heatmap_grid(c, kh, kw)
                assert per_row * rows >= c > per_row * (rows - 1), layer.name
                assert s.details.images["patch"].shape == (rows * (kh + 1) - 1, per_row * (kw + 1) - 1, 3)
            if layer.name == dag.output:
                assert e.label == CLASSES[e.unit]
        assert {"conv", "add", "pool", "dense"} <= seen
        # A frame with the edges of an add node (two inputs: the block's conv and its shortcut) shows them.
        add = dag.layer("block2.add")
        node = add.start + 5 * 256 + 8 * 16 + 8
        sc.hover(-1)
        bare = sc.frame()
        sc.hover(node)
        assert s.view.edges.count == 2
        lit = sc.frame()
        changed = (np.abs(lit.astype(int) - bare.astype(int)).sum(axis=2) > 40).sum()
        assert changed > 50, f"only {changed} pixels changed when the edges were drawn"
        # Hiding one of its two source layers leaves the edge from the other (its nodes are still drawn).
        s.state.layer_visible[dag.index("block2.shortcut.0")] = False
        s._relayout()
        sc.hover(node)
        assert s.view.edges.count == 1
        assert dag.layer_of(int(s.net.edge_sources[0])).name == "block2.conv2"
    finally:
        sc.close()


def test_many_edges_are_sampled_and_show_all_draws_them():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 10))
    t, acts = traced(model, (3, 64, 64), seed=4)
    dag = t.dag
    sc = Scene(t, acts)
    s = sc.scene
    try:
        assert s.state.classes == tuple(str(i) for i in range(10))  # no names given: indices
        out = dag.layers[-1]
        node = out.start + 3
        sc.hover(node)
        assert s.state.edges_sampled and s.state.edge_note == "showing 5,000 of 12,288 edges"
        assert s.view.edges.count == EXACT_EDGES
        # the strongest terms are among those drawn
        edges = incoming(dag, node, t.weights)
        c = np.abs(edge_values(edges, t.weights, acts.flat, "contribution"))
        top = edges.sources[np.argsort(-c)[: EXACT_EDGES // 2]]
        drawn = s.net.edge_sources
        assert len(drawn) == EXACT_EDGES and len(np.unique(drawn)) == EXACT_EDGES
        assert np.isin(top, drawn).all(), "a top-|weight x input| edge is not drawn"
        s.state.show_all_edges = True
        sc.hover(node)
        assert s.view.edges.count == 12_288 and s.state.edge_note == "" and s.state.edges_sampled
    finally:
        sc.close()


def test_the_explorer_app_on_a_traced_model():
    """The whole scene with panels, fed by a traced model in place of the worker: the guesses carry the
    class names, and selecting nodes of the add, pool and output layers opens the details panel."""
    from convscope.engine.app import App
    from convscope.engine.graph.explain import formula_lines
    from convscope.models.loader import load_model
    from test_details import digit
    from traced_worker import TracedWorker

    torch.manual_seed(1)
    model = load_model(f"{NETS / 'small_resnet.py'}:SmallResNet")
    sys.modules[type(model).__module__].randomize_batch_norm(model, 1)
    ctx = gl_context()
    scene = ExploreScene(AppConfig(pad_size=280), drawing=digit())
    scene.worker = TracedWorker(model, (3, 32, 32), scene.state.model, CLASSES)
    app = App(scene, ctx=ctx, size=(1280, 720))
    try:
        app.frame()
        # A 3-channel model takes a picture, not the pad: hand the stand-in worker the digit directly.
        scene.net.sent_seq = scene.worker.submit(digit())
        for _ in range(6):
            app.frame()
        assert scene.ready and scene.spec.layers == scene.worker.spec.layers
        assert scene.state.top_guesses(1)[0][0] in CLASSES
        bare = app.read_pixels().copy()
        dag = scene.spec
        for name in ("block2.add", "pool", "fc"):
            node = dag.layer(name).start + 3
            scene.state.selected = node
            for _ in range(4):
                app.frame()
            e = scene.state.details
            assert e is not None and e.node == node and formula_lines(e), name
            shot = app.read_pixels()
            panel = np.abs(shot.astype(int) - bare.astype(int)).sum(axis=2) > 40
            assert panel[20:200, 1280 - 330 : 1280 - 20].mean() > 0.2, f"no details panel for {name}"
        assert e.label == CLASSES[3] and e.probabilities is not None
    finally:
        app.close()


@pytest.mark.gl
def test_a_grey_model_of_another_size_reads_the_pad_itself():
    """A 1 x 32 x 32 model (LeNet-5): a stroke on the pad reaches it as the pad resized straight to 32 x 32,
    not as the 28 x 28 view enlarged again (which would smear every stroke over two network pixels)."""
    from convscope.engine.app import App
    from convscope.models.loader import load_model
    from convscope.scenes.explore.preprocess import pad_to_input, to_model_input
    from traced_worker import TracedWorker

    torch.manual_seed(0)
    model = load_model(f"{NETS / 'lenet5.py'}:LeNet5")
    scene = ExploreScene(AppConfig(pad_size=280))
    scene.worker = TracedWorker(model, (1, 32, 32), scene.state.model)
    submitted: list[np.ndarray] = []
    real_submit = scene.worker.submit
    scene.worker.submit = lambda x: submitted.append(np.array(x)) or real_submit(x)
    app = App(scene, ctx=gl_context(), size=(1280, 720))
    try:
        app.frame()
        pad = scene.pad
        pad.begin_stroke(70.0, 60.0)
        pad.stroke_to(200.0, 230.0)
        pad.end_stroke()
        for _ in range(3):
            app.frame()
        assert submitted, "the stroke was not sent"
        spec = scene.worker.input_spec
        np.testing.assert_allclose(submitted[-1], to_model_input(pad.canvas, spec), atol=1e-6)
        blurred = to_model_input(pad_to_input(pad.canvas), spec)
        assert np.abs(submitted[-1] - blurred).max() > 0.05, "the input went through the 28 x 28 view"
        assert scene.state.drawing_input.shape == (28, 28)  # robustness and morph keep their 28 x 28 view
        # "what the network sees" shows the 32 x 32 tensor, back in [0, 1]
        np.testing.assert_allclose(scene._seen_image(), submitted[-1][0], atol=1e-6)  # mean 0, std 1 here
        assert scene.pads.seen.size == (32, 32)
    finally:
        app.close()


@pytest.mark.gl
@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_a_long_layer_list_scrolls_inside_the_network_panel(size):
    """A deep colour model's layer list opened: the Network panel stays under the Image panel and inside
    the window (it grew past the bottom, was pushed up and covered the picture); its list scrolls."""
    from convscope.engine.app import App
    from traced_worker import TracedWorker

    torch.manual_seed(0)
    convs = [torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(30)]
    model = torch.nn.Sequential(*convs, torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)).eval()
    scene = ExploreScene(AppConfig(pad_size=280))
    scene.worker = TracedWorker(model, (3, 8, 8), scene.state.model, CLASSES)
    app = App(scene, ctx=gl_context(), size=size)
    try:
        for _ in range(3):
            app.frame()
        assert len(scene.state.layer_names) > 30
        scene.state.show_layers = True
        for _ in range(8):
            app.frame()
        rects = scene.panels.rects
        image, network = rects["Image"][1], rects["Network"][1]
        assert image.bottom <= network.y + 1, (image, network)
        assert network.bottom <= size[1], network
        assert network.h > 300, "the list is open"
        scene.state.fly_to = len(scene.state.layer_names) - 1  # the list follows the layer flown to
        for _ in range(3):
            app.frame()
        assert scene.state.listed_layer == len(scene.state.layer_names) - 1
    finally:
        app.close()
