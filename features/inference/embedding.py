"""The explorer's embedding view on the network process: filter vectors of the drawing, the image set, and
images jobs.  A mixin of WorkerHandle (handle.py), which holds the state these calls use.

`embed_filters(layer)` returns a job id; once the worker has written that conv layer's four vector kinds
for the current drawing into the model's filters slot, `filters[id]` holds them (DrawingFilters) and
`replies[id]` says (ok, text).  `open_images(data_dir)` has the worker load the image set that fits the
model's input once (`image_data`: grey MNIST / digits or colour CIFAR-10 / ImageFolder, features/data/
image_set.py); `embed_images(layer, count, include_train)` starts an images job (embedding/images_job.py)
that `images` follows: the worker makes each batch at the model's size, the thumbnails come here
(ImagesJob.images, (n, C, h, w) uint8, messages.thumb_shape).  A model switch or a restart ends every job
with a reason.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from convscope.engine.proc.handle import READY
from convscope.features.data.image_set import image_kind, view_shape
from convscope.features.embedding import messages as V
from convscope.features.embedding.images_job import ImagesJob, ImagesJobs
from convscope.features.inference import messages as P

KEEP_FILTERS = 16  # DrawingFilters kept in `filters` (nobody reads old ones)


@dataclass
class DrawingFilters(V.FilterData):
    """One conv layer's filter vectors for one drawing (`step` is 0 and `monitor_index` -1 here: the
    explorer has neither; `label` is the network's own top guess, the class the gradients are for)."""

    seq: int = -1  # the submit() number of the drawing they were computed for


