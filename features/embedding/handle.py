"""EmbedHandle: the render process's side of the t-SNE process (process.py), on ProcessHandle.

Imports no torch.  Once per frame: `result = embed.poll()` (newest layout for the newest request, partial
while a big job runs; also restarts a dead process), `embed.progress`, and `embed.request(kind, layer,
vectors, ids)` when the panel wants a refresh (a job id, at once).  At most one job runs; a newer request
waits as the one pending request, and a request for another view cancels the running one.  Small inputs
are copied into a fresh segment at once, big ones by a short-lived thread; an images job's SharedVectors
are not copied at all (the process maps their segment).  The last layout of every (kind, layer) is kept
for warm starts, matched by id.  Points come back centred with an RMS radius of 1.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from multiprocessing import reduction

import numpy as np
from convscope.engine.proc.handle import ProcessHandle
from convscope.engine.proc.shm import Slot
from convscope.features.embedding import process as E
from convscope.features.embedding import tsne_messages as M
from convscope.features.embedding.images_job import SharedVectors

NAN = float("nan")
BACKGROUND_COPY_BYTES = 4 << 20  # inputs this big are copied into shared memory by a thread


@dataclass(frozen=True)
class EmbedConfig:
    niceness: int = 5  # the t-SNE process runs below the render and training loops (os.nice)
    engine: str = "auto"  # "auto" (openTSNE when importable), "opentsne" or "sklearn"
    params: E.TsneParams = field(default_factory=E.TsneParams)  # iteration counts, seed, perplexity
    max_restarts_per_job: int = 1  # a job whose process died is sent again this often, then dropped


@dataclass(frozen=True)
class EmbedResult:
    job: int
    kind: str
    layer: str
    ids: np.ndarray  # (n,) int64, as sent
    points: np.ndarray  # (n, 2) float32, centred, RMS radius 1
    final: bool  # False: a partial layout of a job still running
    fraction: float  # of the job's iterations done (1 when final)
    seconds: float  # compute time in the process (final results; nan for partial ones)
    kl: float  # KL divergence of the final layout (nan if unknown)
    engine: str  # "opentsne", "sklearn" or "trivial"


@dataclass(frozen=True)
class Progress:
    job: int
    kind: str
    layer: str
    n: int
    fraction: float  # 0..1
    phase: str  # "queued", "neighbors", "exaggeration", "optimize"


def normalize(points: np.ndarray) -> np.ndarray:
    """Centred, RMS distance from the centre 1 (t-SNE's scale means nothing and grows with iterations)."""
    p = np.asarray(points, np.float64)
    p = p - p.mean(0)
    rms = float(np.sqrt((p**2).sum(1).mean())) if len(p) else 0.0
    return (p / rms if rms > 0 else p).astype(np.float32)


@dataclass
class _Request:
    job: int
    kind: str
    layer: str
    vectors: np.ndarray | SharedVectors  # (n, d) float32: the handle's copy, or an images job's segment
    ids: np.ndarray  # (n,) int64
    warm: bool
    params: E.TsneParams
    tries: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.layer)


@dataclass
class _Job:
    req: _Request
    slot_in: Slot | None
    slot_out: Slot | None
    writer: threading.Thread | None = None  # copies big inputs into slot_in off the render thread
    sent: bool = False  # JOB went to the process
    dropped: bool = False  # superseded before it was sent
    attached: bool = False
    fraction: float = 0.0
    phase: str = "queued"


