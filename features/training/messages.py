"""The training protocol: the typed messages between the render process and the training process, the
commands, the heartbeat phases, and how a snapshot is laid out in its shared-memory slot.

Both processes import it: numpy only.  The pipe carries small messages (commands, replies, the NetSpec as a
dict once per architecture); arrays go through slots the render side creates: a snapshot slot and a filters
slot per announced architecture (layouts in embedding/messages.py), one per images job.  docs/PROTOCOLS.md
has the message table, the flow control and the heartbeat.

Snapshot payload, float32, in this order (SnapshotLayout has the offsets): stats (STATS), history (HISTORY
rows of step, loss, accuracy), acts (every node, by id), jitter (per filter), sums (per grid layer and
channel), filters (the first conv layer's weights), pairs (per conv layer, each filter's kernel summed per
input channel: (C_out, C_in), the weight of a path in the scene).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from convscope.engine.graph.spec import NetSpec
from convscope.features.embedding.messages import (  # noqa: F401  (the images-job messages)
    IMAGE_MESSAGES,
    ImgAttached,
    ImgDone,
    ImgFailed,
    ImgProgress,
    conv_layers,
)

PROGRESS_HZ = 10.0  # data-loading progress messages a second at most: a progress bar needs no more

# Heartbeat phases (engine/proc/heartbeat.py): where the worker was when it last beat, with two numbers.
# STEP, WAIT, COMMAND, PUBLISH, IMAGES and LOADING are covered (a thread beats through them: a long step
# is no hang); SAVE and LOAD are file I/O and beat only before they start, so a stuck open() goes silent.
PHASE_LOOP, PHASE_STEP, PHASE_WAIT, PHASE_COMMAND, PHASE_PUBLISH = 0, 1, 2, 3, 4
PHASE_IMAGES, PHASE_SAVE, PHASE_LOAD, PHASE_LOADING = 5, 6, 7, 8
PHASES = {  # format strings over a, b
    PHASE_LOOP: "between steps, at step {a}",
    PHASE_STEP: "in step {a}, batch {b}",
    PHASE_WAIT: "paused at step {a}, waiting for a command",
    PHASE_COMMAND: "running {command} at step {a}",
    PHASE_PUBLISH: "writing a snapshot at step {a}",
    PHASE_IMAGES: "computing image vectors at step {a}",
    PHASE_SAVE: "saving a checkpoint at step {a}",
    PHASE_LOAD: "loading a checkpoint at step {a}",
    PHASE_LOADING: "loading the data set",
}

OPTIMIZERS = ("sgd", "adam", "adadelta")  # features.training.trainer.OPTIMIZERS, without importing torch
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


def describe_phase(phase: int, a: int, b: int) -> str:
    """A heartbeat's phase in words, e.g. "in step 1234, batch 4096"."""
    command = COMMANDS[b] if 0 <= b < len(COMMANDS) else f"command {b}"
    return PHASES.get(phase, f"phase {phase}").format(a=a, b=b, command=command)


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
    "val_loss",  # mean held-out cross-entropy of the latest validation pass, NaN before the first
    "hyper_lr",  # the learning rate set; opt_lr is lower while it warms up again after a layer edit
    "clip_norm",  # each step's gradient norm is clipped to this since a layer edit (0: not clipped)
    "warm_left",  # steps of that lr warm-up left
)
STAT_INDEX = {name: i for i, name in enumerate(STATS)}
HISTORY = 1024  # per-step rows per snapshot: up to HISTORY steps between two snapshots are all charted
# (at ~500 steps/s a render process held up for half a second, on a busy machine, missed rows at 256)
HISTORY_COLS = 3  # step, loss, acc


# -- render -> worker -----------------------------------------------------------------------------


class Attach(NamedTuple):
    version: int  # of the Spec these segments are for
    name: str  # the snapshot slot
    filters_name: str  # the filters slot


class Cmd(NamedTuple):
    cmd_id: int
    name: str  # one of COMMANDS
    kwargs: dict


class Read(NamedTuple):
    seq: int  # the snapshot the render side has read: the worker may write the next


class Quit(NamedTuple):
    pass


def command(cmd_id: int, name: str, kwargs: dict) -> Cmd:
    """A Cmd, refused here (ValueError) for a name the worker does not know."""
    if name not in COMMANDS:
        raise ValueError(f"unknown training command {name!r}; known: {COMMANDS}")
    return Cmd(cmd_id, name, dict(kwargs))


# -- worker -> render -----------------------------------------------------------------------------


class Spec(NamedTuple):
    version: int
    spec: dict  # NetSpec.to_dict()
    info: dict  # reason, dataset, source, note, classes, sizes, widths, hyper, paused, message


class Attached(NamedTuple):
    version: int


class Snap(NamedTuple):
    version: int
    seq: int  # a snapshot is in the slot with this seq


class Reply(NamedTuple):
    cmd_id: int
    ok: bool
    text: str


class Message(NamedTuple):
    text: str  # a NaN pause and the like, for the UI


class Error(NamedTuple):
    text: str  # fatal: the worker exits


class Filters(NamedTuple):
    cmd_id: int
    version: int
    meta: dict  # layer, layer_index, label, loss, step, monitor_index, seconds


class Progress(NamedTuple):
    what: str  # a stage in words
    done: int | None  # bytes of a download, None for a stage without a measure
    total: int | None


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
    pairs: slice = field(init=False)
    pair_shapes: dict[str, tuple[int, int]] = field(init=False)  # conv layer -> (C_out, C_in), spec order
    count: int = field(init=False)

    def __post_init__(self) -> None:
        convs = conv_layers(self.spec)
        if not convs:
            raise ValueError(f"{self.spec.model}: a training snapshot needs at least one conv layer")
        first = convs[0]
        before = self.spec.layers[self.spec.index(first.name) - 1]
        k = first.kernel or 1
        shape = (first.shape[0], before.shape[0], k, k)
        pair_shapes = {
            c.name: (c.shape[0], self.spec.layers[self.spec.index(c.name) - 1].shape[0]) for c in convs
        }
        sizes = [
            ("stats", len(STATS)),
            ("history", HISTORY * HISTORY_COLS),
            ("acts", self.spec.total_nodes),
            ("jitter", sum(c.shape[0] for c in convs)),
            ("sums", sum(g.shape[0] for g in grid_layers(self.spec))),
            ("filters", int(np.prod(shape))),
            ("pairs", sum(a * b for a, b in pair_shapes.values())),
        ]
        at = 0
        for name, n in sizes:
            object.__setattr__(self, name, slice(at, at + n))
            at += n
        object.__setattr__(self, "filter_shape", shape)
        object.__setattr__(self, "pair_shapes", pair_shapes)
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
    pair_weights: dict[str, np.ndarray]  # conv layer name -> (C_out, C_in) float32: kernels summed per input

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
    pairs, at = {}, layout.pairs.start
    for name, (c_out, c_in) in layout.pair_shapes.items():
        pairs[name] = buf[at : at + c_out * c_in].reshape(c_out, c_in)
        at += c_out * c_in
    return TrainSnapshot(
        seq=seq,
        spec_version=version,
        stats=stats,
        history=history,
        activations=buf[layout.acts],
        jitter=buf[layout.jitter],
        filter_sums=sums,
        first_filters=buf[layout.filters].reshape(layout.filter_shape),
        pair_weights=pairs,
    )
