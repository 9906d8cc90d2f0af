"""The network process: loads a model, runs forward passes, writes activations to shared memory.

Every model, shipped or the user's, is loaded and traced the same way (model.py: loader + trace, on the
device asked for); the render side gets its Dag, InputSpec and applied weights, and each forward pass
writes the Dag's nodes straight into a result slot.

Started by WorkerHandle with the "spawn" context; torch and `models` are imported inside `worker_main`
only (the render process imports this module to name the target).  Loop: block on the pipe, act on every
waiting message in order, then one forward pass on the newest input if any Infer arrived (a burst of
requests coalesces into one pass; results alternate between two slots).  Once per model it copies the
applied weights into a segment the render side made (Weights).  The embedding view's jobs (filter
vectors, an image set loaded by a thread, image vectors one batch per turn) and morph batches never hold
a drawing up for long.  Messages and segments: messages.py, docs/PROTOCOLS.md.  On EOF it exits quietly.

Length: one loop and the handler of every message it takes, sharing the loaded model and its
segments; the vectors themselves are computed in features/embedding/vectors.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

import numpy as np
from convscope.engine.proc.shm import Slot
from convscope.features.embedding import messages as V  # the layouts both workers share
from convscope.features.embedding.images_writer import ImagesWriter
from convscope.features.inference import messages as P

MIN_BATCH, MAX_BATCH = 8, 1024  # images per step of an images job (adapted to IMAGE_STEP_S)
PROGRESS_EVERY_S = 0.05  # IMG_PROGRESS at most this often


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
        self.loaded = None  # features/inference/model.LoadedModel
        self.spec = None  # its Dag
        self.input: Slot | None = None
        self.results: list[Slot] = []
        self.params: list = []  # (layer, key, float32 numpy array) in manifest order, for WEIGHTS
        self.img = np.zeros(P.INPUT_SIZE, np.float32)  # private copy of the newest input
        self.last_done = 0
        self.next_slot = 0
        self.filters: Slot | None = None  # the model's filters slot (embedding view), None without convs
        self.images = _ImageSet()  # the image set of the embedding view's images mode
        self.job: _ImagesJob | None = None  # the running embed_images job

    def serve(self) -> None:
        while True:
            # Block on the pipe when idle; poll it while an images job or a loader has work to do.
            if self.job is not None:
                timeout = 0.0
            elif self.images.loading:
                timeout = 0.01
            else:
                timeout = None
            try:
                batch = []
                if timeout is None or self.conn.poll(timeout):
                    batch.append(self.conn.recv())
                while self.conn.poll():
                    batch.append(self.conn.recv())
            except (EOFError, OSError):
                return
            want = False
            for msg in batch:
                kind = type(msg)
                if kind is P.Quit:
                    return
                if kind is P.Load:
                    want = False  # requests for the old model are moot
                    self.load(msg)
                elif kind is P.Attach:
                    self.attach(msg.load_id, msg.input_name, msg.result_names, msg.filters_name)
                elif kind is P.Weights:
                    self.write_weights(msg.load_id, msg.segment_name)
                elif kind is P.Infer:
                    want = True
                elif kind is P.EmbedFilters:
                    self.embed_filters(msg.job, msg.load_id, msg.layer)
                elif kind is P.OpenImages:
                    self.open_images(msg.data_dir, msg.kind)
                elif kind is P.EmbedImages:
                    self.start_images(msg.job, msg.load_id, msg.request)
                elif kind is P.CancelImages:
                    self.drop_job()
                elif kind is P.Batch:
                    self.infer_batch(msg)
            if want:
                self.infer()  # a drawing first: an images batch waits for it, never the other way round
            info = self.images.poll()
            if info is not None:
                self.send(P.ImagesInfo(info))
            if self.job is not None:
                self.step_images()

    def send(self, msg: tuple) -> None:
        try:
            self.conn.send(msg)
        except OSError:
            pass  # render side gone; the next recv() sees EOF and we exit

    def load(self, msg: P.Load) -> None:
        """Load, trace and warm up the model of `msg`; SPEC (the Dag, its InputSpec, the weights'
        manifest) or one ERROR line.  PROGRESS messages say what it is doing meanwhile."""
        import torch

        # A switch drops the old model first, so after a failed load there is no model at all and
        # both sides agree on that (no half-switched state).  The image set stays: it is the model's input.
        self.release()
        self.load_id = load_id = msg.load_id
        try:
            # Imported here, inside the try, so a broken models package is reported, not a crash.
            from convscope.features.inference.model import LoadFailed, load_traced
        except Exception as exc:
            self.send(P.Error(load_id, f"cannot import the model loader: {type(exc).__name__}: {exc}"))
            return
        try:
            loaded = load_traced(
                msg.model,
                msg.weights,
                msg.card,
                msg.device,
                lambda text: self.send(P.Progress(load_id, text)),
            )
            with torch.no_grad():  # also warms torch up, so the first real request is not slow
                loaded.run(torch.zeros(loaded.input_spec.shape))
        except LoadFailed as exc:
            self.send(P.Error(load_id, str(exc)))
            return
        except Exception as exc:  # a broken model must not take the worker down with a traceback
            self.send(P.Error(load_id, f"could not load model {msg.model!r}: {type(exc).__name__}: {exc}"))
            return
        params = [
            (layer, key, np.ascontiguousarray(a, np.float32))
            for layer, ws in loaded.traced.weights.items()
            for key, a in ws.items()
        ]
        self.loaded, self.params = loaded, params
        self.spec = loaded.dag
        self.img = np.zeros(loaded.input_spec.size, np.float32)
        manifest = tuple((layer, key, tuple(a.shape)) for layer, key, a in params)
        self.send(
            P.Spec(
                load_id, self.spec.to_dict(), loaded.input_spec, P.manifest_of(manifest), loaded.device.type
            )
        )

    def attach(
        self, load_id: int, input_name: str, result_names: tuple[str, ...], filters_name: str = ""
    ) -> None:
        if load_id != self.load_id or self.spec is None:
            return  # answer to a load that a newer LOAD has replaced
        try:
            self.input = Slot.attach(input_name, self.loaded.input_spec.size)
            for name in result_names:
                self.results.append(Slot.attach(name, self.spec.total_nodes + self.loaded.n_classes))
            if filters_name:
                self.filters = Slot.attach(filters_name, V.filter_slot_count(self.spec))
        except (OSError, ValueError) as exc:
            self.release_slots()
            self.send(P.Error(load_id, f"could not attach shared memory: {exc}"))
            return
        self.last_done = 0
        self.next_slot = 0
        self.send(P.Attached(load_id))

    def write_weights(self, load_id: int, name: str) -> None:
        """Copy every applied weight array into the render side's segment, then let go of it."""
        if load_id != self.load_id or self.spec is None:
            return
        count = sum(a.size for _, _, a in self.params)
        try:
            slot = Slot.attach(name, count)
        except (OSError, ValueError) as exc:
            self.send(P.Error(load_id, f"could not attach the weights segment: {exc}"))
            return
        try:
            with slot.writing(1) as out:
                at = 0
                for _, _, a in self.params:
                    out[at : at + a.size] = a.reshape(-1)
                    at += a.size
            del out
        finally:
            slot.close()
        self.send(P.WeightsWritten(load_id))

    def infer(self) -> None:
        import torch

        if self.input is None or not self.results:
            return
        got = self.input.read_into(self.img)
        if got is None or got[0] <= self.last_done:
            return  # already answered: this request was coalesced into an earlier pass
        seq = got[0]
        t0 = time.perf_counter()
        k = self.next_slot
        n = self.spec.total_nodes
        try:
            x = torch.from_numpy(self.img).view(self.loaded.input_spec.shape)
            # The forward pass writes straight into the result slot, in Dag node order: no copy between
            # torch and shared memory beyond the one that lands there (one device-to-host copy on a GPU).
            with torch.no_grad(), self.results[k].writing(seq) as out:
                acts = self.loaded.run(x, out=out[:n])
                out[n:] = acts.probabilities
            del out, acts  # views of the mapping: close() fails while they live
        except Exception as exc:
            self.send(P.Error(self.load_id, f"inference failed: {type(exc).__name__}: {exc}"))
            return
        self.last_done = seq
        self.next_slot = (k + 1) % len(self.results)
        self.send(P.Done(seq, k, time.perf_counter() - t0))

    def infer_batch(self, msg: P.Batch) -> None:
        """The class probabilities of `msg.count` model inputs (a morph curve), one forward pass each,
        exactly as infer() computes them, written after the inputs in the render side's segment;
        BATCH_DONE says so."""
        import torch

        if self.loaded is None:
            self.send(P.BatchDone(msg.batch_id, False, "no network loaded"))
            return
        spec = self.loaded.input_spec
        n, size = int(msg.count), spec.size
        try:
            slot = Slot.attach(msg.segment_name, P.batch_count(n, size, self.loaded.n_classes))
        except (OSError, ValueError) as exc:
            self.send(P.BatchDone(msg.batch_id, False, f"could not attach the batch segment: {exc}"))
            return
        out = None
        try:
            buf = np.empty(slot.count, np.float32)
            got = slot.read_into(buf)
            if got is None or got[0] != msg.batch_id:
                raise ValueError("the batch's inputs were never completely written")
            inputs = torch.from_numpy(buf[: n * size]).view(n, *spec.shape)
            with torch.no_grad():
                probs = self.loaded.probabilities(inputs)
            with slot.writing(msg.batch_id, aux=1) as out:
                out[n * size :] = probs.reshape(-1).numpy()
        except Exception as exc:  # a failed batch must not take the drawings down
            self.send(P.BatchDone(msg.batch_id, False, f"{type(exc).__name__}: {exc}"))
            return
        finally:
            out = None  # a live view of the mapping would make close() fail
            slot.close()
        self.send(P.BatchDone(msg.batch_id, True, ""))

    def release_slots(self) -> None:
        for slot in [self.input, *self.results, self.filters]:
            if slot is not None:
                slot.close()
        self.input = None
        self.results = []
        self.filters = None

    def release(self) -> None:
        self.drop_job()  # its activations belong to the model going away
        self.release_slots()
        self.loaded = None
        self.spec = None
        self.params = []

    # -- the embedding view -----------------------------------------------------------------------

    def embed_filters(self, job: int, load_id: int, layer: int) -> None:
        """The four vector kinds of conv layer `layer` for the drawing now in the input slot, the loss
        against the network's own top guess, into the filters slot; FILTERS says so."""
        import torch
        from convscope.features.embedding.vectors import filter_vectors

        if load_id != self.load_id or self.loaded is None or self.input is None:
            self.send(P.EmbedFailed(job, "the network is loading; ask again when it is up"))
            return
        t0 = time.perf_counter()
        try:
            if self.filters is None:
                raise ValueError(f"{self.spec.model} has no conv layers: no filters to embed")
            lay = V.FilterLayout.of(self.spec, layer)  # ValueError for a layer that is not there
            img = np.empty(self.loaded.input_spec.size, np.float32)
            got = self.input.read_into(img)
            seq = got[0] if got is not None else -1
            x = torch.from_numpy(img).view(1, *self.loaded.input_spec.shape)
            fv = filter_vectors(self.loaded, lay.layer, x, None)
            with self.filters.writing(job) as out:
                out[lay.ids] = np.arange(lay.count)  # the explorer's filters never change: ids are indices
                for kind in V.KINDS:
                    out[lay.block(kind)] = fv[kind].reshape(-1)
            del out
        except Exception as exc:  # a failed request must not take the drawings down
            self.send(P.EmbedFailed(job, f"filter vectors: {exc}"))
            return
        meta = {
            "layer": lay.layer,
            "layer_index": int(layer),
            "label": fv.label,
            "loss": fv.loss,
            "seq": int(seq),
            "seconds": time.perf_counter() - t0,
        }
        self.send(P.Filters(job, load_id, meta))

    def open_images(self, data_dir: str, kind: str) -> None:
        """Load the `kind` image set of `data_dir` in a thread (IMAGES_INFO when done), or answer at once."""
        info = self.images.open(data_dir, kind)
        if info is not None:
            self.send(P.ImagesInfo(info))

    def start_images(self, job: int, load_id: int, kw: dict) -> None:
        """Attach the job's segment and set up an ImageVectors; `step_images` computes it one batch per turn
        of the loop (the images made at the model's size as it goes) and writes each batch's labels,
        thumbnails and vectors into the segment."""
        from convscope.features.data.image_set import image_kind, view_shape
        from convscope.features.embedding.vectors import ImageVectors

        self.drop_job()
        if load_id != self.load_id or self.loaded is None:
            self.send(P.EmbedFailed(job, "the network changed; ask again"))
            return
        try:
            data = self.images.data
            if data is None:
                raise ValueError("no image set loaded (OPEN_IMAGES first)")
            layer, n, d = str(kw["layer"]), int(kw["n"]), int(kw["d"])
            names = [x.name for x in self.spec.layers]
            if layer not in names:
                raise ValueError(f"no layer {layer!r}; the network has {names}")
            available = data.count(bool(kw["include_train"]))
            if not 0 < n <= available:
                raise ValueError(f"{n} images asked for, {available} available")
            shape = tuple(int(s) for s in self.loaded.input_spec.shape)
            if image_kind(shape) != data.kind:
                raise ValueError(f"the image set is {data.kind}, the network takes {shape}: open it again")
            expected = V.image_dim(self.spec.layer(layer).shape, int(kw["max_dim"]))
            if d != expected:
                raise ValueError(f"{layer}: vectors have {expected} values, not {d}")
            lay = V.ImagesLayout(n, d, V.thumb_shape(view_shape(shape), n))
            images = _JobImages(data, n, shape, lay.image_shape)
            adapter = self.loaded.images_adapter()
            iv = ImageVectors(adapter, images, layer, batch_size=MIN_BATCH * 4, max_dim=int(kw["max_dim"]))
            writer = ImagesWriter(job, kw, lay)
        except Exception as exc:  # refused: nothing runs, the drawings go on
            self.send(P.EmbedFailed(job, f"images: {exc}"))
            return
        self.send(V.ImgAttached(job))
        self.job = _ImagesJob(job, writer, lay, iv, data.labels[:n], images)

    def step_images(self) -> None:
        """One batch of the images job, sized to take about IMAGE_STEP_S; finishes the job after the last."""
        job = self.job
        try:
            start = job.iv.done
            t0 = time.perf_counter()
            job.iv.step()
            took = time.perf_counter() - t0
            stop = job.iv.done
            # Follow the measured time, so a drawing never waits long behind a batch, however busy the core.
            if took < 0.5 * P.IMAGE_STEP_S:
                job.iv.batch_size = min(MAX_BATCH, job.iv.batch_size * 2)
            elif took > 1.5 * P.IMAGE_STEP_S:
                job.iv.batch_size = max(MIN_BATCH, job.iv.batch_size // 2)
            job.longest = max(job.longest, took)
            job.batches += 1
            # The labels and pixels go in with their vectors: the first touch of a fresh segment's pages
            # costs too, and a drawing must not wait for 20,000 images' worth of it at once.
            job.writer.write(start, stop, job.iv.out[start:stop], job.labels[start:stop], job.images.thumbs)
        except Exception as exc:  # a failed job must not take the drawings down; the render side is told
            self.send(P.EmbedFailed(job.cmd, f"images: {type(exc).__name__}: {exc}"))
            self.drop_job()
            return
        now = time.perf_counter()
        if job.iv.finished:
            job.writer.finish()
            meta = {
                "seconds": now - job.t0,
                "n": job.layout.n,
                "batches": job.batches,
                "longest_batch_s": job.longest,
            }
            self.send(V.ImgDone(job.cmd, meta))
            self.drop_job()
        elif now - job.reported >= PROGRESS_EVERY_S:
            job.reported = now
            self.send(V.ImgProgress(job.cmd, float(job.iv.fraction)))

    def drop_job(self) -> None:
        if self.job is not None:
            self.job.writer.close()
            self.job = None


class _ImagesJob:
    """The running embed_images job: its segment, its layout and the ImageVectors stepping through it."""

    def __init__(self, cmd: int, writer, layout, iv, labels: np.ndarray, images: _JobImages) -> None:
        self.cmd, self.writer, self.layout, self.iv = cmd, writer, layout, iv
        self.labels, self.images = labels, images  # (n,) int64, and where each batch's thumbnails come from
        self.t0 = self.reported = time.perf_counter()
        self.longest = 0.0  # seconds of the slowest batch (what a drawing may have waited)
        self.batches = 0


class _JobImages:
    """A job's images as ImageVectors reads them: a slice is one batch of model inputs (raw [0, 1], torch),
    made from the image set when it is read, so only one batch ever exists at the model's size.  The
    thumbnails of the batch read last wait in `thumbs` for the writer."""

    def __init__(self, data, n: int, shape: tuple[int, ...], thumb: tuple[int, int, int]) -> None:
        self.data, self.n, self.shape, self.thumb = data, n, shape, thumb
        self.thumbs: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rows: slice):
        import torch

        start, stop, _ = rows.indices(self.n)
        batch = self.data.batch(start, stop, self.shape, self.thumb)
        self.thumbs = batch.thumbs
        return torch.from_numpy(batch.inputs)


