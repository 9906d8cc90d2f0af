"""The network process: loads a model, runs forward passes, writes activations to shared memory.

Started by WorkerHandle with the "spawn" context; torch and `models` are imported inside `worker_main`
only (the render process imports this module to name the target).  Loop: block on the pipe, act on every
waiting message in order, then one forward pass on the newest input if any Infer arrived (a burst of
requests coalesces into one pass; results alternate between two slots).  Once per model it copies the
parameters into a segment the render side made (Weights).  The embedding view's jobs (filter vectors, an
image set loaded by a thread, image vectors one batch per turn) and morph batches never hold a drawing up
for long.  Messages and segments: messages.py, docs/PROTOCOLS.md.  On EOF it exits quietly.

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
        self.model = None
        self.spec = None
        self.input: Slot | None = None
        self.results: list[Slot] = []
        self.out: list = []  # torch views of the result payloads
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
                    self.load(msg.load_id, msg.model, msg.weights)
                elif kind is P.Attach:
                    self.attach(msg.load_id, msg.input_name, msg.result_names, msg.filters_name)
                elif kind is P.Weights:
                    self.write_weights(msg.load_id, msg.segment_name)
                elif kind is P.Infer:
                    want = True
                elif kind is P.EmbedFilters:
                    self.embed_filters(msg.job, msg.load_id, msg.layer)
                elif kind is P.OpenImages:
                    self.open_images(msg.data_dir)
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

    def load(self, load_id: int, name: str, weights: str | None) -> None:
        import torch
        from convscope.engine.graph.spec import NetSpec

        # A switch drops the old model first, so after a failed load there is no model at all and
        # both sides agree on that (no half-switched state).  The image set stays: it is the model's input.
        self.release()
        self.load_id = load_id
        try:
            # Imported here, inside the try, so a broken models package is reported, not a crash.
            from convscope.models.weights import WeightsError, load_model
        except Exception as exc:
            self.send(P.Error(load_id, f"cannot import models.weights: {type(exc).__name__}: {exc}"))
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
            self.send(P.Error(load_id, str(exc)))
            return
        except Exception as exc:  # a broken model must not take the worker down with a traceback
            self.send(P.Error(load_id, f"could not load model {name!r}: {type(exc).__name__}: {exc}"))
            return
        try:
            params = layer_parameters(model, spec)
        except Exception as exc:  # weights for the details view are a bonus; the model still runs
            self.send(P.Error(load_id, f"model {name!r}: cannot list its parameters: {exc}"))
            params = []
        self.model, self.spec, self.params = model, spec, params
        manifest = tuple((layer, key, tuple(a.shape)) for layer, key, a in params)
        self.send(P.Spec(load_id, spec.to_dict(), P.manifest_of(manifest)))

    def attach(
        self, load_id: int, input_name: str, result_names: tuple[str, ...], filters_name: str = ""
    ) -> None:
        import torch

        if load_id != self.load_id or self.spec is None:
            return  # answer to a load that a newer LOAD has replaced
        try:
            self.input = Slot.attach(input_name, P.INPUT_SIZE)
            for name in result_names:
                self.results.append(Slot.attach(name, self.spec.total_nodes + P.N_CLASSES))
            if filters_name:
                self.filters = Slot.attach(filters_name, V.filter_slot_count(self.spec))
        except (OSError, ValueError) as exc:
            self.release_slots()
            self.send(P.Error(load_id, f"could not attach shared memory: {exc}"))
            return
        self.out = [torch.from_numpy(slot.payload) for slot in self.results]
        self.last_done = 0
        self.next_slot = 0
        self.send(P.Attached(load_id))

    def write_weights(self, load_id: int, name: str) -> None:
        """Copy every parameter into the render side's segment, then let go of it."""
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
        try:
            x = torch.from_numpy(self.img).view(1, 1, *P.INPUT_SHAPE)
            with torch.no_grad():
                acts = self.model.forward_all(x)
                probs = torch.softmax(acts[self.spec.layers[-1].name].reshape(-1), 0)
            k = self.next_slot
            out = self.out[k]
            # Shapes were checked at load, so nothing below can fail halfway through a write.
            with self.results[k].writing(seq):
                for layer in self.spec.layers:
                    out[layer.start : layer.stop].copy_(acts[layer.name].reshape(-1))
                out[self.spec.total_nodes :].copy_(probs)
        except Exception as exc:
            self.send(P.Error(self.load_id, f"inference failed: {type(exc).__name__}: {exc}"))
            return
        self.last_done = seq
        self.next_slot = (k + 1) % len(self.results)
        self.send(P.Done(seq, k, time.perf_counter() - t0))

    def infer_batch(self, msg: P.Batch) -> None:
        """The class probabilities of `msg.count` images (a morph curve), one forward pass each, exactly as
        infer() computes them, written after the images in the render side's segment; BATCH_DONE says so."""
        import torch

        if self.model is None:
            self.send(P.BatchDone(msg.batch_id, False, "no network loaded"))
            return
        n, size = int(msg.count), P.INPUT_SIZE
        try:
            slot = Slot.attach(msg.segment_name, P.batch_count(n))
        except (OSError, ValueError) as exc:
            self.send(P.BatchDone(msg.batch_id, False, f"could not attach the batch segment: {exc}"))
            return
        try:
            buf = np.empty(slot.count, np.float32)
            got = slot.read_into(buf)
            if got is None or got[0] != msg.batch_id:
                raise ValueError("the batch's images were never completely written")
            images = torch.from_numpy(buf[: n * size]).view(n, 1, 1, *P.INPUT_SHAPE)
            last = self.spec.layers[-1].name
            with torch.no_grad():
                probs = [torch.softmax(self.model.forward_all(x)[last].reshape(-1), 0) for x in images]
            with slot.writing(msg.batch_id, aux=1) as out:
                out[n * size :] = torch.stack(probs).reshape(-1).numpy()
        except Exception as exc:  # a failed batch must not take the drawings down
            self.send(P.BatchDone(msg.batch_id, False, f"{type(exc).__name__}: {exc}"))
            return
        finally:
            out = None  # a live view of the mapping would make close() fail
            slot.close()
        self.send(P.BatchDone(msg.batch_id, True, ""))

    def release_slots(self) -> None:
        self.out = []  # torch views pin the buffers; close() fails while they live
        for slot in [self.input, *self.results, self.filters]:
            if slot is not None:
                slot.close()
        self.input = None
        self.results = []
        self.filters = None

    def release(self) -> None:
        self.drop_job()  # its activations belong to the model going away
        self.release_slots()
        self.model = None
        self.spec = None
        self.params = []

    # -- the embedding view -----------------------------------------------------------------------

    def embed_filters(self, job: int, load_id: int, layer: int) -> None:
        """The four vector kinds of conv layer `layer` for the drawing now in the input slot, the loss
        against the network's own top guess, into the filters slot; FILTERS says so."""
        import torch
        from convscope.features.embedding.vectors import filter_vectors

        if load_id != self.load_id or self.model is None or self.input is None:
            self.send(P.EmbedFailed(job, "the network is loading; ask again when it is up"))
            return
        t0 = time.perf_counter()
        try:
            if self.filters is None:
                raise ValueError(f"{self.spec.model} has no conv layers: no filters to embed")
            lay = V.FilterLayout.of(self.spec, layer)  # ValueError for a layer that is not there
            img = np.empty(P.INPUT_SIZE, np.float32)
            got = self.input.read_into(img)
            seq = got[0] if got is not None else -1
            x = torch.from_numpy(img).view(1, 1, *P.INPUT_SHAPE)
            fv = filter_vectors(self.model, layer, x, None)
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

    def open_images(self, data_dir: str) -> None:
        """Load the image set of `data_dir` in a thread (IMAGES_INFO when done), or answer at once."""
        info = self.images.open(data_dir)
        if info is not None:
            self.send(P.ImagesInfo(info))

    def start_images(self, job: int, load_id: int, kw: dict) -> None:
        """Attach the job's segment and set up an ImageVectors; `step_images` computes it one batch per turn
        of the loop and writes each batch's labels, pixels and vectors into the segment."""
        from convscope.features.embedding.vectors import ImageVectors

        self.drop_job()
        if load_id != self.load_id or self.model is None:
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
            x, y = data.first(n, bool(kw["include_train"]))
            expected = V.image_dim(self.spec.layer(layer).shape, int(kw["max_dim"]))
            if d != expected:
                raise ValueError(f"{layer}: vectors have {expected} values, not {d}")
            lay = V.ImagesLayout(n, d, tuple(int(s) for s in x.shape[1:]))
            iv = ImageVectors(self.model, x, layer, batch_size=MIN_BATCH * 4, max_dim=int(kw["max_dim"]))
            writer = ImagesWriter(job, kw, lay)
        except Exception as exc:  # refused: nothing runs, the drawings go on
            self.send(P.EmbedFailed(job, f"images: {exc}"))
            return
        self.send(V.ImgAttached(job))
        self.job = _ImagesJob(job, writer, lay, iv, y.numpy(), x.numpy())

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
            job.writer.write(
                start, stop, job.iv.out[start:stop], job.labels[start:stop], job.pixels[start:stop]
            )
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

    def __init__(self, cmd: int, writer, layout, iv, labels: np.ndarray, pixels: np.ndarray) -> None:
        self.cmd, self.writer, self.layout, self.iv = cmd, writer, layout, iv
        self.labels, self.pixels = labels, pixels  # (n,) int64 and (n, 1, 28, 28) uint8 views
        self.t0 = self.reported = time.perf_counter()
        self.longest = 0.0  # seconds of the slowest batch (what a drawing may have waited)
        self.batches = 0


