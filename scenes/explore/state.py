"""ExploreState: everything the explore scene's panels show and edit, in one typed object.

The panel functions read and write this state only; the scene turns changes into work (worker
commands, GPU uploads) in its update step.  Nothing here touches GL or the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLORMAPS = ("harley", "viridis", "grayscale")
NORMALIZE = ("layer", "global")
MODELS = ("lenet", "mlp")
MODEL_LABELS = {"lenet": "LeNet (CNN)", "mlp": "MLP (784-300-100-10)"}


@dataclass
class ExploreState:
    model: str = "lenet"  # model the user chose; the worker may still be loading it
    colormap: str = "harley"
    normalize: str = "layer"
    show_frame_time: bool = False
    layer_names: list[str] = field(default_factory=list)  # from the current spec
    layer_visible: list[bool] = field(default_factory=list)  # per layer, same order
    layers_changed: bool = False  # set by the panel, consumed by the scene (re-layout)
    probabilities: np.ndarray | None = None  # newest class probabilities, (10,)
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))
    status: str = "starting the network..."  # one line for the status panel
    error: str | None = None  # worker / weights problem shown in red; None when all is well
    worker_restarts: int = 0
    latency_ms: float | None = None  # input -> activations of the newest result
    frame_ms: float = 0.0  # smoothed frame time for the overlay
    reset_camera: bool = False  # set by the "Fit all" button, consumed by the scene
    network_input: np.ndarray | None = None  # the 28x28 image last sent to the network

    def top_guesses(self, k: int = 3) -> list[tuple[str, float]]:
        if self.probabilities is None or not np.all(np.isfinite(self.probabilities)):
            return []
        order = np.argsort(-self.probabilities)[:k]
        return [(self.classes[i], float(self.probabilities[i])) for i in order]