class EmbedHandle(ProcessHandle):
    """Runs the t-SNE process for the render loop; see the module docstring for the frame loop."""

    process_name = "convscope-embed"
    what = "embed process"
    join_s = 2.0

    def __init__(self, config: EmbedConfig | None = None) -> None:
        super().__init__()
        self.config = config or EmbedConfig()
        self._ready = False
        self.engine: str | None = None  # what the process said it uses, once READY
        self._next_job = 0
        self._job: _Job | None = None  # sent, not yet answered
        self._pending: _Request | None = None  # waits for the running job
        self._view: tuple[str, str] | None = None  # the key of the newest request: poll() shows only that
        self._layouts: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # key -> (ids, raw points)
        self._latest: EmbedResult | None = None  # newest result not yet handed out by poll()
        self.last: EmbedResult | None = None  # newest final result handed out or not (for tools)
        self.jobs_done = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready and self.alive

    def start(self, timeout: float = 30.0) -> bool:
        """Start the process and wait until it is ready (True), for tools and tests."""
        self.launch()
        deadline = time.monotonic() + timeout
        while not self._ready:
            if not self.alive:
                self.error = f"embed process exited during start (exit code {self._proc.exitcode})"
                return False
            if time.monotonic() > deadline:
                self.error = f"embed process not ready within {timeout:g} s"
                return False
            self._wait(0.05)
        return True

    def check(self) -> bool:
        """Restart the process if it died; its running job is sent again (once).  True if it restarted."""
        job = self._job if not self.alive else None
        if not super().check():
            return False
        if job is not None and self._pending is None:
            if job.req.tries < self.config.max_restarts_per_job:
                job.req.tries += 1
                self._pending = job.req
            else:
                self.error += f"; dropped job {job.req.job} ({job.req.kind} {job.req.layer}) that it died on"
        self._send_pending()
        return True

    def close(self) -> None:
        """Stop the process and free every segment.  Idempotent; also runs at interpreter exit."""
        super().close()
        self._pending = None

    # -- requests and results --------------------------------------------------------------------

    def request(
        self,
        kind: str,
        layer: str,
        vectors: np.ndarray | SharedVectors,
        ids: np.ndarray | None = None,
        *,
        warm: bool = True,
        params: E.TsneParams | None = None,
    ) -> int:
        """Ask for the 2D layout of `vectors` (n, d) for view (kind, layer); returns the job id at once.

        `ids` (n,) name the rows (default 0..n-1) for warm starts and for the panel; `warm` starts from the
        view's previous layout.  The handle keeps a reference to float32 `vectors` until the job is done
        (copying 100 MB here would cost the frame): do not write into that array afterwards.  An images
        job's SharedVectors are not copied at all: the t-SNE process reads them from their segment.
        """
        if self._closed:
            raise RuntimeError("EmbedHandle is closed")
        if isinstance(vectors, SharedVectors):
            v = vectors
        else:
            v = np.ascontiguousarray(vectors, np.float32)  # no copy of float32 input: see the docstring
        if len(v.shape) != 2 or v.shape[0] == 0:
            raise ValueError(f"request() takes (n, d) vectors with n >= 1, got shape {v.shape}")
        n = v.shape[0]
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64).reshape(-1)
        if ids.shape != (n,):
            raise ValueError(f"request(): {len(ids)} ids for {n} vectors")
        self._next_job += 1
        req = _Request(self._next_job, kind, layer, v, ids.copy(), warm, params or self.config.params)
        self._view = req.key
        if self._latest is not None and (self._latest.kind, self._latest.layer) != req.key:
            self._latest = None  # another view's result must not show after this request
        self._pending = req
        if self._proc is None:
            self._spawn()
        self._drop_other_views(req.key)
        self._send_pending()
        return req.job

    def _drop_other_views(self, key: tuple[str, str] | None) -> None:
        """Stop the current job unless it is for `key` (a refresh of the same view lets it finish)."""
        job = self._job
        if job is None or job.req.key == key:
            return
        if job.sent:
            self._send(M.TsneCancel(job.req.job))
        else:
            job.dropped = True  # still being copied: _dispatch releases it instead of sending

    def cancel(self) -> None:
        """Drop the pending request and stop the running job (the panel left the view)."""
        self._pending = None
        self._view = None
        self._drop_other_views(None)

    def poll(self) -> EmbedResult | None:
        """The newest layout (partial or final) of the newest request's view since the last poll, or None.

        Never blocks; restarts a dead process.
        """
        if self._closed:
            return None
        if self._conn is not None:
            self._drain()
        self.check()
        self._dispatch()
        out, self._latest = self._latest, None
        return out

    @property
    def progress(self) -> Progress | None:
        """The running or waiting job of the current view, or None when idle."""
        job = self._job
        if job is not None and job.req.key == self._view:
            req = job.req
            return Progress(req.job, req.kind, req.layer, len(req.ids), job.fraction, job.phase)
        req = self._pending
        if req is not None and req.key == self._view:
            return Progress(req.job, req.kind, req.layer, len(req.ids), 0.0, "queued")
        return None

    @property
    def busy(self) -> bool:
        return self._job is not None or self._pending is not None

    def layout(self, kind: str, layer: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids, display points) of the view's last finished layout, or None."""
        got = self._layouts.get((kind, layer))
        return None if got is None else (got[0].copy(), normalize(got[1]))

    def forget(self, kind: str | None = None, layer: str | None = None) -> None:
        """Drop warm-start layouts (all, or one view): the next request starts cold."""
        if kind is None:
            self._layouts.clear()
        else:
            self._layouts.pop((kind, layer), None)

    def wait(self, job: int, timeout: float = 60.0) -> EmbedResult:
        """Blocking helper for tools and tests: the final result of `job` (a request of the current view)."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if self.last is not None and self.last.job >= job:
                return self.last
            if not self.busy:
                raise RuntimeError(self.error or f"job {job} ended without a result")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no layout for job {job} within {timeout:g} s")
            self._wait(min(left, 0.05))

    # -- internals -----------------------------------------------------------------------------

    def _target(self):
        return E.embed_main, (self.config.niceness, self.config.engine), {}

    def _spawned(self) -> None:
        self._ready = False

    def _quit_message(self):
        return M.TsneQuit()

    def _send_pending(self) -> None:
        """Send the pending request if nothing runs."""
        if self._job is not None or self._pending is None or self._conn is None:
            return
        req, self._pending = self._pending, None
        n, d = req.vectors.shape
        shared = isinstance(req.vectors, SharedVectors)  # read by the t-SNE process where they are
        if shared and req.vectors.slot.closed:
            self.error = f"embedding {req.kind} of {req.layer}: the images job's vectors are gone"
            return
        init = known = None
        prev = self._layouts.get(req.key) if req.warm else None
        if prev is not None:
            init, known = _match(prev[0], prev[1], req.ids)
        slots: list[Slot] = []
        try:
            slots.append(Slot.create(E.input_count(n, 0 if shared else d)))
            slots.append(Slot.create(2 * n))
        except OSError as exc:
            self.error = f"could not create shared memory for {n} x {d} vectors: {exc}"
            for slot in slots:
                slot.unlink()
                slot.close()
            return
        slot_in, slot_out = slots
        job = self._job = _Job(req, slot_in, slot_out)
        payload = slot_in.begin_write()
        if shared:
            E.pack_input(payload, np.empty((n, 0), np.float32), init, known)  # the warm start only
            self._dispatch()
        elif req.vectors.nbytes < BACKGROUND_COPY_BYTES:
            E.pack_input(payload, req.vectors, init, known)
            self._dispatch()
        else:
            # 20,000 x 1280 floats are 100 MB: copying them (and faulting in the fresh segment's pages)
            # takes 80-300 ms, several frames.  numpy releases the GIL for the copy, so a thread does it
            # and poll() sends the job once it is done.
            job.writer = threading.Thread(
                target=E.pack_input, args=(payload, req.vectors, init, known), name="embed-copy", daemon=True
            )
            job.writer.start()

    def _dispatch(self) -> None:
        """Send the current job once its input is written (at once for small ones; from poll() otherwise)."""
        job = self._job
        if job is None or job.sent or (job.writer is not None and job.writer.is_alive()):
            return
        if job.writer is not None:
            job.writer.join()
            job.writer = None
        if job.dropped:  # the view changed while its vectors were being copied: never send it
            self._release_job()
            self._send_pending()
            return
        job.slot_in.end_write(1)
        req, n, d = job.req, *job.req.vectors.shape
        job.sent = True
        shared = isinstance(req.vectors, SharedVectors)
        msg = M.TsneJob(req.job, job.slot_in.name, job.slot_out.name, n, d, req.params.to_dict(), shared)
        if not self._send(msg) or (shared and not self._send_fd(req.vectors.fd())):
            self._release_job()
            if self._pending is None:
                self._pending = req  # the process is gone: check() restarts it and sends this again

    def _send_fd(self, fd: int) -> bool:
        """Hand a segment's descriptor to the process, right behind the TsneJob that announced it."""
        try:
            reduction.send_handle(self._conn, fd, self.pid)
            return True
        except OSError:
            self._lost = True
            return False

    def _handle(self, msg) -> None:
        kind = type(msg)
        if kind is M.TsneReady:
            self._ready, self.engine = True, msg.engine
            self._ready_now()
            return
        job = self._job
        if job is None or not job.sent or msg.job != job.req.job:
            return  # about a job already released (after a restart)
        if kind is M.TsneAttached:
            job.attached = True
            for slot in (job.slot_in, job.slot_out):
                slot.unlink()  # both sides have it mapped now: nothing can leak from here on
            job.slot_in.close()  # the process copies the vectors out of its own mapping
            job.slot_in = None
        elif kind is M.TsneProgress:
            job.fraction, job.phase = msg.fraction, msg.phase
            if msg.seq > 0:
                self._publish(job, msg.seq, final=False)
        elif kind is M.TsneDone:
            job.fraction = 1.0
            self._publish(job, msg.seq, final=True, seconds=msg.seconds, kl=msg.kl, engine=msg.engine)
            self.jobs_done += 1
            self._release_job()
            self._send_pending()
        elif kind in (M.TsneCancelled, M.TsneFailed):
            if kind is M.TsneFailed:
                self.error = f"embedding {job.req.kind} of {job.req.layer} failed: {msg.text}"
            self._release_job()
            self._send_pending()

    def _publish(
        self, job: _Job, seq: int, final: bool, seconds: float = NAN, kl: float = NAN, engine: str = ""
    ) -> None:
        n = len(job.req.ids)
        buf = np.empty(2 * n, np.float32)
        got = job.slot_out.read_into(buf)
        if got is None or got[0] < seq:
            if final:
                self.error = f"job {job.req.job}: the result segment was not completely written"
            return
        raw = buf.reshape(n, 2)
        if final:
            self._layouts[job.req.key] = (job.req.ids, raw.astype(np.float64))
        if job.req.key != self._view:
            return  # kept for a later warm start, not shown
        result = EmbedResult(
            job=job.req.job,
            kind=job.req.kind,
            layer=job.req.layer,
            ids=job.req.ids.copy(),
            points=normalize(raw),
            final=final,
            fraction=1.0 if final else job.fraction,
            seconds=float(seconds),
            kl=float(kl),
            engine=engine or (self.engine or ""),
        )
        self._latest = result
        if final:
            self.last = result

    def _release_job(self) -> None:
        job, self._job = self._job, None
        if job is None:
            return
        if job.writer is not None:
            job.writer.join()  # it writes into slot_in: never unmap under it
        for slot in (job.slot_in, job.slot_out):
            if slot is not None:
                slot.unlink()  # no-op once unlinked after ATTACHED
                slot.close()

    def _release(self) -> None:
        self._ready = False
        self._release_job()


def _match(prev_ids: np.ndarray, prev_points: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Previous positions of `ids` (init (n, 2)) and which of them had one (known (n,))."""
    order = np.argsort(prev_ids, kind="stable")
    sorted_ids = prev_ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
    known = sorted_ids[pos] == ids if len(sorted_ids) else np.zeros(len(ids), bool)
    init = np.zeros((len(ids), 2), np.float64)
    init[known] = prev_points[order[pos[known]]]
    return init, known


__all__ = [
    "EmbedConfig",
    "EmbedHandle",
    "EmbedResult",
    "Progress",
    "normalize",
]
