"""WorkerHandle: the render process's side of the network process (process.py), on ProcessHandle.

It owns the shared memory, sends requests and reads results; lifecycle (spawn, restart, teardown) is the
base's.  Imports no torch and no `models` (a test checks `sys.modules`).  All calls but `start`,
`infer_sync` and the `wait_*` helpers return at once, so the render loop calls, once per frame:

    handle.check()            # restarts a dead worker, or one that leaves a drawing unanswered
    handle.submit(x)          # when the drawing changed: a model input of handle.input_shape, or a drawing
    result = handle.poll()    # newest finished result, or None
    if handle.spec_version != seen: ...rebuild the layout from handle.spec...
    bid = handle.infer_batch(images); ... later: handle.batch(bid)   # many images, one request

`spec` is the traced model's Dag (engine/graph/dag.py) and `input_spec` what it takes (shape,
normalisation, class names); `weights` holds the weights it applies once they arrived.  Every model,
shipped or the user's, loads the same way (features/inference/model.py); a switch to a model that fails
to load keeps the previous one running, its spec and results in place, with the reason in `.error`.
The embedding view's calls (`embed_filters`, `open_images`, `embed_images`) mirror the training
handle's.  docs/PROTOCOLS.md has the messages and who creates and unlinks each segment.  The worker
is started with "spawn": a program that makes a handle must keep its top level behind
`if __name__ == "__main__":`.

Length: the render side of every inference message (loads, drawings, weights, morph batches,
filter vectors) in one class over one set of segments; the embedding calls already live in embedding.py.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from convscope.engine.graph.dag import Dag
from convscope.engine.proc.handle import READY, STOPPED, ProcessHandle
from convscope.engine.proc.shm import Slot
from convscope.features.embedding import messages as V  # the layouts both workers share
from convscope.features.embedding.images_job import ImagesJob
from convscope.features.inference import messages as P
from convscope.features.inference.embedding import DrawingEmbedding, DrawingFilters  # noqa: F401
from convscope.features.inference.model_input import as_model_input
from convscope.features.inference.process import worker_main

# States of the handle's side of the load handshake.
LOADING = "loading"  # LOAD sent, waiting for SPEC or ERROR
ATTACHING = "attaching"  # segments created and named to the worker, waiting for ATTACHED
FAILED = "failed"  # the model did not load (see .error); the worker is alive and waits for switch_model
# A ready worker that leaves a drawing unanswered this long is taken for hung (a deadlock, a stopped
# process, a driver that never returns) and restarted by check().  A forward pass takes ~0.1 ms and
# the slowest legitimate pause between answers here (one images-job batch, a busy machine) stays under
# 0.1 s; loading the image set runs in a thread of its own.  Generous, so a swapping machine is not
# mistaken for a hung worker.
HANG_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class BatchResult:
    """The answer to one infer_batch()."""

    probabilities: np.ndarray | None  # (N, 10) float32, row i for image i; None when it failed
    error: str  # why not ("" when it worked)
    lost: bool = False  # the worker restarted or switched models before answering: ask again


class WorkerHandle(ProcessHandle, DrawingEmbedding):
    """Runs one torch worker process for the render loop; see the module docstring for the frame loop."""

    _copy_thread_name = "explore-images-copy"
    process_name = "convscope-worker"
    what = "worker process"

    def __init__(
        self,
        model: str = "lenet",
        weights: Mapping[str, str | os.PathLike] | None = None,
        *,
        card: Mapping | None = None,  # ModelCard.to_dict() for `model`: overrides its own card's fields
        device: str = "auto",  # where the worker runs the model: auto, cpu, cuda or mps
        max_inflight: int = 4,  # INFER commands not yet answered; bounds the pipe if the worker stalls
        hang_timeout: float | None = HANG_TIMEOUT_S,  # check() restarts a silent worker; None: never
    ) -> None:
        super().__init__(hang_timeout=hang_timeout)
        if device not in P.DEVICES:
            raise ValueError(f"device {device!r}: expected one of {', '.join(P.DEVICES)}")
        self._model = model
        self._weights = {name: os.fspath(path) for name, path in (weights or {}).items()}
        self._cards: dict[str, dict] = {model: dict(card)} if card else {}
        self._device = device
        self._good: str | None = None  # the model that loaded last: a failed switch goes back to it
        self._switch_error: str | None = None  # why the newest switch failed (kept while the old model runs)
        self.failed_model: str | None = None  # the model of the newest switch that failed to load
        self.status = ""  # what a load is doing now ("tracing..."), "" when none runs
        self.device = ""  # where the model runs, once loaded
        self._max_inflight = max_inflight
        self._state = STOPPED
        self._load_id = 0
        self._input: Slot | None = None
        self._results: list[Slot] = []
        self._pending_spec: Dag | None = None
        self._pending_input: P.InputSpec | None = None
        self.spec: Dag | None = None  # the network that poll()'s results describe
        self.input_spec: P.InputSpec | None = None  # what .spec's model takes, and its class names
        self.weights: dict[str, dict[str, np.ndarray]] | None = None  # parameters of .spec's model
        self.weights_version = 0  # bumped whenever a model's weights arrived
        self._manifest: P.Manifest = ()  # parameter arrays of the model announced last
        self._pending_manifest: P.Manifest = ()
        self._weights_slot: Slot | None = None  # created for the worker to fill, until WEIGHTS_WRITTEN
        self.spec_version = 0  # bumped whenever .spec changes (new model, or None after a failed load)
        self.results_computed = 0  # forward passes the worker reported; fewer than submits when coalescing
        self._seq = 0
        self._last_image: np.ndarray | None = None  # re-sent after a restart or a model switch
        self._written = 0  # seq now in the input slot
        self._done_seq = 0  # newest seq the worker has answered
        self._returned_seq = 0  # newest seq poll() has handed out
        self._sent: deque[int] = deque()  # INFER seqs sent and not yet answered
        self._waiting_since: float | None = None  # when the worker last had nothing to answer, or answered
        self._submit_t: dict[int, float] = {}
        self._note: tuple[int, int, float] | None = None  # newest DONE not yet read
        self._filters_slot: Slot | None = None  # the model's filters slot (embedding view), once attached
        self._pending_filters: Slot | None = None  # named to the worker, not yet attached
        self._embed_id = 0
        self._filter_jobs: dict[int, int] = {}  # embed_filters job -> load id, until answered
        self.filters: dict[int, DrawingFilters] = {}  # embed_filters job -> its vectors
        self.replies: dict[int, tuple[bool, str]] = {}  # embed job -> (ok, text) once answered
        self.images: ImagesJob | None = None  # the newest embed_images job
        self.images_meta: dict = {}  # what the worker said of the last finished one (seconds, batches, ...)
        self.image_data: dict | None = None  # the worker's image set (open_images): sizes, name, note
        self.image_error: str | None = None  # why it could not be loaded
        self._image_key: tuple[str, str] | None = None  # (data_dir, kind) asked for with open_images
        self._batch_id = 0
        self._batches: dict[int, tuple[Slot, int]] = {}  # infer_batch id -> (segment, images), in flight
        self._batch_done: dict[int, BatchResult] = {}  # answered, not yet taken by batch()

    # -- properties ----------------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The model asked for last (it may still be loading, or have failed: see .error)."""
        return self._model

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The model's input (C, H, W) (or (N,)), once its spec is here."""
        return None if self.input_spec is None else tuple(self.input_spec.shape)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> bool:
        """Start the worker; wait until its model is ready (True) or failed / timed out (False: .error)."""
        self.launch()
        deadline = time.monotonic() + timeout
        while self._state not in (READY, FAILED):
            if not self.alive:
                self._drain()  # it may have said why before it went
                if self._state in (READY, FAILED):
                    break
                self.error = f"worker process exited during start (exit code {self._proc.exitcode})"
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                self.error = f"worker sent no model spec within {timeout:g} s"
                return False
            self._wait(min(left, 0.05))
        return self._state == READY

    def switch_model(self, name: str, card: Mapping | None = None) -> None:
        """Ask for another model; returns at once.  Its spec shows up later as a new spec_version; if it
        fails to load, the previous model comes back (same spec) and .error says why."""
        if self._closed:
            raise RuntimeError("WorkerHandle is closed")
        if card is not None:
            self._cards[name] = dict(card)
        self._model = name
        self._switch_error = None
        self.failed_model = None
        # The worker drops the old model and its segments on LOAD, so results of the old one are
        # never read again; close our side now.
        self._release_segments()
        self._note = None
        self._sent.clear()
        self._end_embed_jobs(f"the network changed to {name}")
        self._end_batches(f"the network changed to {name}")
        if self._proc is not None and self.alive:
            self._send_load()

    def silent_for(self, now: float | None = None) -> float:
        """Seconds the ready worker has left a drawing unanswered (0 when it owes none)."""
        if self._state != READY or not self._sent or self._waiting_since is None:
            return 0.0
        return (time.monotonic() if now is None else now) - self._waiting_since

    def close(self) -> None:
        """Stop the worker and free the shared memory.  Idempotent; also runs at interpreter exit."""
        super().close()
        self._drop_images("cancelled")

    def __enter__(self) -> WorkerHandle:
        self.start()  # on failure the block still runs: look at .spec / .error
        return self

    # -- per frame -----------------------------------------------------------------------------

    def submit(self, image: np.ndarray) -> int:
        """Queue one input for inference; returns its seq at once (never blocks).  `image`: the tensor
        handed to the model (float32, exactly input_shape, already normalised), or a 2D drawing (ink 1 on
        0), resized and normalised here (features/inference/model_input.py).  While a load is under way
        any 1D or 3D input is kept for the new model (one that does not fit it is reported in .error)."""
        img = np.asarray(image, dtype=np.float32)
        settled = self._state == READY and self.input_spec is not None
        if img.ndim not in (1, 2, 3) or (settled and img.ndim != 2 and img.shape != self.input_shape):
            want = f"{self.input_shape} or a 2D drawing" if settled else "a model input or a 2D drawing"
            raise ValueError(f"submit() takes {want}, got shape {img.shape}")
        self._seq += 1
        self._last_image = img.copy()
        self._submit_t[self._seq] = time.perf_counter()
        if len(self._submit_t) > 1024:  # no model answering (failed load): keep the table bounded
            del self._submit_t[next(iter(self._submit_t))]
        if self._state == READY:
            self._push()
        return self._seq

    def poll(self) -> P.Result | None:
        """The newest result finished since the last poll (a copy), or None.  Never blocks."""
        self._finish_images()
        if self._conn is None:
            return None
        self._drain()
        if self._state == READY:
            self._kick()
        if self._note is None or not self._results:
            return None
        _, k, compute_s = self._note
        n = self.spec.total_nodes
        buf = np.empty(n + len(self.input_spec.classes), np.float32)
        got = self._results[k].read_into(buf)
        if got is None:
            return None  # the worker lapped us twice during the copy; try next frame
        self._note = None
        seq = got[0]
        if seq <= self._returned_seq:
            return None  # already handed out via a slot the worker had refilled early
        self._returned_seq = seq
        t_submit = self._submit_t.get(seq, float("nan"))
        while self._submit_t:
            oldest = next(iter(self._submit_t))
            if oldest > seq:
                break
            del self._submit_t[oldest]
        return P.Result(
            seq=seq,
            activations=buf[:n],
            probabilities=buf[n:].copy(),
            latency_s=time.perf_counter() - t_submit,
            compute_s=compute_s,
            spec_version=self.spec_version,
            model=self.spec.model,
        )

    def infer_batch(self, images: np.ndarray) -> int:
        """Ask for the class probabilities of N inputs (N, *input_shape) or N 2D drawings; returns a batch id
        at once (never blocks).  `batch(id)` has the answer a few frames later: one forward pass per input,
        the same numbers infer_sync() would give, through one shared-memory segment instead of N round
        trips."""
        imgs = np.asarray(images, np.float32)
        if imgs.ndim < 2 or len(imgs) == 0:
            raise ValueError(f"infer_batch() takes N inputs or N drawings, got shape {imgs.shape}")
        self._batch_id += 1
        bid, n = self._batch_id, len(imgs)
        if self._state != READY or not self.alive:
            self._batch_done[bid] = BatchResult(None, "the network is not ready")
            return bid
        try:
            inputs = np.stack([as_model_input(x, self.input_spec) for x in imgs])
        except ValueError as exc:
            raise ValueError(f"infer_batch(): {exc}") from None
        size, n_classes = self.input_spec.size, len(self.input_spec.classes)
        try:
            slot = Slot.create(P.batch_count(n, size, n_classes))
        except OSError as exc:
            self._batch_done[bid] = BatchResult(None, f"could not create shared memory for the batch: {exc}")
            return bid
        with slot.writing(bid) as out:
            out[: n * size] = inputs.reshape(-1)
        del out
        self._batches[bid] = (slot, n)
        if not self._send(P.Batch(bid, n, slot.name)):
            self._end_batches("the network process is not running")
        return bid

    def batch(self, batch_id: int) -> BatchResult | None:
        """The answer to infer_batch() `batch_id` once it is here (handed out once), else None."""
        self._drain()
        return self._batch_done.pop(batch_id, None)

    def _on_batch_done(self, msg: P.BatchDone) -> None:
        entry = self._batches.pop(msg.batch_id, None)
        if entry is None:
            return
        slot, n = entry
        try:
            buf = np.empty(slot.count, np.float32)
            got = slot.read_into(buf) if msg.ok else None
        finally:
            slot.unlink()  # the worker attached, answered and let go: ours to free
            slot.close()
        if not msg.ok or got is None or got != (msg.batch_id, 1):
            self._batch_done[msg.batch_id] = BatchResult(None, msg.text or "the batch was never answered")
        else:
            size = self.input_spec.size
            probs = buf[n * size :].reshape(n, -1).copy()
            self._batch_done[msg.batch_id] = BatchResult(probs, "")
        while len(self._batch_done) > 64:  # nobody asked for these: keep the table bounded
            del self._batch_done[next(iter(self._batch_done))]

    def _end_batches(self, why: str) -> None:
        """The worker forgets its batches (a model switch, a dead worker): answer them with `why`."""
        for bid, (slot, _) in self._batches.items():
            slot.unlink()
            slot.close()
            self._batch_done[bid] = BatchResult(None, why, lost=True)
        self._batches.clear()

    def infer_sync(self, image: np.ndarray, timeout: float = 10.0) -> P.Result:
        """Blocking helper for tools and tests: submit `image` and wait for its result."""
        if self._proc is None:
            self.start(timeout)
        seq = self.submit(image)
        deadline = time.monotonic() + timeout
        while True:
            result = self.poll()
            if result is not None and result.seq >= seq:
                return result
            if self._state == FAILED:
                raise RuntimeError(self.error or f"model {self._model!r} did not load")
            if not self.alive:
                raise RuntimeError(
                    f"worker process died (exit code {self._proc.exitcode if self._proc else None})"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no result for request {seq} within {timeout:g} s (state {self._state})")
            self._wait(min(left, 0.05))

    # -- internals -----------------------------------------------------------------------------

    def _target(self):
        return worker_main, (), {}

    def _quit_message(self):
        return P.Quit()

    def _silence(self, now: float) -> str | None:
        silent = self.silent_for(now)
        if self._hang_timeout is None or silent < self._hang_timeout:
            return None
        return f"worker stopped answering for {silent:.0f} s"

    def _spawned(self) -> None:
        self._send_load()
        if self._image_key is not None:
            self.image_data = self.image_error = None  # a new worker has no image set: load it again
            self._send(P.OpenImages(*self._image_key))

    def _send_load(self) -> None:
        self._load_id += 1
        self._state = LOADING
        self.status = "starting..."
        card = self._cards.get(self._model, {})
        self._send(P.Load(self._load_id, self._model, self._weights.get(self._model), card, self._device))

    def _handle(self, msg) -> None:
        kind = type(msg)
        if kind is P.Done:
            if self._state == READY:
                self.results_computed += 1
                self._note = (msg.seq, msg.slot, msg.compute_s)
                self._done_seq = max(self._done_seq, msg.seq)
                while self._sent and self._sent[0] <= msg.seq:
                    self._sent.popleft()
                self._waiting_since = time.monotonic()  # an answer: the clock for the rest starts over
        elif kind is P.Filters:
            self._on_filters(msg.job, msg.load_id, msg.meta)
        elif kind is P.EmbedFailed:
            self._on_embed_failed(msg.job, msg.text)
        elif kind is P.ImagesInfo:
            self._on_images_info(msg.info)
        elif kind in V.IMAGE_MESSAGES:
            self._on_image_msg(msg)
        elif kind is P.BatchDone:
            self._on_batch_done(msg)
        elif msg.load_id != self._load_id:
            return  # answer to a load that switch_model (or a restart) has superseded
        elif kind is P.Progress:
            if self._state in (LOADING, ATTACHING):
                self.status = msg.text
        elif kind is P.Spec:
            self._pending_input = P.InputSpec(*msg.input_spec)
            self.device = msg.device
            self._on_spec(Dag.from_dict(msg.spec), msg.manifest)
        elif kind is P.Attached:
            self._on_attached()
        elif kind is P.WeightsWritten:
            self._on_weights_written()
        elif kind is P.Error:
            self._on_error(msg.text)

    def _on_spec(self, spec: Dag, manifest: P.Manifest = ()) -> None:
        if self._state != LOADING:
            return
        self._release_segments()
        self._pending_manifest = tuple(manifest)
        ins = self._pending_input
        try:
            self._input = Slot.create(ins.size)
            count = spec.total_nodes + len(ins.classes)
            self._results = [Slot.create(count) for _ in range(P.RESULT_SLOTS)]
            if V.conv_layers(spec):
                self._pending_filters = Slot.create(V.filter_slot_count(spec))
        except OSError as exc:
            self._release_segments()
            self._fail(f"could not create shared memory for {spec.model}: {exc}")
            return
        self._pending_spec = spec
        self._state = ATTACHING
        names = tuple(slot.name for slot in self._results)
        filters = self._pending_filters.name if self._pending_filters is not None else ""
        self._send(P.Attach(self._load_id, self._input.name, names, filters))

    def _on_attached(self) -> None:
        if self._state != ATTACHING:
            return
        for slot in (self._input, *self._results):
            slot.unlink()  # both sides have it mapped now; nothing can leak from here on
        if self._pending_filters is not None:
            self._pending_filters.unlink()
        self._filters_slot, self._pending_filters = self._pending_filters, None
        if self._pending_spec != self.spec or self._pending_input != self.input_spec:
            # a restart (or a failed switch's way back) brings back an equal spec: keep the layout
            self.spec = self._pending_spec
            self.input_spec = self._pending_input
            self.spec_version += 1
            self.weights = None  # the old model's; the new ones follow
        if self._pending_manifest != self._manifest:
            self.weights = None
        self._manifest = self._pending_manifest
        self._pending_spec = None
        self._state = READY
        self.error = self._switch_error  # back on the previous model after a failed switch: say why
        self.status = ""
        self._good = self._model
        self._ready_now()
        self._written = self._done_seq = self._returned_seq = 0
        self._sent.clear()
        self._note = None
        if self.weights is None and self._manifest:
            self._request_weights()
        if self._last_image is not None:
            self._submit_t.setdefault(self._seq, time.perf_counter())
            self._push()

    def _request_weights(self) -> None:
        """Make the segment the worker copies the parameters into (once per model)."""
        try:
            self._weights_slot = Slot.create(P.manifest_size(self._manifest))
        except OSError as exc:
            self.error = f"could not create shared memory for the weights of {self._model}: {exc}"
            return
        self._send(P.Weights(self._load_id, self._weights_slot.name))

    def _on_weights_written(self) -> None:
        slot, self._weights_slot = self._weights_slot, None
        if slot is None:
            return
        try:
            flat = np.empty(slot.count, np.float32)
            got = slot.read_into(flat) if self._state == READY else None
        finally:
            slot.unlink()
            slot.close()
        if self._state != READY:
            return
        if got is None or got[0] != 1:
            self.error = "the weights segment was never completely written"
            return
        self.weights = P.unpack_weights(self._manifest, flat)
        self.weights_version += 1

    def wait_for_weights(self, timeout: float = 10.0) -> dict[str, dict[str, np.ndarray]] | None:
        """Blocking helper for tools and tests: the current model's weights once they are here."""
        deadline = time.monotonic() + timeout
        while self.weights is None and self._conn is not None and time.monotonic() < deadline:
            if self._state == FAILED or not self.alive:
                break
            self._wait(min(deadline - time.monotonic(), 0.05))
        return self.weights

    def _on_error(self, text: str) -> None:
        self.error = text
        if self._weights_slot is not None and self._state == READY:
            self._release_weights_slot()  # the worker could not fill it
        if self._state in (LOADING, ATTACHING):
            self._release_segments()
            if self._good is not None and self._good != self._model and self.spec is not None:
                # A switch failed: load the previous model again; its spec and results stay meanwhile.
                self._switch_error = text
                self.failed_model = self._model
                self._model = self._good
                self._send_load()
                return
            self._fail(text)

    def _fail(self, text: str) -> None:
        self.error = text
        self.status = ""
        self._state = FAILED
        self._pending_spec = None
        self.weights = None
        if self.spec is not None:
            self.spec = None
            self.input_spec = None
            self.spec_version += 1

    def _push(self) -> None:
        try:
            x = as_model_input(self._last_image, self.input_spec)
        except ValueError as exc:
            self.error = f"{self._model}: {exc}"  # an input for another model: nothing to send
            return
        self._input.write(self._seq, x)
        self._written = self._seq
        self._kick()

    def _kick(self) -> None:
        """Ask for the input slot's image unless it is answered, already asked for, or too many wait."""
        if self._written <= self._done_seq or (self._sent and self._sent[-1] >= self._written):
            return
        if len(self._sent) >= self._max_inflight:
            return  # poll() retries once answers come back; the worker reads the newest input anyway
        if self._send(P.Infer(self._written)):
            if not self._sent:
                self._waiting_since = time.monotonic()
            self._sent.append(self._written)

    def _release_segments(self) -> None:
        for slot in (self._input, *self._results, self._filters_slot, self._pending_filters):
            if slot is not None:
                slot.unlink()  # no-op once unlinked after ATTACHED
                slot.close()
        self._input = None
        self._results = []
        self._filters_slot = self._pending_filters = None
        self._release_weights_slot()

    def _release_weights_slot(self) -> None:
        if self._weights_slot is not None:
            self._weights_slot.unlink()
            self._weights_slot.close()
            self._weights_slot = None

    def _release(self) -> None:
        self._release_segments()
        self._end_embed_jobs("the network process stopped")
        self._end_batches("the network process stopped")
        self._state = STOPPED
        self._pending_spec = None
        self._note = None
        self._sent.clear()


def measure_latency(
    handle: WorkerHandle, n: int = 200, *, warmup: int = 20, timeout: float = 5.0, yield_cpu: bool = True
) -> np.ndarray:
    """Seconds from submit() to the result seen by poll() for `n` requests, one at a time, busy-polling.

    `handle` must be ready.  Uses seeded random images so runs are comparable.  With `yield_cpu` the
    poll loop gives its core away between polls: on a machine with few cores a pure spin competes with
    the worker for a CPU and measures the scheduler (p99 of ~5 ms instead of <1 ms on 2 busy cores).
    """
    pause = getattr(os, "sched_yield", None) if yield_cpu else None
    if not handle.ready:
        raise RuntimeError(f"handle is not ready (state {handle.state}, error {handle.error})")
    images = np.random.default_rng(0).random((8, *handle.input_shape), dtype=np.float32)
    while handle.poll() is not None:
        pass  # a result left over from before would be mistaken for ours
    out = np.empty(n, np.float64)
    for i in range(warmup + n):
        seq = handle.submit(images[i % len(images)])
        deadline = time.perf_counter() + timeout
        while True:
            result = handle.poll()
            if result is not None and result.seq >= seq:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"request {seq} got no result within {timeout:g} s (alive={handle.alive})")
            if pause is not None:
                pause()
        if i >= warmup:
            out[i - warmup] = result.latency_s
    return out
