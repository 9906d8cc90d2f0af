"""What the render process and the training worker say to each other, and how a snapshot is laid out.

Imported by both processes: no torch, only numpy.  The pipe carries small tuples (commands, replies, the
NetSpec as a dict once per architecture); arrays go through shared-memory Slots (engine/worker/shm.py) that
the render side creates: a snapshot slot and a filters slot per announced architecture, one per images job.

Render -> worker                                    Worker -> render
  (ATTACH, version, slot_name, filters_name)          (SPEC, version, spec_dict, info)   new architecture
  (CMD, cmd_id, name, kwargs)                         (ATTACHED, version)                 slots mapped
  (READ, seq)          snapshot seq was read          (SNAP, version, seq)                snapshot written
  (QUIT,)
                                                      (REPLY, cmd_id, ok, text)           command done
                                                      (MESSAGE, text)                     NaN pause etc.
                                                      (ERROR, text)                       fatal; it exits
                                                      (FILTERS, cmd_id, version, meta)    filter vectors in
                                                      (IMG_ATTACHED, cmd_id)              segment mapped
                                                      (IMG_PROGRESS, cmd_id, fraction)    a batch more
                                                      (IMG_DONE, cmd_id, meta)            segment complete
                                                      (IMG_FAILED, cmd_id, text)          job gave up
                                                      (PROGRESS, what, done, total)       loading the data

PROGRESS comes only before the first SPEC of a process, while it loads its data: `what` is a stage in
words ("Downloading CIFAR-10", "Extracting CIFAR-10", "Loading MNIST"), `done` and `total` bytes of a
download (total None when the server does not say), both None for a stage without a measure.  The worker
sends at most PROGRESS_HZ of them a second (a new stage and a finished download always go out).

Flow control: while training runs, the worker writes the next snapshot only once the render side has
read the previous one (READ), at most `publish_hz` times a second; so it never spends time on snapshots
nobody draws (a render loop at 30 frames/s gets 30 snapshots/s).  Snapshots after a command go out at once.

A SPEC goes out at start and after every architecture change, reset and load (`info["reason"]`); the
render side creates a slot sized by `SnapshotLayout(spec)` and the filters slot, sends ATTACH, and unlinks
both once ATTACHED arrives.  `version` lets either side drop answers to a superseded SPEC.

The 2D embedding view asks for vectors with two commands; arrays never go through the pipe:
  embed_filters(layer)  `filter_vectors` of conv layer `layer` for the monitored image and its label, written
                        into a second slot of each architecture (the filters slot, named in ATTACH, sized by
                        `filter_slot_count` for the largest conv layer); then FILTERS carries only metadata
                        (layer, shapes, label, loss, step).  Layout of the payload: `FilterLayout`.  Each
                        filter has a stable id that survives surgery (a removed filter's id is never reused
                        in its layer; the worker keeps them), so warm starts follow the filters, not indices.
  embed_images(layer, n, d, include_train, slot, count, max_dim)
                        one layer's activations of n images (held-out first, then training images when
                        `include_train`), computed one batch between training steps (`ImageVectors`).  The
                        render side creates the job's segment (`ImagesLayout`: labels, vectors, pixels) and
                        unlinks it at IMG_ATTACHED; IMG_PROGRESS reports; IMG_DONE: the segment is complete.
  cancel_images         drop the running images job.

Snapshot payload, float32, in this order (SnapshotLayout has the offsets):
  stats     STATS values (step, losses, accuracies, the optimizer's own lr/momentum/wd, ...)
  history   HISTORY rows of (step, batch loss, batch accuracy), oldest first; stats["history_rows"] are valid
  acts      activations of the monitored image for every node, by node id (output layer: logits)
  jitter    smoothed mean |dL/dw| per filter coefficient, per conv filter, conv layers in order
  sums      per grid layer (spec order), the sum of each channel's map for the monitored image (paths)
  filters   the first conv layer's weights, (filters, in_channels, k, k) flattened
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from convscope.engine.graph.spec import NetSpec
from convscope.engine.worker.embed_handle import KINDS

ATTACH = "attach"
CMD = "cmd"
READ = "read"
QUIT = "quit"

SPEC = "spec"
ATTACHED = "attached"
SNAP = "snap"
REPLY = "reply"
MESSAGE = "message"
ERROR = "error"
FILTERS = "filters"
IMG_ATTACHED = "img_attached"
IMG_PROGRESS = "img_progress"
IMG_DONE = "img_done"
IMG_FAILED = "img_failed"
PROGRESS = "progress"
PROGRESS_HZ = 10.0  # data-loading progress messages a second at most: a progress bar needs no more

OPTIMIZERS = ("sgd", "adam", "adadelta")  # engine.worker.training.OPTIMIZERS, without importing torch
COMMANDS = (
    "pause",
    "resume",
    "step",
    "reset",
    "set_hyper",
    "add_filter",
    "remove_filter",
    "add_layer",
    "remove_layer",
    "save",
    "load",
    "set_monitor_index",
    "validate",
    "embed_filters",
    "embed_images",
    "cancel_images",
    "set_speed",  # steps_per_s: at most that many training steps a second; None or 0: full speed
)

# Named float32 values at the start of every snapshot.  NaN stands for "none yet" (val_acc before the
# first validation pass).  opt_* are read back from the optimizer's param group after the step, so a
# test can see that a change really reached it; optimizer is an index into OPTIMIZERS.
STATS = (
    "step",  # optimizer updates applied to the current weights
    "epoch",  # fractional epochs
    "loss",  # latest batch loss (NaN when the guard fired)
    "loss_smooth",
    "acc",  # latest batch accuracy
    "acc_smooth",
    "val_acc",  # latest validation accuracy, NaN before the first pass
    "val_step",
    "images_per_s",  # the trainer's smoothed rate (step time only)
    "images_total",  # images trained since the worker started (throughput over any window)
    "clock",  # seconds since the worker started, when this snapshot was written
    "paused",
    "ok",  # 0 when the latest step hit the divergence guard
    "batch_size",  # the batch size in effect
    "opt_lr",
    "opt_momentum",
    "opt_weight_decay",
    "optimizer",
    "monitor_index",  # held-out image shown
    "monitor_label",  # its true class
    "n_val",  # held-out images to choose from
    "cmd",  # id of the newest command handled before this snapshot
    "history_rows",
    "publishes",  # snapshots written so far
    "publish_seconds",  # worker time spent writing them (before this one): their share of its clock
)
STAT_INDEX = {name: i for i, name in enumerate(STATS)}
HISTORY = 256  # per-step rows per snapshot: up to HISTORY steps between two snapshots are all charted
HISTORY_COLS = 3  # step, loss, acc


def attach_msg(version: int, name: str, filters_name: str) -> tuple:
    return (ATTACH, version, name, filters_name)


def cmd_msg(cmd_id: int, name: str, kwargs: dict) -> tuple:
    if name not in COMMANDS:
        raise ValueError(f"unknown training command {name!r}; known: {COMMANDS}")
    return (CMD, cmd_id, name, dict(kwargs))


def read_msg(seq: int) -> tuple:
    return (READ, seq)


def quit_msg() -> tuple:
    return (QUIT,)


def spec_msg(version: int, spec: NetSpec, info: dict) -> tuple:
    return (SPEC, version, spec.to_dict(), dict(info))


def attached_msg(version: int) -> tuple:
    return (ATTACHED, version)


def snap_msg(version: int, seq: int) -> tuple:
    return (SNAP, version, seq)


def reply_msg(cmd_id: int, ok: bool, text: str) -> tuple:
    return (REPLY, cmd_id, bool(ok), str(text))


def message_msg(text: str) -> tuple:
    return (MESSAGE, str(text))


def error_msg(text: str) -> tuple:
    return (ERROR, str(text))


def filters_msg(cmd_id: int, version: int, meta: dict) -> tuple:
    return (FILTERS, cmd_id, version, dict(meta))


def img_attached_msg(cmd_id: int) -> tuple:
    return (IMG_ATTACHED, cmd_id)


def img_progress_msg(cmd_id: int, fraction: float) -> tuple:
    return (IMG_PROGRESS, cmd_id, float(fraction))


def img_done_msg(cmd_id: int, meta: dict) -> tuple:
    return (IMG_DONE, cmd_id, dict(meta))


def img_failed_msg(cmd_id: int, text: str) -> tuple:
    return (IMG_FAILED, cmd_id, str(text))


def progress_msg(what: str, done: int | None, total: int | None) -> tuple:
    return (PROGRESS, str(what), None if done is None else int(done), None if total is None else int(total))


def conv_layers(spec: NetSpec) -> list:
    return [layer for layer in spec.layers if layer.kind == "conv"]


def grid_layers(spec: NetSpec) -> list:
    return [layer for layer in spec.layers if layer.is_grid]


@dataclass(frozen=True)
class SnapshotLayout:
    """Offsets of every block of a snapshot for one NetSpec (both processes compute it the same way)."""

    spec: NetSpec
    stats: slice = field(init=False)
    history: slice = field(init=False)
    acts: slice = field(init=False)
    jitter: slice = field(init=False)
    sums: slice = field(init=False)
    filters: slice = field(init=False)
    filter_shape: tuple[int, int, int, int] = field(init=False)
    count: int = field(init=False)

    def __post_init__(self) -> None:
        convs = conv_layers(self.spec)
        if not convs:
            raise ValueError(f"{self.spec.model}: a training snapshot needs at least one conv layer")
        first = convs[0]
        before = self.spec.layers[self.spec.index(first.name) - 1]
        k = first.kernel or 1
        shape = (first.shape[0], before.shape[0], k, k)
        sizes = [
            ("stats", len(STATS)),
            ("history", HISTORY * HISTORY_COLS),
            ("acts", self.spec.total_nodes),
            ("jitter", sum(c.shape[0] for c in convs)),
            ("sums", sum(g.shape[0] for g in grid_layers(self.spec))),
            ("filters", int(np.prod(shape))),
        ]
        at = 0
        for name, n in sizes:
            object.__setattr__(self, name, slice(at, at + n))
            at += n
        object.__setattr__(self, "filter_shape", shape)
        object.__setattr__(self, "count", at)


@dataclass
class TrainSnapshot:
    """One snapshot copied out of shared memory (safe to keep across frames)."""

    seq: int  # publish number in this worker
    spec_version: int  # the TrainHandle.spec_version its node ids refer to
    stats: dict[str, float]
    history: np.ndarray  # (rows, 3) float32: step, batch loss, batch accuracy (the newest rows)
    activations: np.ndarray  # (N,) float32 by node id; output layer holds logits
    jitter: np.ndarray  # (filters over all conv layers,) float32
    filter_sums: dict[str, np.ndarray]  # grid layer name -> (channels,) float32
    first_filters: np.ndarray  # (filters, in_channels, k, k) float32

    @property
    def paused(self) -> bool:
        return bool(self.stats["paused"])

    @property
    def step(self) -> int:
        return int(self.stats["step"])


def unpack(layout: SnapshotLayout, buf: np.ndarray, seq: int, version: int) -> TrainSnapshot:
    """Split a payload copy (`buf`, owned by the caller and not reused) into a TrainSnapshot of views."""
    stats = {name: float(v) for name, v in zip(STATS, buf[layout.stats], strict=True)}
    rows = int(max(0, min(HISTORY, stats["history_rows"])))
    history = buf[layout.history].reshape(HISTORY, HISTORY_COLS)[:rows]
    sums, at = {}, layout.sums.start
    for g in grid_layers(layout.spec):
        sums[g.name] = buf[at : at + g.shape[0]]
        at += g.shape[0]
    return TrainSnapshot(
        seq=seq,
        spec_version=version,
        stats=stats,
        history=history,
        activations=buf[layout.acts],
        jitter=buf[layout.jitter],
        filter_sums=sums,
        first_filters=buf[layout.filters].reshape(layout.filter_shape),
    )


# -- embedding view ------------------------------------------------------------------------------
MAX_IMAGE_DIM = 2048  # ImageVectors' max_dim: wider maps are average pooled (see image_dim)


@dataclass(frozen=True)
class FilterLayout:
    """Where one conv layer's filter vectors sit in the filters slot: stable ids, then the four KINDS."""

    layer: str
    index: int  # among the conv layers, from 0
    count: int  # filters (C_out)
    weight_shape: tuple[int, int, int]  # (C_in, k, k): a coefficient / filter-gradient row as a filter
    map_shape: tuple[int, int]  # (H, W): an activation / activation-gradient row as a map

    @classmethod
    def of(cls, spec: NetSpec, index: int) -> FilterLayout:
        convs = conv_layers(spec)
        if not 0 <= index < len(convs):
            raise ValueError(f"conv layer index {index} out of range: the network has {len(convs)}")
        conv = convs[index]
        before = spec.layers[spec.index(conv.name) - 1]
        k = conv.kernel or 1
        c, h, w = conv.shape
        return cls(conv.name, index, int(c), (int(before.shape[0]), int(k), int(k)), (int(h), int(w)))

    def dim(self, kind: str) -> int:
        return int(
            np.prod(self.weight_shape if kind in ("coefficients", "filter_gradients") else self.map_shape)
        )

    @property
    def ids(self) -> slice:
        return slice(0, self.count)

    def block(self, kind: str) -> slice:
        at = self.count
        for k in KINDS:
            n = self.count * self.dim(k)
            if k == kind:
                return slice(at, at + n)
            at += n
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")

    @property
    def total(self) -> int:
        return self.count * (1 + sum(self.dim(k) for k in KINDS))