class _Images:
    """An image set in memory, test images first, then training ones (concatenated once, by the loader
    thread, so a job takes a view of the first n instead of copying 15 MB between two drawings)."""

    def __init__(self, x_test, y_test, x_train, y_train, info: dict) -> None:
        import torch

        self.n_test, self.n_train, self.info = len(x_test), len(x_train), info
        self.x = torch.cat([x_test, x_train])  # uint8 (N, 1, 28, 28)
        self.y = torch.cat([y_test, y_train])  # int64 (N,)

    def first(self, n: int, include_train: bool):
        """The first `n` images and labels: test images, then (if `include_train`) training images."""
        total = self.n_test + (self.n_train if include_train else 0)
        if not 0 < n <= total:
            raise ValueError(f"{n} images asked for, {total} available")
        return self.x[:n], self.y[:n]


def load_images(data_dir: str) -> _Images:
    """MNIST (test 10,000 + training 60,000, 28x28) from `data_dir` (features/data/datasets.py reads the IDX
    files; no download), or, without it, scikit-learn's built-in digits upscaled to 28x28, with a note."""
    from convscope.features.data.datasets import DatasetUnavailable, builtin_digits, load_mnist

    note = reason = ""
    try:
        if not data_dir:
            raise DatasetUnavailable("no --data-dir given")
        ds = load_mnist(data_dir, download=False, channels=1)
        crop = (slice(None), slice(None), slice(2, 30), slice(2, 30))  # undo load_mnist's padding to 32
        x_test, x_train = ds.x_val[crop].contiguous(), ds.x_train[crop].contiguous()
        name, source = "MNIST", ds.source
    except DatasetUnavailable as exc:
        ds = builtin_digits(channels=1, size=P.INPUT_SHAPE[0])
        x_test, x_train = ds.x_val, ds.x_train
        name, source = "digits", ds.source
        note = f"No MNIST here: scikit-learn's {len(x_test) + len(x_train):,} built-in 8x8 digits, upscaled."
        reason = str(exc)
    info = {
        "dataset": name,
        "source": source,
        "note": note,  # why these images stand in for MNIST, in a line ("" for MNIST itself)
        "reason": reason,  # the longer story (where MNIST was looked for)
        "n_test": len(x_test),
        "n_train": len(x_train),
        "classes": tuple(ds.classes),
        "data_dir": data_dir,
    }
    return _Images(x_test, ds.y_val, x_train, ds.y_train, info)


