"""The torch worker process: loads a model, runs forward passes, writes activations to shared memory.

The render process starts `worker_main` with multiprocessing's "spawn" context (see handle.py).  This
is the only code in convscope that imports torch or `models` at run time, and it does so inside
`worker_main`: the render process must import this module to name the spawn target, so nothing at
module level may pull torch in.

Loop: block on the pipe, read every command that is waiting, act on them in order, then run one
forward pass on the newest input if any INFER arrived.  Once per model it also copies the model's
parameters into a segment the render side made for them (WEIGHTS; see protocol.py), so hovering
and explaining nodes never asks the worker anything.  Stale INFERs (input already computed) are
skipped, which is how a burst of requests coalesces into one pass.  Results alternate between two
slots.  On EOF (render process gone) the worker closes its segments and exits quietly.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from multiprocessing.connection import Connection

import numpy as np

from engine.worker import protocol as P
from engine.worker.shm import Slot


def worker_main(conn: Connection) -> None:
    """Entry point of the worker process; returns when told to quit or when the pipe closes."""
    # Ctrl+C reaches the whole process group; the render process decides when we stop, and a
    # KeyboardInterrupt traceback from here would only be noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    # Tiny nets: threads cost more in wake-ups than they save, and the machine is shared.
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    worker = _Worker(conn)
    try:
        worker.serve()
    finally:
        worker.release()
        conn.close()
    # Interpreter teardown with torch loaded takes ~0.5-1 s, and nothing left here needs it: every
    # resource is released above.  (An exception skips this and exits the normal, loud way.)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Worker:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.load_id = 0
        self.model = None
        self.spec = None
        self.input: Slot | None = None
        self.results: list[Slot] = []
        self.out: list = []  # torch views of the result payloads
        self.params: list = []  # (layer, key, float32 numpy array) in manifest order, for WEIGHTS
        self.img = np.zeros(P.INPUT_SIZE, np.float32)  # private copy of the newest input
        self.last_done = 0
        self.next_slot = 0

    def serve(self) -> None:
        while True:
            try:
                batch = [self.conn.recv()]
                while self.conn.poll():
                    batch.append(self.conn.recv())
            except (EOFError, OSError):
                return
            want = False
            for msg in batch:
                tag = msg[0]
                if tag == P.QUIT:
                    return
                if tag == P.LOAD:
                    want = False  # requests for the old model are moot
                    self.load(*msg[1:])
                elif tag == P.ATTACH:
                    self.attach(*msg[1:])
                elif tag == P.WEIGHTS:
                    self.write_weights(*msg[1:])
                elif tag == P.INFER:
                    want = True
            if want:
                self.infer()

    def send(self, msg: tuple) -> None:
        try:
            self.conn.send(msg)
        except OSError:
            pass  # render side gone; the next recv() sees EOF and we exit

    def load(self, load_id: int, name: str, weights: str | None) -> None:
        import torch

        from engine.graph.spec import NetSpec

        # A switch drops the old model first, so after a failed load there is no model at all and
        # both sides agree on that (no half-switched state).
        self.release()
        self.load_id = load_id
        try:
            # Imported here, inside the try, so a broken models package is reported, not a crash.
            from models.weights import WeightsError, load_model
        except Exception as exc:
            self.send(P.error_msg(load_id, f"cannot import models.weights: {type(exc).__name__}: {exc}"))
            return
        try:
            model = load_model(name, weights)
            spec = NetSpec.build(name, model.describe())
            with torch.no_grad():  # also warms torch up, so the first real request is not slow
                acts = model.forward_all(torch.zeros(1, 1, *P.INPUT_SHAPE))
            got = [(k, tuple(v.shape[1:])) for k, v in acts.items()]
            want = [(layer.name, layer.shape) for layer in spec.layers]
            if got != want:
                raise ValueError(f"model {name!r}: forward_all gives {got}, describe() promises {want}")
        except (WeightsError, ValueError) as exc:
            self.send(P.error_msg(load_id, str(exc)))
            return
        except Exception as exc:  # a broken model must not take the worker down with a traceback
            self.send(P.error_msg(load_id, f"could not load model {name!r}: {type(exc).__name__}: {exc}"))
            return
        try:
            params = layer_parameters(model, spec)
        except Exception as exc:  # weights for the details view are a bonus; the model still runs
            self.send(P.error_msg(load_id, f"model {name!r}: cannot list its parameters: {exc}"))
            params = []
        self.model, self.spec, self.params = model, spec, params
        manifest = tuple((layer, key, tuple(a.shape)) for layer, key, a in params)
        self.send(P.spec_msg(load_id, spec.to_dict(), manifest))

    def attach(self, load_id: int, input_name: str, result_names: tuple[str, ...]) -> None:
        import torch

        if load_id != self.load_id or self.spec is None:
            return  # answer to a load that a newer LOAD has replaced
        try:
            self.input = Slot.attach(input_name, P.INPUT_SIZE)
            for name in result_names:
                self.results.append(Slot.attach(name, self.spec.total_nodes + P.N_CLASSES))
        except (OSError, ValueError) as exc:
            self.release_slots()
            self.send(P.error_msg(load_id, f"could not attach shared memory: {exc}"))
            return
        self.out = [torch.from_numpy(slot.payload) for slot in self.results]
        self.last_done = 0
        self.next_slot = 0
        self.send(P.attached_msg(load_id))

    def write_weights(self, load_id: int, name: str) -> None:
        """Copy every parameter into the render side's segment, then let go of it."""
        if load_id != self.load_id or self.spec is None:
            return
        count = sum(a.size for _, _, a in self.params)
        try:
            slot = Slot.attach(name, count)
        except (OSError, ValueError) as exc:
            self.send(P.error_msg(load_id, f"could not attach the weights segment: {exc}"))
            return
        try:
            out = slot.begin_write()
            at = 0
            for _, _, a in self.params:
                out[at : at + a.size] = a.reshape(-1)
                at += a.size
            del out
            slot.end_write(1)
        finally:
            slot.close()
        self.send(P.weights_written_msg(load_id))

    def infer(self) -> None:
        import torch

        if self.input is None or not self.results:
            return
        got = self.input.read_into(self.img)
        if got is None or got[0] <= self.last_done:
            return  # already answered: this request was coalesced into an earlier pass
        seq = got[0]
        t0 = time.perf_counter()
        try:
            x = torch.from_numpy(self.img).view(1, 1, *P.INPUT_SHAPE)
            with torch.no_grad():
                acts = self.model.forward_all(x)
                probs = torch.softmax(acts[self.spec.layers[-1].name].reshape(-1), 0)
            k = self.next_slot
            out = self.out[k]
            # Shapes were checked at load, so nothing below can fail halfway through a write.
            self.results[k].begin_write()
            for layer in self.spec.layers:
                out[layer.start : layer.stop].copy_(acts[layer.name].reshape(-1))
            out[self.spec.total_nodes :].copy_(probs)
            self.results[k].end_write(seq)
        except Exception as exc:
            self.send(P.error_msg(self.load_id, f"inference failed: {type(exc).__name__}: {exc}"))
            return
        self.last_done = seq
        self.next_slot = (k + 1) % len(self.results)
        self.send(P.done_msg(seq, k, time.perf_counter() - t0))

    def release_slots(self) -> None:
        self.out = []  # torch views pin the buffers; close() fails while they live
        for slot in [self.input, *self.results]:
            if slot is not None:
                slot.close()
        self.input = None
        self.results = []

    def release(self) -> None:
        self.release_slots()
        self.model = None
        self.spec = None
        self.params = []


def layer_parameters(model, spec) -> list[tuple[str, str, np.ndarray]]:
    """(layer name, "weight" / "bias", float32 array) for every conv / fc / output layer of `spec`.

    A model may say which tensors belong to which layer with `layer_parameters()` -> {layer name:
    {"weight": tensor, "bias": tensor}}; otherwise the submodule named like the layer is used (the
    LeNet and the MLP name their modules after their layers).  Layers without one are left out."""
    import torch

    own = getattr(model, "layer_parameters", None)
    by_layer = own() if callable(own) else None
    modules = dict(model.named_modules())
    out = []
    for layer in spec.layers:
        if layer.kind not in ("conv", "fc", "output"):
            continue
        if by_layer is not None:
            tensors = by_layer.get(layer.name, {})
        else:
            module = modules.get(layer.name)
            tensors = {k: getattr(module, k, None) for k in ("weight", "bias")} if module is not None else {}
        for key in ("weight", "bias"):
            t = tensors.get(key)
            if isinstance(t, torch.Tensor):
                out.append((layer.name, key, t.detach().to(torch.float32).cpu().numpy().copy()))
    return out
