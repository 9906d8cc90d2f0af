"""An images job seen from the render side, and the calls both worker handles share to follow one.

Both workers (inference/process.py, training/process.py) compute one layer's activations of many images
into two segments the render side created (messages.ImagesLayout): labels and pixels, and the vectors.
At ImgAttached the render side unlinks both; at ImgDone a short-lived thread copies the labels and pixels
out (numpy copies release the GIL, so the render loop keeps drawing) and the next poll marks the job
"done".  The vectors stay where the worker wrote them: the render side keeps its mapping and hands it to
the t-SNE process (`shared_vectors()`, EmbedHandle.request), which reads them there, so 100 MB never
pass through the render process.  `vectors` copies them out on demand (tools and tests).

`ImagesJobs` is the mixin WorkerHandle and TrainHandle share: `images` (the newest job), `wait_images`, the
message handling and `_new_images_job`, which makes the segments.
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
    """An images job seen from the render side; labels and images appear when `state` is "done"."""

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
    labels: np.ndarray | None = None  # (n,) int64
    images: np.ndarray | None = None  # (n, C, H, W) uint8
    _slot: Slot | None = field(default=None, repr=False)  # labels and pixels
    _vectors: Slot | None = field(default=None, repr=False)  # the vectors, mapped until the job is dropped
    _copier: threading.Thread | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ("starting", "computing", "copying")

    @property
    def vectors(self) -> np.ndarray | None:
        """(n, d) float32, a copy out of the vectors segment once the job is done (None before, or once
        the job was dropped).  The render loop does not need them: see shared_vectors()."""
        got = self.shared_vectors()
        return None if got is None else got.array()

    def shared_vectors(self) -> SharedVectors | None:
        """The finished vectors where the worker wrote them, for EmbedHandle.request (no copy here)."""
        if self.state != "done" or self._vectors is None or self._vectors.closed:
            return None
        return SharedVectors(self._vectors, self.n, self.d, self.cmd)

    def _copy_out(self) -> None:
        """Thread body: numpy copies release the GIL, so the render loop keeps drawing meanwhile."""
        payload, lay = self._slot.payload, self.layout
        self.labels = payload[lay.labels].astype(np.int64)
        self.images = lay.pixel_view(payload).copy()
        del payload

    def _release_pixels(self) -> None:
        if self._copier is not None:
            self._copier.join()  # it reads the mapping: never unmap under it
            self._copier = None
        if self._slot is not None:
            self._slot.unlink()  # no-op once unlinked after ImgAttached
            self._slot.close()
            self._slot = None

    def _release(self) -> None:
        self._release_pixels()
        if self._vectors is not None:
            self._vectors.unlink()
            self._vectors.close()  # a t-SNE process that mapped them keeps its own mapping
            self._vectors = None


@dataclass(frozen=True)
class SharedVectors:
    """An images job's (n, d) vectors in the segment the worker wrote them to, still mapped here."""

    slot: Slot
    n: int
    d: int
    seq: int  # what the worker closed the segment's write with (the job id)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.d)

    @property
    def nbytes(self) -> int:
        return 4 * self.n * self.d

    def fd(self) -> int:
        """The segment's file descriptor in this process (POSIX), to hand to the t-SNE process."""
        return self.slot.fd

    def array(self) -> np.ndarray:
        """A copy (for tools and tests, and for a t-SNE job sent again after its process restarted)."""
        out = np.empty(self.n * self.d, np.float32)
        got = self.slot.read_into(out)
        if got is None or got[0] != self.seq:
            raise RuntimeError("the images job's vectors were not completely written")
        return out.reshape(self.n, self.d)


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
            job._slot.unlink()  # both sides have them mapped now
            job._vectors.unlink()
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
            job._release_pixels()  # the vectors stay mapped for the t-SNE process
            job.state = "done"

    def _fail_images(self, job: ImagesJob, text: str) -> None:
        job._release()
        job.state, job.error = "failed", text

    def _new_images_job(self, cmd: int, layer: str, n_val: int, include_train: bool, lay) -> ImagesJob:
        """A job with its two segments created (OSError when /dev/shm is full); replaces the last one."""
        self._drop_images("cancelled")
        pixels = Slot.create(lay.count)
        try:
            vectors = Slot.create(lay.vectors_count)
        except OSError:
            pixels.unlink()
            pixels.close()
            raise
        job = ImagesJob(cmd, layer, lay.n, lay.d, n_val, include_train, lay, _slot=pixels, _vectors=vectors)
        self.images = job
        return job

    @staticmethod
    def _images_request(job: ImagesJob, max_dim: int) -> dict:
        """What the worker needs to run `job` (the same for both workers)."""
        return dict(
            layer=job.layer,
            n=job.n,
            d=job.d,
            include_train=job.include_train,
            max_dim=int(max_dim),
            slot=job._slot.name,
            count=job.layout.count,
            vectors=job._vectors.name,
            vectors_count=job.layout.vectors_count,
        )

    def _drop_images(self, state: str) -> None:
        job = self.images
        if job is not None:
            job._release()
            if job.active:
                job.state = state


__all__ = ["ImagesJob", "ImagesJobs", "SharedVectors"]
