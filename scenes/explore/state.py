"""ExploreState: everything the explore scene's panels show and edit, in one typed object.

The panel functions read and write this state only; the scene turns changes into work (worker
commands, GPU uploads) in its update step.  Nothing here touches GL or the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from convscope.engine.graph.explain import Explanation
from convscope.features.embedding.panel import EmbedPanelState
from convscope.models import registry

COLORMAPS = ("harley", "viridis", "grayscale")
NORMALIZE = ("layer", "global")
MODELS = registry.names()
MODEL_LABELS = {name: registry.entry(name).display for name in MODELS}


def model_label(model: str) -> str:
    """What the model menu shows: a shipped network's display name, else the file (no folders) and NAME."""
    if model in MODEL_LABELS:
        return MODEL_LABELS[model]
    where, sep, name = model.rpartition(":")
    if sep and ("/" in where or where.endswith(".py")):
        return f"{where.rsplit('/', 1)[-1]}:{name}"
    return model.rsplit("/", 1)[-1]


EDGE_MODES = ("weight", "contribution")  # edge colour: the weight, or weight x input (engine.graph.edges)
EDGE_MODE_LABELS = {"weight": "weight", "contribution": "weight x input"}
EMBED_IMAGE_COUNTS = (
    1000,
    5000,
    10_000,
    20_000,
)  # images mode: MNIST's test set is 10,000, +train for 20,000


def _embed_panel() -> EmbedPanelState:
    # No training steps here: the filter view refreshes on demand and when the drawing changes.
    return EmbedPanelState(refresh_steps=False, image_counts=EMBED_IMAGE_COUNTS, image_count=10_000)


@dataclass
class Legend:
    """Numbers for the colour legend: what the ends of the colormap stand for right now."""

    layer: str | None = None  # layer the ranges are for (hovered, else selected node's); None: none
    node_lo: float = 0.0  # node values mapped to the low / high end (per layer or global)
    node_hi: float = 1.0
    edge_scale: float | None = None  # edges map [-m, m]; None while no edges are shown


@dataclass
class ExploreState:
    model: str = "lenet"  # model the user chose; the worker may still be loading it
    own_models: tuple[
        str, ...
    ] = ()  # models named on the command line (FILE.py:NAME, net.onnx...): in the menu too
    colormap: str = "harley"
    normalize: str = "layer"
    show_frame_time: bool = False
    layer_names: list[str] = field(default_factory=list)  # from the current spec
    layer_visible: list[bool] = field(default_factory=list)  # per layer, same order
    layers_changed: bool = False  # set by the panel, consumed by the scene (re-layout)
    fly_to: int | None = None  # a layer the panel asked to fly to (consumed by the scene)
    current_layer: int = -1  # the layer flown to last (PageUp / PageDown step from it); -1: none
    listed_layer: int = -1  # the layer the panel's list last scrolled to
    show_layers: bool = False  # the Network panel's layer list is open
    probabilities: np.ndarray | None = None  # newest class probabilities, (10,)
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))
    one_channel: bool = True  # the model reads one channel: the pad experiments (robustness, morph) apply
    status: str = "starting the network..."  # one line for the status panel
    error: str | None = None  # worker / weights problem shown in red; None when all is well
    nonfinite: str | None = None  # the newest result holds inf / NaN: says where, in place of the guesses
    worker_restarts: int = 0
    latency_ms: float | None = None  # input -> activations of the newest result
    frame_ms: float = 0.0  # smoothed frame time for the overlay
    reset_camera: bool = False  # set by the "Fit all" button, consumed by the scene
    network_input: np.ndarray | None = None  # the 28x28 image last sent to the network
    drawing_input: np.ndarray | None = None  # the pad's drawing as the network sees it (not a morph blend)
    # -- details on demand (Harley 2015 sec. 3.2): hover shows edges, click shows the calculation
    hovered: int = -1  # node id under the pointer (set by the scene's picking); -1 for none
    selected: int = -1  # node id clicked; -1 for none.  The details panel's close button clears it
    compare: bool = False  # LeNet and MLP side by side on the same drawing
    show_edges: bool = True  # draw the incoming edges of the hovered (else the selected) node
    edge_mode: str = "weight"  # one of EDGE_MODES
    show_all_edges: bool = False  # draw every incoming edge, not a sample of EXACT_EDGES (engine.graph.edges)
    edges_sampled: bool = False  # the focus node has more than EXACT_EDGES edges: the "show all" toggle shows
    edge_note: str = ""  # "showing 5,000 of 73,728 edges" while a sample is drawn
    details: Explanation | None = None  # the selected node's calculation for the newest result
    details_note: str | None = None  # why there are no details yet ("waiting for the weights")
    legend: Legend = field(default_factory=Legend)
    # The details' heatmaps: what their colours span, (lo, hi, colormap) per image ("patch", "filter",
    # "product"); written by the scene with the images, shown as colour bars under them.
    detail_ranges: dict[str, tuple[float, float, str]] = field(default_factory=dict)
    # Where each colour bar was last drawn (screen rect x0, y0, x1, y1), for tests that read its pixels.
    bar_rects: dict[str, tuple[float, float, float, float]] = field(default_factory=dict, repr=False)
    # -- the Embedding window (scenes/explore/embedding.py): t-SNE of a layer's filters or images
    show_embedding: bool = False  # the window is open (the t-SNE process starts when it first opens)
    embed: EmbedPanelState = field(default_factory=_embed_panel)
    embed_follow: bool = True  # refresh the drawing-dependent kinds when the drawing changes (stroke end)
    embed_include_train: bool = True  # images mode: training images after the test ones (20,000 of MNIST)
    embed_note: str = ""  # images mode: which images the layout shows (and why fewer than asked)
    embed_data_note: str = ""  # images mode: that the built-in digits stand in for MNIST ("" for MNIST)
    embed_data_reason: str = ""  # ... and why (where MNIST was looked for), for its tooltip

    def top_guesses(self, k: int = 3) -> list[tuple[str, float]]:
        if self.probabilities is None or not np.all(np.isfinite(self.probabilities)):
            return []
        order = np.argsort(-self.probabilities)[:k]
        name = lambda i: self.classes[i] if i < len(self.classes) else str(i)  # noqa: E731
        return [(name(i), float(self.probabilities[i])) for i in order]


def nonfinite_note(spec, activations: np.ndarray, probabilities: np.ndarray | None) -> str | None:
    """One line naming the layers whose activations are inf or NaN (weights too large for float32
    overflow into them), or None when every number is finite."""
    bad = [x.name for x in spec.layers if not np.all(np.isfinite(activations[x.start : x.stop]))]
    if probabilities is not None and not np.all(np.isfinite(probabilities)):
        bad.append("probabilities")
    if not bad:
        return None
    where = ", ".join(bad) if len(bad) <= 3 else f"{bad[0]} and {len(bad) - 1} more layers"
    return f"overflow in {where}: inf or NaN (weights too large?), drawn cyan"