class DrawingEmbedding(ImagesJobs):
    """The embedding view's calls; WorkerHandle initialises the attributes they use."""

    def embed_filters(self, layer: int) -> int:
        """Ask for conv layer `layer`'s (index among the conv layers) four vector kinds for the current
        drawing; returns a job id at once.  `filters[id]` once read, or `replies[id]` = (False, why)."""
        self._embed_id += 1
        job = self._embed_id
        if self._state != READY or self._filters_slot is None:
            why = (
                "the network is not loaded yet"
                if self._state != READY
                else f"{self._model} has no conv layers"
            )
            self.replies[job] = (False, why)
            return job
        self._filter_jobs[job] = self._load_id
        if not self._send(P.EmbedFilters(job, self._load_id, layer)):
            self._filter_jobs.pop(job, None)
            self.replies[job] = (False, "the network process is not running")
        return job

    def open_images(self, data_dir: str | os.PathLike | None, retry: bool = False) -> None:
        """Have the worker load the image set of `data_dir` that the model's input takes (grey: MNIST, else
        the built-in digits; colour: CIFAR-10 or an ImageFolder); returns at once, `image_data` is set when
        it is there (`image_error`, one line, if it could not be, or the model takes no pictures).  Asking
        again for the same directory and kind does nothing, unless it failed and `retry`."""
        d = "" if data_dir is None else os.fspath(data_dir)
        if self.input_spec is None:
            return  # the model's input decides which images: ask once it is here
        try:
            kind = image_kind(self.input_spec.shape)
        except ValueError as exc:
            self._image_key, self.image_data, self.image_error = None, None, str(exc)
            return
        key = (d, kind)
        if key == self._image_key and (self.image_data is not None or self.image_error is None or not retry):
            return
        self._image_key, self.image_data, self.image_error = key, None, None
        if self._conn is not None:
            self._send(P.OpenImages(d, kind))

    def embed_images(
        self, layer: str, count: int, include_train: bool = True, max_dim: int = V.MAX_IMAGE_DIM
    ) -> ImagesJob:
        """Start computing `layer`'s activations of min(count, available) images (test images first, then
        training images if `include_train`); replaces a running job.  Follow it in `images`."""
        if self.spec is None or self._state != READY:
            raise RuntimeError("the network is not loaded yet")
        info = self.image_data
        if info is None:
            raise RuntimeError(self.image_error or "the images are not loaded yet (open_images)")
        shape = tuple(self.input_spec.shape)
        if info.get("kind") != image_kind(shape):
            raise RuntimeError(f"the image set is {info.get('kind')}; the model takes {shape} (open_images)")
        n_test, n_train = int(info["n_test"]), int(info["n_train"])
        n = max(1, min(int(count), n_test + (n_train if include_train else 0)))
        d = V.image_dim(self.spec.layer(layer).shape, max_dim)  # KeyError for an unknown layer
        lay = V.ImagesLayout(n, d, V.thumb_shape(view_shape(shape), n))
        self._embed_id += 1
        job = self._new_images_job(self._embed_id, layer, min(n, n_test), bool(include_train), lay)
        if not self._send(P.EmbedImages(job.cmd, self._load_id, self._images_request(job, max_dim))):
            self._fail_images(job, "the network process is not running")
        return job

    def cancel_images(self) -> None:
        """Stop the running images job (the worker drops it; its segment is freed here)."""
        if self.images is not None and self.images.state in ("starting", "computing"):
            self._send(P.CancelImages())
        self._drop_images("cancelled")

    def wait_filters(self, job: int, timeout: float = 30.0) -> DrawingFilters:
        """Blocking helper for tools and tests: the vectors of embed_filters job `job`."""
        deadline = time.monotonic() + timeout
        while job not in self.filters:
            ok, text = self.replies.get(job, (True, ""))
            if not ok:
                raise RuntimeError(f"embed_filters refused: {text}")
            if job in self.replies:
                raise RuntimeError(f"embed_filters job {job} answered without vectors: {text}")
            self._wait_once(deadline, f"no filter vectors for job {job}")
        return self.filters[job]

    def wait_image_data(self, timeout: float = 60.0) -> dict:
        """Blocking helper for tools and tests: `image_data` once the worker has loaded the set."""
        deadline = time.monotonic() + timeout
        while self.image_data is None:
            if self.image_error is not None:
                raise RuntimeError(f"the images did not load: {self.image_error}")
            self._wait_once(deadline, "the image set did not load")
        return self.image_data

    def _wait_once(self, deadline: float, what: str) -> None:
        if self._conn is None or not self.alive:
            raise RuntimeError(f"{what}: {self.error or 'the network process is not running'}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what} within the timeout (state {self._state}, error {self.error})")
        self._wait(min(left, 0.05))

    def _on_filters(self, job: int, load_id: int, meta: dict) -> None:
        asked = self._filter_jobs.pop(job, None)
        if asked is None:
            return  # ended here already (a model switch)
        slot = self._filters_slot
        if load_id != self._load_id or slot is None or self._state != READY:
            self.replies[job] = (True, "computed for a network since replaced")
            return
        lay = V.FilterLayout.of(self.spec, int(meta["layer_index"]))
        buf = np.empty(slot.count, np.float32)
        got = slot.read_into(buf)
        if got is None or got[0] != job:
            self.replies[job] = (True, "overwritten by a newer request")
            return
        base = V.unpack_filters(lay, buf, job, self.spec_version, {**meta, "step": 0, "monitor_index": -1})
        self.filters[job] = DrawingFilters(**vars(base), seq=int(meta["seq"]))
        self.replies[job] = (True, f"filter vectors of {lay.layer} ({lay.count} filters)")
        while len(self.filters) > KEEP_FILTERS:
            del self.filters[next(iter(self.filters))]
        self._trim_replies()

    def _on_embed_failed(self, job: int, text: str) -> None:
        self._filter_jobs.pop(job, None)
        self.replies[job] = (False, text)
        self._trim_replies()
        img = self.images
        if img is not None and img.cmd == job and img.active:
            self._fail_images(img, text)

    def _trim_replies(self) -> None:
        while len(self.replies) > 4096:  # nobody reads old answers; keep the table bounded
            del self.replies[next(iter(self.replies))]

    def _on_images_info(self, info: dict) -> None:
        if (info.get("data_dir"), info.get("kind")) != self._image_key:
            return  # for a set asked for before
        if "error" in info:
            self.image_error = str(info["error"])
        else:
            self.image_data = dict(info)

    def _end_embed_jobs(self, why: str) -> None:
        """The worker forgets its embedding jobs (a model switch, a dead worker): say so to whoever waits."""
        for job in self._filter_jobs:
            self.replies[job] = (False, why)
        self._filter_jobs.clear()
        job = self.images
        if job is not None and job.state in ("starting", "computing"):
            self._fail_images(job, why)