class _ImageSet:
    """The embedding view's image set, loaded by a thread so that drawings keep flowing meanwhile."""

    def __init__(self) -> None:
        self.data: _Images | None = None
        self._dir: str | None = None  # what `data` or the running thread is for
        self._thread: threading.Thread | None = None
        self._result: list = []  # the thread's _Images or exception

    @property
    def loading(self) -> bool:
        return self._thread is not None

    def open(self, data_dir: str) -> dict | None:
        """Start loading `data_dir` unless it is loaded (its info, at once) or loading (None)."""
        if self._dir == data_dir and self.data is not None:
            return self.data.info
        if self._dir == data_dir and self._thread is not None:
            return None
        if self._thread is not None:
            self._thread.join()  # another directory was loading: let it end, it is not wanted any more
            self._thread = None
        self._dir, self.data, self._result = data_dir, None, []
        self._thread = threading.Thread(target=self._load, args=(data_dir, self._result), daemon=True)
        self._thread.start()
        return None

    def _load(self, data_dir: str, out: list) -> None:
        try:
            out.append(load_images(data_dir))
        except Exception as exc:  # reported as IMAGES_INFO's "error"
            out.append(exc)

    def poll(self) -> dict | None:
        """The info of a load that just finished (or {"error": text}), once; else None."""
        if self._thread is None or self._thread.is_alive():
            return None
        self._thread.join()
        self._thread = None
        got = self._result[0] if self._result else RuntimeError("the loader ended without a result")
        if isinstance(got, Exception):
            return {"error": f"{type(got).__name__}: {got}", "data_dir": self._dir}
        self.data = got
        return got.info


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
