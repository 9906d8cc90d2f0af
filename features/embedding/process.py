"""The t-SNE process of the embedding view: places vectors in 2D off the render thread and off
the training loop, with one BLAS/OpenMP thread.

Why a process of its own: t-SNE is seconds of numpy and OpenMP for 20,000 points, which would stall a
render frame or a training step; and with two OpenMP threads on two busy cores even a 20-point t-SNE
stalls for seconds (scikit-learn here: 5-15 s, against 0.05 s with one thread), so the child runs
single-threaded.  The handle (ProcessHandle) puts ENV_ONE_THREAD into the environment the child is
spawned with, so OpenBLAS / OpenMP read 1 before numpy or scikit-learn load there, and the child also
holds `threadpoolctl.threadpool_limits(1)` for libraries loaded later.  It runs at a lower priority
(EmbedConfig.niceness) so the render and training loops come first.

Engine, measured (tools/bench_embed.py; one thread, a shared 2-core machine): openTSNE when importable,
scikit-learn otherwise.  Cold layouts of 20,000 points took 187-210 s with scikit-learn's Barnes-Hut and
31-71 s with openTSNE's FFT gradient (depending on the load); 500 points 0.6-0.9 s against 0.5-0.65 s.
openTSNE uses Barnes-Hut below FFT_MIN_POINTS (FFT has a fixed grid cost that makes tiny n slow: 7 s for
20 points) and exact neighbours below EXACT_KNN_MAX (at 20,000 x 50: 4 s against Annoy's 12 s).  A
learning rate below 50 (openTSNE's "auto" is n/12) collapses tiny Barnes-Hut embeddings to a point,
hence max(n/12, 50).  Inputs of PCA_MIN_POINTS rows and more are reduced to 50 PCA dimensions first.
Jobs this big (progress_min_points) report progress and write partial layouts every `check_every`
iterations.

Perplexity adapts to n: min(30, (n - 1) / 3) (`perplexity_for`), since a perplexity near n is meaningless
and scikit-learn refuses perplexity >= n; 1 and 2 points get fixed layouts without t-SNE.

Warm start: a job may carry a previous layout (`init`, with `known` marking the rows that have one).  Rows
without one start at their nearest known neighbour in input space (plus a tiny offset); then, when any row
was known, early exaggeration is skipped and only `warm_iters` iterations run, so a refresh with similar
vectors moves points little.  Points come back in t-SNE's own scale (the handle normalises for display
and keeps these for the next warm start).

Messages: tsne_messages.py (the table is in docs/PROTOCOLS.md).  A job's vectors are in its input segment,
or, for an images job, in that job's own vectors segment, whose descriptor follows the TsneJob on the pipe
(the segment's name is unlinked by then).  A newer job that arrives while one runs supersedes it at the next
progress check (every `check_every` iterations): the old one answers TsneCancelled, then the new one runs.
Shared memory follows engine/proc/shm.py (the handle creates and unlinks; this side only attaches and closes).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing import reduction

import numpy as np
from convscope.engine.proc.handle import ONE_THREAD
from convscope.engine.proc.shm import Slot
from convscope.features.embedding import tsne_messages as M

ENV_ONE_THREAD = ONE_THREAD  # what the handle puts into the child's environment (engine/proc/handle.py)
FFT_MIN_POINTS = 10_000  # openTSNE's FFT gradient from here up, Barnes-Hut below (measured; see top)
SMALL_POINTS = 1_000  # fewer iterations below this (see TsneParams)
PCA_MIN_POINTS = 2_000  # reduce wide inputs by PCA from here up (filters stay exact; 20k images get fast kNN)
EXACT_KNN_MAX = 50_000  # exact neighbours below this many points, Annoy above
PREP_SHARE = 0.15  # of a big job's progress bar given to PCA and the neighbour search
ENGINES = ("auto", "opentsne", "sklearn")


@dataclass(frozen=True)
class TsneParams:
    """How one t-SNE job runs; a plain dict of it travels with the job."""

    perplexity: float = 0.0  # 0: perplexity_for(n); otherwise clipped to it so small n never fail
    seed: int = 0  # random_state of the PCA init, the kNN index and the optimiser
    early_iters: int | None = None  # early exaggeration iterations of a cold start (skipped when warm);
    # None: 125 below SMALL_POINTS points (as good a KL as 250 there, measured, at half the time), else 250
    iters: int | None = None  # iterations after them, cold start; None: 250 below SMALL_POINTS, else 500
    warm_iters: int = 100  # iterations of a warm start (a previous layout given); more only adds drift
    exaggeration: float = 12.0  # early exaggeration factor
    pca_dims: int = 50  # inputs with more columns (and >= PCA_MIN_POINTS rows) are reduced to this many
    check_every: int = 25  # iterations between checks for a cancel (and progress reports of big jobs)
    progress_min_points: int = 2_000  # jobs this big send PROGRESS with partial layouts
    engine: str = "auto"  # "auto" (openTSNE when importable), "opentsne" or "sklearn"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"TsneParams.engine must be one of {ENGINES}, got {self.engine!r}")
        if (
            (self.iters is not None and self.iters < 1)
            or (self.early_iters is not None and self.early_iters < 0)
            or self.warm_iters < 1
            or self.check_every < 1
        ):
            raise ValueError(f"TsneParams: iteration counts must be positive, got {self}")

    def iterations(self, n: int) -> tuple[int, int]:
        """(early exaggeration, main) iterations of a cold start for n points."""
        small = n < SMALL_POINTS
        early = self.early_iters if self.early_iters is not None else (125 if small else 250)
        return early, self.iters if self.iters is not None else (250 if small else 500)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TsneResult:
    points: np.ndarray  # (n, 2) float64, t-SNE's own scale
    kl: float  # KL divergence of the final layout (nan where not computed)
    engine: str  # "opentsne", "sklearn" or "trivial"
    seconds: float


class Cancelled(Exception):
    """Raised out of `tsne` when its progress callback asked to stop."""


def perplexity_for(n: int, wanted: float = 0.0) -> float:
    """The perplexity used for n points: `wanted` (default 30), at most (n - 1) / 3."""
    cap = max((n - 1) / 3.0, 1e-3)
    return min(wanted if wanted > 0 else 30.0, cap)


def input_count(n: int, d: int) -> int:
    """Floats in a job's input segment: vectors (n*d), init (n*2), known (n)."""
    return n * d + 3 * n


