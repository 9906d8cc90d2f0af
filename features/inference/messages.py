"""The inference protocol: the typed messages between the render process and the network process, the
input and result sizes, the weights manifest, and the Result the render side hands out.

Only small messages go through the pipe (a command, a sequence number, a slot index, once per model the
Dag as a dict and its InputSpec); inputs, activations, weights and batches go through shared memory
(engine/proc/shm.py).  Sizes follow the model: an input slot holds prod(InputSpec.shape) floats, a result
slot the Dag's nodes followed by one probability per class.
docs/PROTOCOLS.md has the message table and the order of a load.  Both processes import this module: no
torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

INPUT_SHAPE = (28, 28)  # a drawing (ink = 1 on 0): submit() also takes one, and preprocesses it
INPUT_SIZE = INPUT_SHAPE[0] * INPUT_SHAPE[1]
N_CLASSES = 10  # the shipped networks' classes (a traced model's count is len(InputSpec.classes))
DEVICES = ("auto", "cpu", "cuda", "mps")
RESULT_SLOTS = 2  # double buffer: the worker writes one slot while the render side may read the other
IMAGE_STEP_S = 0.008  # target seconds of one images-job batch: the most a drawing waits behind one


Manifest = tuple[tuple[str, str, tuple[int, ...]], ...]  # (layer, key, shape) per parameter array


def manifest_size(manifest: Manifest) -> int:
    """float32 values the manifest's arrays take, packed end to end."""
    total = 0
    for _, _, shape in manifest:
        n = 1
        for s in shape:
            n *= int(s)
        total += n
    return total


def unpack_weights(manifest: Manifest, flat: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Split the packed float32 values into {layer: {key: array of its shape}} (views of `flat`)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    at = 0
    for layer, key, shape in manifest:
        n = 1
        for s in shape:
            n *= int(s)
        out.setdefault(layer, {})[key] = flat[at : at + n].reshape(shape)
        at += n
    return out


class InputSpec(NamedTuple):
    """What the model takes and what its outputs mean (the worker fills it in from the model card)."""

    shape: tuple  # (C, H, W) or (N,): the tensor handed to the model, without the batch dim
    mean: tuple[float, ...]  # per channel (or one for all): the input is (x - mean) / std
    std: tuple[float, ...]
    classes: tuple[str, ...]  # one name per output (probabilities come in this order)

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

    def to_plain(self) -> InputSpec:
        """Plain ints, floats and strs (what crosses the pipe)."""
        return InputSpec(
            tuple(int(s) for s in self.shape),
            tuple(float(v) for v in self.mean),
            tuple(float(v) for v in self.std),
            tuple(str(c) for c in self.classes),
        )


# -- render -> worker -----------------------------------------------------------------------------


class Load(NamedTuple):
    load_id: int  # answers carry it, so the render side can drop those for a superseded load
    model: str  # a shipped name (models/registry.py), 'FILE.py:NAME' or 'package.module:NAME'
    weights: str | None  # a weights file, or None for the shipped one / the card's / none
    card: dict  # ModelCard.to_dict() of the command line / settings (overrides the model's own card)
    device: str  # one of DEVICES


class Attach(NamedTuple):
    load_id: int
    input_name: str
    result_names: tuple[str, ...]  # RESULT_SLOTS of them
    filters_name: str  # "" for a network without conv layers


class Infer(NamedTuple):
    seq: int  # the input slot holds this drawing (or a newer one)


class Quit(NamedTuple):
    pass


class Weights(NamedTuple):
    load_id: int
    segment_name: str  # sized for the manifest: copy every parameter in


class EmbedFilters(NamedTuple):
    job: int
    load_id: int
    layer: int  # an index among the conv layers


class OpenImages(NamedTuple):
    data_dir: str
    kind: str  # "grey" or "colour" (features/data/image_set.py): which images the model takes


class EmbedImages(NamedTuple):
    job: int
    load_id: int
    request: dict  # layer, n, d, include_train, max_dim, and the segments: slot/count, vectors/vectors_count


class CancelImages(NamedTuple):
    pass


class Batch(NamedTuple):
    batch_id: int
    count: int  # model inputs in the segment (count x InputSpec.size floats), answered with count x classes
    segment_name: str  # holds the inputs; the worker writes the probabilities after them


# -- worker -> render -----------------------------------------------------------------------------


class Progress(NamedTuple):
    load_id: int
    text: str  # what the load is doing now ("importing...", "tracing...", "warming up...")


class Spec(NamedTuple):
    load_id: int
    spec: dict  # Dag.to_dict() of the traced model
    input_spec: InputSpec
    manifest: Manifest  # the applied weights' arrays, in the order WEIGHTS packs them
    device: str  # where the model runs ("cpu", "cuda", "mps")


class Error(NamedTuple):
    load_id: int
    text: str


class Attached(NamedTuple):
    load_id: int


class WeightsWritten(NamedTuple):
    load_id: int


class Done(NamedTuple):
    seq: int
    slot: int  # which result slot holds it
    compute_s: float


class Filters(NamedTuple):
    job: int
    load_id: int
    meta: dict  # layer, layer_index, label, loss, seq, seconds


class EmbedFailed(NamedTuple):
    job: int
    text: str


class ImagesInfo(NamedTuple):
    # dataset, source, note, reason, n_test, n_train, classes, data_dir, kind, entry; or error, data_dir, kind
    info: dict


class BatchDone(NamedTuple):
    batch_id: int
    ok: bool
    text: str  # why not, when not ok


def batch_count(n: int, input_size: int = INPUT_SIZE, n_classes: int = N_CLASSES) -> int:
    """Floats in the segment of a Batch of n inputs: the inputs, then their probabilities."""
    return n * (input_size + n_classes)


def manifest_of(manifest) -> Manifest:
    """A manifest with plain types (what crosses the pipe)."""
    return tuple((str(a), str(k), tuple(int(s) for s in shape)) for a, k, shape in manifest)


@dataclass(frozen=True)
class Result:
    """One finished inference, copied out of shared memory (safe to keep across frames)."""

    seq: int  # the submit() number of the input this result belongs to
    activations: np.ndarray  # float32 (dag.total_nodes,), indexed by node id
    probabilities: np.ndarray  # float32 (classes,): softmax of the output, or exp of log-probabilities
    latency_s: float  # submit() -> this result seen by poll(), in the render process
    compute_s: float  # forward pass + copy into shared memory, measured in the worker
    spec_version: int  # WorkerHandle.spec_version when it was read: which spec the ids refer to
    model: str
