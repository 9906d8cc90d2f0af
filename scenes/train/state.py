"""TrainConfig, TrainState and the chart history of the live-training scene: plain data, no GL, no IPC.

The panels (scenes/train/panels.py) read and edit a TrainState; what they want done in the training
worker they append to `state.requests` as (command, kwargs), and the scene sends those in its update step.
The scene writes what it reads from the worker's snapshots back into the state (stats, messages, charts).
The Embedding window's state is the embedding panel's own EmbedPanelState (features/embedding/panel.py) plus
the few options this scene adds (`embed_include_train`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from convscope.features.embedding.panel import EmbedPanelState

OPTIMIZERS = ("sgd", "adam", "adadelta")  # features.training.trainer.OPTIMIZERS (torch-free copy)
OPTIMIZER_LABELS = {"sgd": "SGD + momentum", "adam": "Adam", "adadelta": "Adadelta"}
ADADELTA_LR = 1.0  # Adadelta's customary learning rate, proposed when the user switches to it
DATASETS = ("cifar10", "mnist", "digits")
# Training speed levels: at most this many steps a second (None: as fast as the machine goes).  Step by
# step is Pause + Step; the slowest levels let a teacher narrate single updates.
SPEEDS: tuple[float | None, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, None)
# Node colour range: "layer" (each layer's min..max), "robust" (a layer's min to a typical map's peak:
# one strong map no longer leaves the others black; engine/gpu/normalize.robust_ranges), "map" (every
# feature map over its own min..max).
RANGES = ("robust", "layer", "map")
RANGE_LABELS = {"robust": "per layer, typical peak", "layer": "per layer, min-max", "map": "per map"}
MONITOR_CYCLE_S = 5.0  # seconds between monitored images while "cycle" is on


@dataclass
class TrainConfig:
    """Set once per session (command line / caller); everything live is in TrainState."""

    dataset: str = "cifar10"  # "cifar10" (the paper's), "mnist", or "digits" (built in, always there)
    data_dir: str | None = None  # where the data set is looked for / downloaded; None: built-in digits
    download: bool = True  # download a missing data set into data_dir (fails fast offline, with a note)
    data_mirror: str | None = None  # base URL holding the data files under torchvision's names (an offline
    # mirror at a kiosk or museum: http://host/data/ or file:///srv/data/); None: torchvision's own URLs
    widths: tuple[int, ...] = (16, 20, 20)  # conv filters per layer at start (the paper's 16-20-20)
    lr: float = 0.01  # starting hyperparameters (features.training.trainer.Hyper's defaults)
    momentum: float = 0.9
    batch_size: int = 4  # the paper's default
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    seed: int = 0  # initial weights and batch order; reset starts from it again
    val_every: int = 500  # steps between validation passes
    publish_hz: float = 30.0  # snapshots per second at most while training runs (and no more than drawn);
    # each costs training ~1 ms (features/training/process.py), and the jitter animates every frame anyway
    max_fps: float = 30.0  # the window's frame rate cap while this scene runs (0: the display's rate).  With
    # software GL (llvmpipe) a frame of this scene costs ~25 ms of CPU; at 60 frames/s that takes 1.5 of 2
    # cores from training, at 30 about 0.75 (tools/bench_training.py).  30 still animates the jitter smoothly.
    reserve_core: bool = True  # keep the render threads off one core for the training worker while this
    # scene runs (engine/cores.py): with software GL they otherwise preempt its one torch thread
    start_paused: bool = False
    colormap: str = "harley"
    jitter_gain: float = 4.0  # world units the busiest filter moves (a node pitch is 1)
    show_frame_time: bool = False
    ui_scale: float = 1.0
    worker_timeout: float = 120.0  # seconds to wait for the first snapshot (import torch, load data)
    # Embedding window: training steps between filter-embedding refreshes (0: only on demand).  At batch 4
    # training runs ~500 steps/s here, so 500 is a refresh a second: each is a few ms in the worker and a
    # 20-point t-SNE (~50-100 ms) in the embedding process, which must not crowd training off the 2 cores.
    embed_refresh_every: int = 500
    embed_images: int = 20_000  # images embedded in the images mode (as many as the data set has, if fewer)
    embed_include_train: bool = True  # images mode: training images after the held-out ones (CIFAR 10k+10k)

    def __post_init__(self) -> None:
        # Ranges that keep the session alive: a nan timeout never fires, a fps of 0.001 freezes the window.
        # The worker checks the hyperparameters it is sent (features.training.trainer.Hyper).
        checks = {
            "worker_timeout": (1.0, 3600.0),
            "publish_hz": (0.1, 240.0),
            "max_fps": (0.0, 1000.0),
            "jitter_gain": (0.0, 100.0),
            "ui_scale": (0.5, 4.0),
        }
        for name, (lo, hi) in checks.items():
            value = getattr(self, name)
            if not (isinstance(value, int | float) and lo <= value <= hi):  # nan fails the comparison
                raise ValueError(f"{name}: {value} is outside {lo:g}..{hi:g}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: {self.dataset!r} is not one of {', '.join(DATASETS)}")
        if self.embed_refresh_every < 0 or not 1 <= self.embed_images <= 1_000_000:
            raise ValueError("embed_refresh_every must be >= 0 and embed_images 1..1000000")

    def hyper(self) -> dict:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "batch_size": self.batch_size,
            "weight_decay": self.weight_decay,
            "optimizer": self.optimizer,
            "seed": self.seed,
        }


def progress_label(progress: tuple[str, int | None, int | None]) -> tuple[str, float | None]:
    """The text and bar fraction for a (what, done, total) the worker reports while it loads its data:
    ("Downloading CIFAR-10: 45.2 of 170.5 MB", 0.265), ("... 12.3 MB", None) when the size is unknown,
    ("Extracting CIFAR-10 ...", None) for a stage without a measure.  None: no fraction to show."""
    what, done, total = progress
    if done is None:
        return f"{what} ...", None
    if total is None or total <= 0:
        return f"{what}: {_size(done)}", None
    unit, div = ("MB", 1e6) if total >= 1e6 else ("kB", 1e3)
    return f"{what}: {done / div:.1f} of {total / div:.1f} {unit}", min(max(done / total, 0.0), 1.0)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


class Series:
    """A growing (x, y) series for a chart; past `cap` points the older half is thinned 2:1, so a long run
    keeps its whole shape in bounded memory and plotting time."""

    def __init__(self, cap: int = 20_000) -> None:
        self.cap = cap
        self._x = np.empty(1024, np.float64)
        self._y = np.empty(1024, np.float64)
        self.n = 0
        self._shown: tuple[int, np.ndarray, np.ndarray] | None = None

    def append(self, x, y) -> None:
        x = np.atleast_1d(np.asarray(x, np.float64))
        y = np.atleast_1d(np.asarray(y, np.float64))
        need = self.n + len(x)
        if need > len(self._x):
            size = max(need, 2 * len(self._x))
            self._x = np.resize(self._x, size)
            self._y = np.resize(self._y, size)
        self._x[self.n : need] = x
        self._y[self.n : need] = y
        self.n = need
        while self.n > self.cap:
            half = self.n // 2
            keep = np.r_[np.arange(0, half, 2), np.arange(half, self.n)]
            k = len(keep)
            self._x[:k] = self._x[keep]
            self._y[:k] = self._y[keep]
            self.n = k

    def display(self, max_points: int = 600) -> tuple[np.ndarray, np.ndarray]:
        """At most about `max_points` points for plotting: past that, each bucket of points becomes its
        minimum and its maximum, so spikes of the batch loss survive.  Cached until the series grows."""
        n = self.n
        if n <= max_points:
            return self.x, self.y
        if self._shown is not None and self._shown[0] == n:
            return self._shown[1], self._shown[2]
        per = math.ceil(2 * n / max_points)
        m = n // per * per
        xb = self._x[:m].reshape(-1, per)
        yb = self._y[:m].reshape(-1, per)
        x = np.repeat(xb[:, 0], 2)
        y = np.stack([yb.min(axis=1), yb.max(axis=1)], axis=1).reshape(-1)
        x = np.r_[x, self._x[m:n]]
        y = np.r_[y, self._y[m:n]]
        self._shown = (n, x, y)
        return x, y

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]

    @property
    def last_x(self) -> float:
        return float(self._x[self.n - 1]) if self.n else -math.inf

    def clear(self) -> None:
        self.n = 0
        self._shown = None


@dataclass
class Charts:
    loss: Series = field(default_factory=Series)  # batch loss per step
    loss_smooth: Series = field(default_factory=Series)  # the trainer's smoothed loss, per snapshot
    acc: Series = field(default_factory=Series)  # smoothed training accuracy, per snapshot
    val_acc: Series = field(default_factory=Series)  # one point per validation pass
    rate: Series = field(default_factory=Series)  # images/s per snapshot, x = step

    def clear(self) -> None:
        for s in (self.loss, self.loss_smooth, self.acc, self.val_acc, self.rate):
            s.clear()


@dataclass
class TrainState:
    # -- what the worker reports (written by the scene) ---------------------------------------------
    status: str = "starting the training process (importing torch, loading the data)..."
    error: str | None = None  # dead worker, failed command: shown in red
    progress: tuple[str, int | None, int | None] | None = None  # (what, done, total) while the data loads
    message: str = ""  # the newest answer or worker message (NaN pause, refused edit, saved ...)
    message_is_error: bool = False
    dataset: str = ""
    dataset_source: str = ""
    dataset_note: str = ""  # why the built-in digits stand in for the data set asked for
    classes: tuple[str, ...] = ()
    running: bool = False  # the newest snapshot says training runs
    step: int = 0
    epoch: float = 0.0
    loss: float = math.nan
    loss_smooth: float = math.nan
    acc_smooth: float = math.nan
    val_acc: float = math.nan
    images_per_s: float = math.nan
    stale: bool = False  # the worker has gone quiet (stopped, stuck, or in a long step): numbers are old
    activity: str = ""  # what a busy worker is in, when it takes long ("in step 1234, batch 4096 for 4 s")
    widths: list[int] = field(default_factory=list)  # conv filters per layer, from the current spec
    nodes: int = 0
    worker_restarts: int = 0
    charts: Charts = field(default_factory=Charts)
    monitor_index: int = 0
    steps_per_s: float = math.nan  # measured from the snapshots' step counts and clocks
    monitor_label: int = -1
    monitor_pred: int = -1
    monitor_prob: float = math.nan
    n_val: int = 0
    lr_now: float = math.nan  # the optimizer's lr: below `lr` while it warms up again after a layer edit
    warm_left: int = 0  # steps of that warm-up left
    clip_norm: float = 0.0  # each step's gradient norm is clipped to this (0: not clipped)

    # -- what the user edits (read by the scene) ---------------------------------------------------
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 4
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    seed: int = 0
    hyper_note: str = ""  # e.g. the lr proposed for Adadelta
    selected: tuple[int, int] | None = None  # (conv layer index from 0, filter index) picked in 3D
    new_layer_position: int = 0  # where "add layer" inserts (0 = before conv1)
    new_layer_width: int = 16
    checkpoint_path: str = "checkpoints/revacnn.json"
    colormap: str = "harley"
    color_range: str = "robust"  # one of RANGES
    speed: int = len(SPEEDS) - 1  # index into SPEEDS (the last: full speed)
    monitor_cycle: bool = False  # show the next held-out image every MONITOR_CYCLE_S seconds
    show_jitter: bool = True
    jitter_gain: float = 4.0
    show_paths: bool = True
    show_all_paths: bool = False  # past EXACT_EDGES paths, draw them all instead of a sample
    paths_drawn: int = 0  # paths drawn / candidates (top half of the maps); less past EXACT_EDGES
    paths_total: int = 0
    show_frame_time: bool = False
    reset_camera: bool = False
    requests: list[tuple[str, dict]] = field(default_factory=list)  # commands for the worker
    # -- the Embedding window -----------------------------------------------------------------------
    embed: EmbedPanelState = field(default_factory=EmbedPanelState)
    embed_include_train: bool = True  # images mode: add training images after the held-out ones
    embed_note: str = ""  # images mode: which images the layout shows (and why fewer than asked)

    def request(self, name: str, **kwargs) -> None:
        self.requests.append((name, kwargs))

    def take_requests(self) -> list[tuple[str, dict]]:
        out, self.requests = self.requests, []
        return out