def filter_slot_count(spec: NetSpec) -> int:
    """Floats in the filters slot of `spec`: enough for its largest conv layer."""
    return max(FilterLayout.of(spec, i).total for i in range(len(conv_layers(spec))))


@dataclass
class FilterData:
    """One layer's filter vectors, copied out of the filters slot (safe to keep)."""

    cmd: int  # the embed_filters command that asked for them
    spec_version: int  # the TrainHandle.spec_version the filters belong to
    layer: str
    layer_index: int
    ids: np.ndarray  # (C,) int64 stable filter ids, in filter index order (row i is filter i)
    vectors: dict[str, np.ndarray]  # kind -> (C, D) float32, every kind of KINDS
    weight_shape: tuple[int, int, int]
    map_shape: tuple[int, int]
    label: int  # the monitored image's class the gradients are for
    loss: float  # its cross-entropy
    step: int  # optimizer steps of the weights they come from
    monitor_index: int
    seconds: float  # time the worker took

    def shape_of(self, kind: str) -> tuple[int, ...]:
        return self.weight_shape if kind in ("coefficients", "filter_gradients") else self.map_shape


def unpack_filters(lay: FilterLayout, buf: np.ndarray, cmd: int, version: int, meta: dict) -> FilterData:
    return FilterData(
        cmd=cmd,
        spec_version=version,
        layer=lay.layer,
        layer_index=lay.index,
        ids=buf[lay.ids].astype(np.int64),
        vectors={k: buf[lay.block(k)].reshape(lay.count, lay.dim(k)).copy() for k in KINDS},
        weight_shape=lay.weight_shape,
        map_shape=lay.map_shape,
        label=int(meta["label"]),
        loss=float(meta["loss"]),
        step=int(meta["step"]),
        monitor_index=int(meta["monitor_index"]),
        seconds=float(meta["seconds"]),
    )


