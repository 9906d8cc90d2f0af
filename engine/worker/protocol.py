"""The messages between the render process and the torch worker, and the Result the render side hands out.

Only small tuples travel through the pipe: a command, a sequence number, a slot index, or once per model
the NetSpec as a dict.  Arrays never do: images and activations live in shared memory (see shm.py).

Render -> worker                                   Worker -> render
  (LOAD, load_id, model, weights_path | None)        (SPEC, load_id, spec_dict)   model loaded
  (ATTACH, load_id, input_name, result_names)        (ERROR, load_id, text)       load/attach/infer failed
  (INFER, seq)                                       (ATTACHED, load_id)          segments mapped
  (QUIT,)                                            (DONE, seq, slot, compute_s) result in slot

A load goes LOAD -> SPEC -> (render creates segments) ATTACH -> ATTACHED -> (render unlinks them).
`load_id` lets the render side ignore answers to a load it has since superseded.

No torch and no numpy-per-frame pickling here: this module is imported by both processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOAD = "load"
ATTACH = "attach"
INFER = "infer"
QUIT = "quit"

SPEC = "spec"
ERROR = "error"
ATTACHED = "attached"
DONE = "done"

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


def spec_msg(load_id: int, spec: dict) -> tuple:
    return (SPEC, load_id, spec)


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
