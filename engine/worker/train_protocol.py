"""What the render process and the training worker say to each other, and how a snapshot is laid out.

Imported by both processes: no torch, only numpy.  The pipe carries small tuples (commands, replies, the
NetSpec as a dict once per architecture); everything per frame goes through one shared-memory Slot
(engine/worker/shm.py) that the render side creates for each announced architecture.

Render -> worker                                    Worker -> render
  (ATTACH, version, slot_name)                        (SPEC, version, spec_dict, info)   new architecture
  (CMD, cmd_id, name, kwargs)                         (ATTACHED, version)                 slot mapped
  (READ, seq)          snapshot seq was read          (SNAP, version, seq)                snapshot written
  (QUIT,)
                                                      (REPLY, cmd_id, ok, text)           command done
                                                      (MESSAGE, text)                     NaN pause etc.
                                                      (ERROR, text)                       fatal; it exits

Flow control: while training runs, the worker writes the next snapshot only once the render side has
read the previous one (READ), at most `publish_hz` times a second; so it never spends time on snapshots
nobody draws (a render loop at 30 frames/s gets 30 snapshots/s).  Snapshots after a command go out at once.

A SPEC goes out at start and after every architecture change, reset and load (`info["reason"]`); the
render side creates a slot sized by `SnapshotLayout(spec)`, sends ATTACH, and unlinks the segment once
ATTACHED arrives (STYLE habit 3).  `version` lets either side drop answers to a superseded SPEC.

Snapshot payload, float32, in this order (SnapshotLayout has the offsets):
  stats     STATS values (step, losses, accuracies, the optimizer's own lr/momentum/wd, ...)
  history   HISTORY rows of (step, batch loss, batch accuracy), oldest first; stats["history_rows"] are valid
  acts      activations of the monitored image for every node, by node id (output layer: logits)
  jitter    smoothed mean |dL/dw| per filter coefficient, per conv filter, conv layers in order
  sums      per grid layer (spec order), the sum of each channel's map for the monitored image (paths)
  filters   the first conv layer's weights, (filters, in_channels, k, k) flattened
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.graph.spec import NetSpec

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
)
STAT_INDEX = {name: i for i, name in enumerate(STATS)}
HISTORY = 256  # per-step rows per snapshot: up to HISTORY steps between two snapshots are all charted
HISTORY_COLS = 3  # step, loss, acc


def attach_msg(version: int, name: str) -> tuple:
    return (ATTACH, version, name)


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