def image_dim(shape: tuple[int, ...], max_dim: int = MAX_IMAGE_DIM) -> int:
    """Length of one image's vector for a layer of `shape`: what embed_vectors.ImageVectors makes of it
    (grid maps wider than max_dim are average pooled to s x s; `pooled_side`, torch-free here)."""
    if len(shape) == 3:
        c, h, w = (int(v) for v in shape)
        if c * h * w <= max_dim:
            return c * h * w
        s = max(1, min(h, w, math.isqrt(max(max_dim // max(c, 1), 1))))
        return c * s * s
    return int(np.prod(shape))


@dataclass(frozen=True)
class ImagesLayout:
    """The segment of one images job: labels (n floats), vectors (n x d), then the images' uint8 pixels
    packed four to a float (so the hover picture needs no other round trip)."""

    n: int
    d: int
    image_shape: tuple[int, int, int]  # (C, H, W) of the input images

    @property
    def labels(self) -> slice:
        return slice(0, self.n)

    @property
    def vectors(self) -> slice:
        return slice(self.n, self.n + self.n * self.d)

    @property
    def pixel_bytes(self) -> int:
        return self.n * int(np.prod(self.image_shape))

    @property
    def pixels(self) -> slice:
        at = self.n + self.n * self.d
        return slice(at, at + (self.pixel_bytes + 3) // 4)

    @property
    def count(self) -> int:
        return self.pixels.stop

    def pixel_view(self, payload: np.ndarray) -> np.ndarray:
        """(n, C, H, W) uint8 view of the pixels inside `payload` (a float32 array of `count`)."""
        return payload[self.pixels].view(np.uint8)[: self.pixel_bytes].reshape(self.n, *self.image_shape)
