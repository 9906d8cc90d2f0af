"""A stand-in for the inference worker handle that serves a model traced in this process
(models/trace.py): the explore scene sees a Dag, the applied weights and each drawing's activations, as
it will from the worker that loads any model.  Tests only (it imports torch)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import torch
from convscope.features.inference.messages import Result


class TracedWorker:
    """The calls ExploreScene makes on WorkerHandle; a drawing (28 x 28) is resized to the model's
    input and copied to every channel."""

    def __init__(self, model: torch.nn.Module, shape: tuple[int, ...], name: str, classes=()) -> None:
        from convscope.models.trace import trace

        self.traced = trace(model, shape, name=name)
        self.model = name
        self.spec = self.traced.dag
        c = shape[0] if len(shape) == 3 else 1
        mean, std = (0.0,) * c, (1.0,) * c
        self.input_spec = SimpleNamespace(shape=shape, mean=mean, std=std, classes=tuple(classes))
        self.weights = self.traced.weights
        self.spec_version = self.weights_version = 1
        self.error = None
        self.status = ""  # load progress text (none: the model is traced up front)
        self.failed_model = None
        self.restarts = 0
        self.alive = self.ready = True
        self.state = "ready"
        self._seq = 0
        self._pending = None

    def submit(self, image: np.ndarray) -> int:
        self._seq += 1
        self._pending = (self._seq, np.asarray(image, np.float32), time.perf_counter())
        return self._seq

    def poll(self):
        from convscope.models.trace import activations

        if self._pending is None:
            return None
        seq, image, t0 = self._pending
        self._pending = None
        c, h, w = self.input_spec.shape
        if image.shape == (c, h, w):  # the model's own tensor (a picture, or a black "no picture")
            x = torch.from_numpy(image)[None]
        else:  # a drawing: the like of the real worker's fallback, area-resized onto every channel
            x = torch.nn.functional.interpolate(torch.from_numpy(image)[None, None], (h, w), mode="area")
            x = x.expand(1, c, h, w).contiguous()
        acts = activations(self.traced, x)
        return Result(seq, acts.flat, acts.probabilities, time.perf_counter() - t0, 0.0, 1, self.model)

    def check(self) -> bool:
        return False

    def launch(self) -> None:
        pass

    def close(self) -> None:
        pass

    def switch_model(self, name: str) -> None:
        self.model = name

    def batch(self, _bid):
        return None

    def infer_batch(self, _images) -> int:
        return 0
