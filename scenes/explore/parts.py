"""The typed groups ExploreScene keeps its state in (no GL calls, no worker calls here).

  Interaction   the camera, its orbit controller, the panel layout, a pending fit, the window size
                (resize count) of the last fit (to refit after a resize while at home), the last hover key
  NetworkData   what the single view shows: the worker's spec, newest result and weights with their
                sequence numbers and versions, per-layer colour ranges, edge scales, and the keys of
                what already reached the GPU (edges, outline)
  PadPart       the drawing pad and the two textures that show it (the pad, what the network sees)
  Experiments   robustness experiments, the morph between two drawings, compare mode
  Startup       when the scene started, its first frame and its first result (benchmarks)
The panels' own state (what a person set) is ExploreState (scenes/explore/state.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from convscope.engine.camera import OrbitCamera
from convscope.engine.graph.dag import Dag
from convscope.engine.orbit import OrbitController
from convscope.engine.ui.layout import PanelLayout
from convscope.scenes.explore.morph import MorphState
from convscope.scenes.explore.pad import PadState
from convscope.scenes.explore.robustness import RobustnessState

if TYPE_CHECKING:
    from convscope.engine.gpu.imgui_renderer import UiTexture
    from convscope.scenes.explore.compare import CompareView


@dataclass
class Interaction:
    camera: OrbitCamera
    controller: OrbitController
    panels: PanelLayout = field(default_factory=PanelLayout)  # where panels go, what they leave free
    fit_pending: bool = False  # frame the network at the next draw
    fit_reflows: int = -1  # the panel layout's resize count at the last fit (refit when at home)
    hover_key: tuple | None = None  # pointer + camera + layout of the last hover pick

    @classmethod
    def new(cls, slop: float) -> Interaction:
        camera = OrbitCamera()
        return cls(camera, OrbitController(camera, slop))


@dataclass
class NetworkData:
    spec: Dag | None = None  # the network shown (a worker's NetSpec goes through as_dag)
    activations: np.ndarray | None = None  # newest result, exactly as received
    weights: dict | None = None  # the model's parameters, for `spec` (from the worker)
    result_seq: int = 0  # seq of the newest result shown
    sent_seq: int = 0  # seq of the newest drawing sent
    spec_version: int = 0  # the worker's versions last taken
    weights_version: int = 0
    result_version: int = 0  # bumped per new result shown
    new_result: bool = False  # a result waits for upload
    node_ranges: dict[str, np.ndarray] | None = None  # per normalisation mode, (L, 2)
    scale_cache: dict[tuple, float] = field(default_factory=dict)  # edge colour scales per layer
    edge_key: tuple | None = None  # what the edges on the GPU show
    edge_sources: np.ndarray | None = None  # the source node ids of the edges drawn (a sample of many)
    outline_key: tuple | None = None  # what the outline on the GPU shows


@dataclass
class PadPart:
    pad: PadState
    texture: UiTexture | None = None  # the pad itself (made in on_enter)
    seen: UiTexture | None = None  # the 28 x 28 image the network was given
    side: float = 0.0  # the pad's side on screen this frame, window units (pad_side in scene.py)


@dataclass
class Experiments:
    robust: RobustnessState = field(default_factory=RobustnessState)  # shift / rotate / centring
    morph: MorphState = field(default_factory=MorphState)  # slide between two drawings
    compare: CompareView | None = None  # LeNet and MLP side by side, when on


@dataclass
class Startup:
    started_at: float = field(default_factory=time.perf_counter)
    first_frame_s: float | None = None
    first_result_s: float | None = None
