"""An embed_images job seen from the render side, and the calls both worker handles share to follow one.

Both workers (inference/process.py, training/process.py) compute one layer's
activations of many images into a shared-memory segment the render side created (train_protocol.ImagesLayout),
answering IMG_ATTACHED (the render side unlinks the segment), IMG_PROGRESS and IMG_DONE (or IMG_FAILED); the
tags are the same strings in protocol.py and train_protocol.py.  Once done, a short-lived thread copies the
arrays out of the segment (numpy copies release the GIL, so the render loop keeps drawing), and the next
poll closes it and marks the job "done".

`ImagesJobs` is the mixin WorkerHandle and TrainHandle share: `images` (the newest job), `wait_images`, and
the message handling.  The handle provides `_wait_once(deadline, what)`, which waits a moment for messages
and raises when the worker is gone or the deadline passed.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from convscope.engine.proc.shm import Slot
from convscope.features.embedding import messages as V


@dataclass
class ImagesJob:
    """An embed_images job seen from the render side; arrays appear when `state` is "done"."""

    cmd: int
    layer: str
    n: int  # images: held-out ones first (ids 0..n_val-1), then training images
    d: int  # values per image vector
    n_val: int  # of the n, this many are held-out images (id i < n_val: held-out image i)
    include_train: bool
    layout: V.ImagesLayout
    state: str = "starting"  # "starting", "computing", "copying", "done", "failed", "cancelled"
    fraction: float = 0.0  # of the activations computed in the worker
    error: str = ""
    step: int = -1  # training step of the weights used
    seconds: float = math.nan  # worker time
    vectors: np.ndarray | None = None  # (n, d) float32
    labels: np.ndarray | None = None  # (n,) int64
    images: np.ndarray | None = None  # (n, C, H, W) uint8
    _slot: Slot | None = field(default=None, repr=False)
    _copier: threading.Thread | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ("starting", "computing", "copying")

    def _copy_out(self) -> None:
        """Thread body: numpy copies release the GIL, so the render loop keeps drawing meanwhile."""
        payload, lay = self._slot.payload, self.layout
        self.vectors = payload[lay.vectors].reshape(lay.n, lay.d).copy()
        self.labels = payload[lay.labels].astype(np.int64)
        self.images = lay.pixel_view(payload).copy()
        del payload

    def _release(self) -> None:
        if self._copier is not None:
            self._copier.join()  # it reads the mapping: never unmap under it
            self._copier = None
        if self._slot is not None:
            self._slot.unlink()  # no-op once unlinked after IMG_ATTACHED
            self._slot.close()
            self._slot = None


class ImagesJobs:
    """Follows the handle's newest ImagesJob through its worker's messages (see the module docstring)."""

    images: ImagesJob | None = None  # the newest embed_images job
    images_meta: (
        dict  # what the worker said of the last finished one (seconds, batches...); the handle sets {}
    )
    _copy_thread_name = "images-copy"

    def wait_images(self, timeout: float = 120.0) -> ImagesJob:
        """Blocking helper for tools and tests: the newest images job once done (RuntimeError if failed)."""
        deadline = time.monotonic() + timeout
        while True:
            self._finish_images()
            job = self.images
            if job is None or not job.active:
                break
            if job.state == "copying":
                job._copier.join(max(deadline - time.monotonic(), 0.0))
                if time.monotonic() > deadline:
                    raise TimeoutError("the images job's copy did not finish")
                continue
            self._wait_once(deadline, "images job not done")
        if job is None or job.state != "done":
            raise RuntimeError(f"images job {getattr(job, 'state', 'missing')}: {getattr(job, 'error', '')}")
        return job

    def _wait_once(self, deadline: float, what: str) -> None:
        raise NotImplementedError  # the handle's: wait a moment for messages, raise when it cannot

    def _on_image_msg(self, msg: V.ImgAttached | V.ImgProgress | V.ImgDone | V.ImgFailed) -> None:
        """One of the images-job messages (embedding/messages.py) from the worker."""
        job = self.images
        if job is None or job.cmd != msg.job or not job.active:
            return  # a job dropped here already
        kind = type(msg)
        if kind is V.ImgAttached:
            job._slot.unlink()  # both sides have it mapped now
            job.state = "computing"
        elif kind is V.ImgProgress:
            job.fraction = msg.fraction
        elif kind is V.ImgDone:
            meta = msg.meta
            job.fraction, job.seconds = 1.0, float(meta["seconds"])
            job.step = int(meta.get("step", job.step))
            self.images_meta = dict(meta)  # worker time, batches, the slowest batch (benchmarks)
            job.state = "copying"
            job._copier = threading.Thread(target=job._copy_out, name=self._copy_thread_name, daemon=True)
            job._copier.start()
        elif kind is V.ImgFailed:
            self._fail_images(job, msg.text)

    def _finish_images(self) -> None:
        """Once the copy thread is done: close the segment, hand out the arrays."""
        job = self.images
        if job is not None and job.state == "copying" and not job._copier.is_alive():
            job._release()
            job.state = "done"

    def _fail_images(self, job: ImagesJob, text: str) -> None:
        job._release()
        job.state, job.error = "failed", text

    def _drop_images(self, state: str) -> None:
        job = self.images
        if job is not None:
            job._release()
            if job.active:
                job.state = state


__all__ = ["ImagesJob", "ImagesJobs"]