def pack_input(payload: np.ndarray, vectors: np.ndarray, init: np.ndarray | None, known: np.ndarray | None):
    """Fill a job's input payload (see input_count)."""
    n, d = vectors.shape
    payload[: n * d] = vectors.reshape(-1)
    if init is None or known is None or not np.any(known):
        payload[n * d :] = 0.0
    else:
        payload[n * d : n * d + 2 * n] = np.asarray(init, np.float32).reshape(-1)
        payload[n * d + 2 * n :] = np.asarray(known, np.float32)


def unpack_input(payload: np.ndarray, n: int, d: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    x = payload[: n * d].reshape(n, d)
    init = payload[n * d : n * d + 2 * n].reshape(n, 2).astype(np.float64)
    known = payload[n * d + 2 * n :] > 0.5
    return x, (init if known.any() else None), known


def engine_available(engine: str = "auto") -> str:
    """The engine `engine` resolves to here ("opentsne" or "sklearn")."""
    if engine in ("auto", "opentsne"):
        try:
            import openTSNE  # noqa: F401
        except ImportError:
            if engine == "opentsne":
                raise
            return "sklearn"
        return "opentsne"
    return "sklearn"


def _place_unknown(x: np.ndarray, init: np.ndarray, known: np.ndarray, seed: int) -> np.ndarray:
    """Rows without a previous position start beside their nearest known row in input space."""
    init = init.copy()
    missing = np.flatnonzero(~known)
    if len(missing) == 0:
        return init
    have = np.flatnonzero(known)
    xk = x[have]
    d2 = (x[missing] ** 2).sum(1)[:, None] - 2.0 * x[missing] @ xk.T + (xk**2).sum(1)[None, :]
    nearest = have[np.argmin(d2, axis=1)]
    spread = float(np.sqrt(((init[have] - init[have].mean(0)) ** 2).sum(1).mean())) or 1.0
    rng = np.random.default_rng(seed)
    init[missing] = init[nearest] + rng.normal(0.0, 1e-2 * spread, (len(missing), 2))
    return init


def _reduce(x: np.ndarray, params: TsneParams) -> np.ndarray:
    if len(x) < PCA_MIN_POINTS or x.shape[1] <= params.pca_dims:
        return x
    from sklearn.decomposition import PCA

    return PCA(params.pca_dims, svd_solver="randomized", random_state=params.seed).fit_transform(x)


Progress = Callable[[float, str, np.ndarray | None], bool]  # (fraction, phase, partial layout) -> stop?


def tsne(
    vectors: np.ndarray,
    init: np.ndarray | None = None,
    known: np.ndarray | None = None,
    params: TsneParams | None = None,
    progress: Progress | None = None,
    one_thread: bool = True,
) -> TsneResult:
    """2D t-SNE of `vectors` (n, d).  `init` (n, 2) with `known` (n,) bool: a previous layout (warm start).

    `progress(fraction, phase, points)` is called every `check_every` iterations (points: the partial
    layout) and may return True to stop: then `Cancelled` is raised.  Runs in the calling thread, with
    BLAS / OpenMP limited to one thread unless `one_thread` is False (the embed process holds that limit
    for its whole life): scikit-learn's OpenMP with 2 threads on 2 busy cores stalls a 20-point run for
    5-15 s here.
    """
    if one_thread:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return tsne(vectors, init, known, params, progress, one_thread=False)
    params = params or TsneParams()
    t0 = time.perf_counter()
    x = np.asarray(vectors, np.float32)  # PCA in float32 is twice as fast; t-SNE gets float64 below
    if x.ndim != 2:
        raise ValueError(f"tsne takes (n, d) vectors, got shape {x.shape}")
    n = len(x)
    if n <= 2:  # t-SNE needs 3 points for a perplexity; these layouts say all there is
        pts = np.array([[0.0, 0.0]]) if n == 1 else np.array([[-1.0, 0.0], [1.0, 0.0]])
        return TsneResult(pts[:n], float("nan"), "trivial", time.perf_counter() - t0)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    # Identical rows (dead filters, all-zero maps) are fine for t-SNE, but an all-constant input has no
    # distances at all; a tiny deterministic jitter keeps the affinity search well defined.
    if float(np.ptp(x, axis=0).max(initial=0.0)) == 0.0:
        x = x + np.random.default_rng(params.seed).normal(0.0, 1e-6, x.shape).astype(np.float32)
    big = n >= PCA_MIN_POINTS
    if big and progress is not None and progress(0.0, "pca", None):
        raise Cancelled
    x = _reduce(x, params).astype(np.float64)
    warm = init is not None and known is not None and bool(np.any(known))
    if warm:
        init = _place_unknown(x, np.asarray(init, np.float64), np.asarray(known, bool), params.seed)
    engine = engine_available(params.engine)
    run = _opentsne if engine == "opentsne" else _sklearn
    if big and progress is not None:
        # The PCA and the neighbour search report no progress of their own: give them a fixed share
        # of the bar, so it moves on at the start of the optimisation.
        inner = progress

        def progress(fraction: float, phase: str, points: np.ndarray | None) -> bool:
            share = 0.05 if phase == "neighbors" else PREP_SHARE
            return inner(share + (1.0 - PREP_SHARE) * fraction if fraction > 0 else share, phase, points)

    points, kl = run(x, init if warm else None, params, progress)
    return TsneResult(np.asarray(points, np.float64), kl, engine, time.perf_counter() - t0)


def _opentsne(x: np.ndarray, init: np.ndarray | None, params: TsneParams, progress: Progress | None):
    from openTSNE import TSNEEmbedding, affinity, initialization
    from openTSNE.tsne import OptimizationInterrupt

    # openTSNE warns about any initial layout wider than 1e-4: a warm start is wide on purpose.
    logging.getLogger("openTSNE").setLevel(logging.ERROR)
    n = len(x)
    if progress is not None and progress(0.0, "neighbors", None):
        raise Cancelled
    aff = affinity.PerplexityBasedNN(
        x,
        perplexity=perplexity_for(n, params.perplexity),
        # Exact kNN (brute force, BLAS) beats Annoy up to tens of thousands of 50-d points (measured at
        # 20,000: 4 s against 12 s); Annoy's approximate index wins beyond.
        method="exact" if n < EXACT_KNN_MAX else "annoy",
        n_jobs=1,
        random_state=params.seed,
    )
    cold = init is None
    if cold:
        init = initialization.pca(x, random_state=params.seed)
    early, main = params.iterations(n)
    phases = [(early, params.exaggeration, 0.5)] if cold else []
    phases.append((main if cold else params.warm_iters, None, 0.8))
    total = sum(p[0] for p in phases)
    emb = TSNEEmbedding(
        init,
        aff,
        learning_rate=max(n / params.exaggeration, 50.0),
        negative_gradient_method="fft" if n >= FFT_MIN_POINTS else "bh",
        n_jobs=1,
        random_state=params.seed,
    )
    done = 0
    for iters, exaggeration, momentum in phases:
        if iters == 0:
            continue
        callbacks = None
        if progress is not None:
            base, phase = done, "exaggeration" if exaggeration else "optimize"

            def callback(it: int, error: float, embedding: np.ndarray, base=base, phase=phase) -> bool:
                return bool(progress((base + it) / total, phase, np.asarray(embedding)))

            callbacks = [callback]
        try:
            emb = emb.optimize(
                n_iter=iters,
                exaggeration=exaggeration,
                momentum=momentum,
                callbacks=callbacks,
                callbacks_every_iters=params.check_every,
                propagate_exception=True,
            )
        except OptimizationInterrupt:
            raise Cancelled from None
        done += iters
    return np.asarray(emb), float(getattr(emb, "kl_divergence", float("nan")))


def _sklearn(x: np.ndarray, init: np.ndarray | None, params: TsneParams, progress: Progress | None):
    from sklearn.manifold import TSNE

    n = len(x)
    if progress is not None and progress(0.0, "optimize", None):
        raise Cancelled
    # scikit-learn has no callbacks (no partial layouts, no cancel mid-run) and always runs its 250
    # exaggerated iterations, warm start or not: max_iter counts them.
    early, main = params.iterations(n)
    model = TSNE(
        n_components=2,
        perplexity=perplexity_for(n, params.perplexity),
        early_exaggeration=params.exaggeration,
        max_iter=max(250, early + (main if init is None else params.warm_iters)),
        init="pca" if init is None else init,
        learning_rate="auto",
        method="barnes_hut",
        random_state=params.seed,
    )
    points = model.fit_transform(x)
    return points, float(model.kl_divergence_)


# -- the child process ------------------------------------------------------------------------------------


class _Superseded(Exception):
    def __init__(self, message: tuple | None) -> None:
        self.message = message  # (what to handle next: a newer job, a quit; its descriptor), or None


def _receive(conn) -> tuple:
    """The next message and, for a TsneJob whose vectors stay in an images job's segment, the segment's
    descriptor that follows it on the pipe (None otherwise)."""
    msg = conn.recv()
    if type(msg) is M.TsneJob and msg.shared_vectors:
        return msg, reduction.recv_handle(conn)
    return msg, None


def embed_main(conn, niceness: int = 0, engine: str = "auto") -> None:
    """The embed process: answer jobs until TsneQuit or until the pipe closes (the render process is gone)."""
    for key, value in ENV_ONE_THREAD.items():
        os.environ[key] = value  # for anything that reads them late; the spawn environment had them already
    from threadpoolctl import threadpool_limits

    engine = engine_available(engine)
    if engine == "opentsne":
        import openTSNE  # noqa: F401  (loaded before the limit so its OpenMP runtime is limited too)
    else:
        import sklearn.manifold  # noqa: F401
    limits = threadpool_limits(1)  # noqa: F841  (held for the life of the process)
    # One tiny run loads the rest of the engine (its first call costs ~0.1 s), so the first real request
    # meets the 100 ms budget of a 20-filter layer.
    tsne(
        np.random.default_rng(0).normal(size=(8, 4)),
        params=TsneParams(engine=engine, iters=10, early_iters=5),
        one_thread=False,
    )
    if niceness:
        # The render loop and the training loop come first on a busy machine; a 20-filter job still takes
        # well under its 100 ms budget at this priority.
        os.nice(niceness)
    try:
        conn.send(M.TsneReady(engine, os.getpid()))
        pending: tuple | None = None
        while True:
            msg, fd = pending if pending is not None else _receive(conn)
            pending = None
            if type(msg) is M.TsneQuit:
                return
            if type(msg) is M.TsneJob:
                pending = _run_job(conn, msg, fd, engine)
            # a cancel for a job no longer running needs nothing
    except (EOFError, OSError, BrokenPipeError, KeyboardInterrupt):
        return  # the render process went away


def _attach_input(msg: M.TsneJob, fd: int | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The job's vectors, warm start and known mask, copied out of its segments (which are closed)."""
    n, d = msg.n, msg.d
    own_d = 0 if msg.shared_vectors else d
    slot = Slot.attach(msg.in_name, input_count(n, own_d))
    vec = None
    try:
        if fd is not None:
            vec = Slot.attach_fd(fd, n * d)
            fd = None  # the slot owns it now
        payload = np.empty(input_count(n, own_d), np.float32)
        got = slot.read_into(payload)
        if got is None or got[0] == 0:
            raise ValueError("the job's warm start was never completely written")
        _, init, known = unpack_input(payload, n, own_d)
        if vec is None:
            return payload[: n * d].reshape(n, d), init, known
        x = np.empty(n * d, np.float32)
        got = vec.read_into(x)
        if got is None or got[0] == 0:
            raise ValueError("the images job's vectors were never completely written")
        return x.reshape(n, d), init, known
    finally:
        slot.close()
        if vec is not None:
            vec.close()
        if fd is not None:
            os.close(fd)


def _run_job(conn, msg: M.TsneJob, fd: int | None, engine: str) -> tuple | None:
    """Run one job; return a (message, descriptor) that superseded it (to handle next), else None."""
    job_id, n = msg.job, msg.n
    try:
        params = TsneParams(**{**msg.params, "engine": engine})
        slot_out = Slot.attach(msg.out_name, 2 * n)
    except (OSError, ValueError, TypeError) as exc:
        if fd is not None:
            os.close(fd)
        conn.send(M.TsneFailed(job_id, f"could not map the job's segments: {exc}"))
        return None
    try:
        try:
            x, init, known = _attach_input(msg, fd)
        except (OSError, ValueError) as exc:
            conn.send(M.TsneFailed(job_id, f"could not read the job's vectors: {exc}"))
            return None
        conn.send(M.TsneAttached(job_id))
        seq = 0
        report = n >= params.progress_min_points

        def progress(fraction: float, phase: str, points: np.ndarray | None) -> bool:
            nonlocal seq
            # A newer job or a cancel stops this one; anything else waits for the main loop.
            if conn.poll(0):
                nxt, nxt_fd = _receive(conn)
                kind = type(nxt)
                if kind in (M.TsneQuit, M.TsneJob) or (kind is M.TsneCancel and nxt.job == job_id):
                    raise _Superseded(None if kind is M.TsneCancel else (nxt, nxt_fd))
            if report:
                if points is not None:
                    seq += 1
                    slot_out.write(seq, points.astype(np.float32))
                conn.send(M.TsneProgress(job_id, float(fraction), phase, seq if points is not None else 0))
            return False

        try:
            result = tsne(x, init, known, params, progress, one_thread=False)
        except _Superseded as stop:
            conn.send(M.TsneCancelled(job_id))
            return stop.message
        except Exception as exc:  # a bad input must not kill the process: say what happened
            conn.send(M.TsneFailed(job_id, f"{type(exc).__name__}: {exc}"))
            return None
        seq += 1
        slot_out.write(seq, result.points.astype(np.float32))
        conn.send(M.TsneDone(job_id, seq, result.seconds, result.kl, result.engine))
        return None
    finally:
        slot_out.close()


__all__ = [
    "ENV_ONE_THREAD",
    "TsneParams",
    "TsneResult",
    "Cancelled",
    "embed_main",
    "engine_available",
    "input_count",
    "perplexity_for",
    "tsne",
]
