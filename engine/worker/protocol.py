"""The messages between the render process and the torch worker, and the Result the render side hands out.

Only small tuples travel through the pipe: a command, a sequence number, a slot index, or once per model
the NetSpec as a dict.  Arrays never do: images and activations live in shared memory (see shm.py).

Render -> worker                                   Worker -> render
  (LOAD, load_id, model, weights_path | None)        (SPEC, load_id, spec_dict, manifest)  model loaded
  (ATTACH, load_id, input_name, result_names)        (ERROR, load_id, text)       load/attach/infer failed
  (INFER, seq)                                       (ATTACHED, load_id)          segments mapped
  (WEIGHTS, load_id, segment_name)                   (WEIGHTS_WRITTEN, load_id)   parameters in the segment
  (QUIT,)                                            (DONE, seq, slot, compute_s) result in slot

A load goes LOAD -> SPEC -> (render creates segments) ATTACH -> ATTACHED -> (render unlinks them).
`load_id` lets the render side ignore answers to a load it has since superseded.

Weights travel once per model, right after ATTACHED: the SPEC names every parameter array
(`manifest`: (layer, key, shape) tuples, e.g. ("conv1", "weight", (6, 1, 5, 5)), packed in that
order as float32), the render side creates one segment that size and sends WEIGHTS, the worker
attaches, writes them all, closes and answers WEIGHTS_WRITTEN; the render side copies them out,
unlinks and closes.  Results flow meanwhile: the nodes do not wait for the weights.

No torch and no numpy-per-frame pickling here: this module is imported by both processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOAD = "load"
ATTACH = "attach"
INFER = "infer"
QUIT = "quit"
WEIGHTS = "weights"

SPEC = "spec"
ERROR = "error"
ATTACHED = "attached"
DONE = "done"
WEIGHTS_WRITTEN = "weights_written"

INPUT_SHAPE = (28, 28)  # what submit() accepts: one MNIST-style image, ink = 1
INPUT_SIZE = INPUT_SHAPE[0] * INPUT_SHAPE[1]
N_CLASSES = 10
RESULT_SLOTS = 2  # double buffer: the worker writes one slot while the render side may read the other


def load_msg(load_id: int, model: str, weights: str | None) -> tuple:
    return (LOAD, load_id, model, weights)


def attach_msg(load_id: int, input_name: str, result_names: tuple[str, ...]) -> tuple:
    return (ATTACH, load_id, input_name, tuple(result_names))


def infer_msg(seq: int) -> tuple:
    return (INFER, seq)


def quit_msg() -> tuple:
    return (QUIT,)


def weights_msg(load_id: int, segment_name: str) -> tuple:
    return (WEIGHTS, load_id, segment_name)


Manifest = tuple[tuple[str, str, tuple[int, ...]], ...]  # (layer, key, shape) per parameter array


def spec_msg(load_id: int, spec: dict, manifest: Manifest = ()) -> tuple:
    return (
        SPEC,
        load_id,
        spec,
        tuple((str(a), str(k), tuple(int(s) for s in shape)) for a, k, shape in manifest),
    )


def weights_written_msg(load_id: int) -> tuple:
    return (WEIGHTS_WRITTEN, load_id)


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


def error_msg(load_id: int, text: str) -> tuple:
    return (ERROR, load_id, text)


def attached_msg(load_id: int) -> tuple:
    return (ATTACHED, load_id)


def done_msg(seq: int, slot: int, compute_s: float) -> tuple:
    return (DONE, seq, slot, compute_s)


@dataclass(frozen=True)
class Result:
    """One finished inference, copied out of shared memory (safe to keep across frames)."""

    seq: int  # the submit() number of the input this result belongs to
    activations: np.ndarray  # float32 (spec.total_nodes,), indexed by node id; output layer = logits
    probabilities: np.ndarray  # float32 (10,), softmax of the output layer
    latency_s: float  # submit() -> this result seen by poll(), in the render process
    compute_s: float  # forward pass + copy into shared memory, measured in the worker
    spec_version: int  # WorkerHandle.spec_version when it was read: which spec the ids refer to
    model: str