class _ImageSet:
    """The embedding view's image set, loaded by a thread so that drawings keep flowing meanwhile."""

    def __init__(self) -> None:
        self.data = None  # features/data/image_set.ImageSet
        self._key: tuple[str, str] | None = None  # (data_dir, kind) of `data` or of the running thread
        self._thread: threading.Thread | None = None
        self._result: list = []  # the thread's ImageSet or exception

    @property
    def loading(self) -> bool:
        return self._thread is not None

    def open(self, data_dir: str, kind: str) -> dict | None:
        """Start loading the `kind` set of `data_dir` unless it is loaded (its info, at once) or loading
        (None)."""
        key = (data_dir, kind)
        if self._key == key and self.data is not None:
            return self.data.info
        if self._key == key and self._thread is not None:
            return None
        if self._thread is not None:
            self._thread.join()  # another set was loading: let it end, it is not wanted any more
            self._thread = None
        self._key, self.data, self._result = key, None, []
        self._thread = threading.Thread(target=self._load, args=(data_dir, kind, self._result), daemon=True)
        self._thread.start()
        return None

    def _load(self, data_dir: str, kind: str, out: list) -> None:
        from convscope.features.data.image_set import open_image_set

        try:
            out.append(open_image_set(data_dir, kind))
        except Exception as exc:  # reported as IMAGES_INFO's "error"
            out.append(exc)

    def poll(self) -> dict | None:
        """The info of a load that just finished (or {"error": text}), once; else None."""
        if self._thread is None or self._thread.is_alive():
            return None
        self._thread.join()
        self._thread = None
        got = self._result[0] if self._result else RuntimeError("the loader ended without a result")
        data_dir, kind = self._key
        if isinstance(got, Exception):
            from convscope.features.data.image_set import NoImageSet

            text = str(got) if isinstance(got, NoImageSet) else f"{type(got).__name__}: {got}"
            return {"error": text, "data_dir": data_dir, "kind": kind}
        self.data = got
        return got.info
