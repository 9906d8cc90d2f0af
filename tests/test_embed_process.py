"""t-SNE for the embedding view: the algorithm wrapper (features/embedding/process.py tsne) and the process
behind EmbedHandle (features/embedding/handle.py): perplexity for small n, separated clusters, warm
starts, results through shared memory, one thread in the child, cancel / supersede, partial layouts, and
no /dev/shm segment left after close or after a SIGKILL.

Timing is never asserted (speed is tools/bench_embed.py's job); waits only bound how long a failure takes.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from convscope.engine.proc.shm import list_segments, segment_prefix
from convscope.features.embedding.handle import EmbedConfig, EmbedHandle, normalize
from convscope.features.embedding.process import TsneParams, perplexity_for, tsne


def two_clusters(
    n_each: int = 10, d: int = 75, gap: float = 6.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Filters of two kinds: (2 n_each, d) vectors and their cluster labels."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, (n_each, d))
    b = rng.normal(0.0, 1.0, (n_each, d)) + gap
    return np.concatenate([a, b]).astype(np.float32), np.repeat([0, 1], n_each)


def nearest_centroid_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    centroids = np.stack([points[labels == c].mean(0) for c in np.unique(labels)])
    guess = np.argmin(((points[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    return float((guess == labels).mean())


def mean_displacement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean point movement between two layouts, both normalised (RMS radius 1)."""
    return float(np.linalg.norm(normalize(a) - normalize(b), axis=1).mean())


def our_segments() -> list[str]:
    return list_segments(segment_prefix())


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no Threads line")


# -- the algorithm, in this process ----------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["opentsne", "sklearn"])
@pytest.mark.parametrize("n", [3, 5, 20])
def test_perplexity_adapts_to_small_n(n, engine):
    expected = {3: 2 / 3, 5: 4 / 3, 20: 19 / 3}[n]
    assert perplexity_for(n) == pytest.approx(expected) and perplexity_for(n) < n
    x = np.random.default_rng(n).normal(size=(n, 12))
    result = tsne(x, params=TsneParams(engine=engine))  # scikit-learn raises for perplexity >= n
    assert result.engine == engine
    assert result.points.shape == (n, 2) and np.isfinite(result.points).all()
    spread = np.linalg.norm(result.points - result.points.mean(0), axis=1)
    assert spread.min() > 1e-3, f"points collapsed onto one another: {result.points}"


def test_perplexity_caps_and_trivial_layouts():
    assert perplexity_for(100) == 30.0 and perplexity_for(100, 10.0) == 10.0 and perplexity_for(10, 50) == 3.0
    for n in (1, 2):
        result = tsne(np.ones((n, 4)))
        assert result.points.shape == (n, 2) and result.engine == "trivial"


def test_two_separated_clusters_come_out_separated():
    x, labels = two_clusters()
    result = tsne(x)
    assert result.engine == "opentsne"
    assert nearest_centroid_accuracy(result.points, labels) == 1.0
    # And clearly apart: the gap between the clusters beats the spread inside them.
    p = result.points
    inside = max(np.linalg.norm(p[labels == c] - p[labels == c].mean(0), axis=1).max() for c in (0, 1))
    between = np.linalg.norm(p[labels == 0].mean(0) - p[labels == 1].mean(0))
    assert between > 2 * inside, f"between {between:.2f}, inside {inside:.2f}"


def test_warm_start_with_unchanged_vectors_moves_points_little():
    x = np.random.default_rng(1).normal(size=(20, 75))  # no structure: the layout drifts the most
    first = tsne(x)
    warm = tsne(x, first.points, np.ones(20, bool))
    cold = tsne(x, params=TsneParams(seed=1))
    moved, reshuffled = (
        mean_displacement(first.points, warm.points),
        mean_displacement(first.points, cold.points),
    )
    assert moved < 0.3 and moved < 0.25 * reshuffled, (
        f"warm moved {moved:.3f}, a cold restart {reshuffled:.3f}"
    )
    # A point new to the view starts beside its nearest neighbour in input space.
    x2 = np.concatenate([x, x[4:5] + 0.01])
    known = np.r_[np.ones(20, bool), False]
    init = np.concatenate([first.points, np.zeros((1, 2))])
    grown = tsne(x2, init, known)
    d = np.linalg.norm(grown.points - grown.points[20], axis=1)
    assert int(np.argsort(d)[1]) == 4, "the new point did not land beside its twin"


# -- the process -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def handle():
    """One process for the tests below (starting one costs ~2 s); each test uses views of its own."""
    h = EmbedHandle()
    assert h.start(60.0), h.error
    yield h
    h.close()
    assert our_segments() == [], "a shared-memory segment outlived close()"


def test_round_trip_through_shared_memory_with_one_thread(handle):
    x, labels = two_clusters()
    ids = np.arange(100, 120)
    assert thread_count(handle.pid) == 1, "the t-SNE process must run one thread (OpenMP / BLAS)"
    job = handle.request("coefficients", "conv2", x, ids)
    result = handle.wait(job, 60.0)
    assert result.final and result.job == job and result.engine == "opentsne"
    assert (result.kind, result.layer) == ("coefficients", "conv2")
    np.testing.assert_array_equal(result.ids, ids)
    assert result.points.shape == (20, 2) and result.points.dtype == np.float32
    np.testing.assert_allclose(result.points.mean(0), 0.0, atol=1e-5)
    assert np.sqrt((result.points**2).sum(1).mean()) == pytest.approx(1.0, rel=1e-4)
    assert nearest_centroid_accuracy(result.points, labels) == 1.0
    assert our_segments() == [], "segments must be unlinked once the process has attached them"
    assert thread_count(handle.pid) == 1
    # A refresh with the same vectors starts from this layout (ids in another order) and moves little.
    order = np.random.default_rng(0).permutation(20)
    again = handle.wait(handle.request("coefficients", "conv2", x[order], ids[order]), 60.0)
    np.testing.assert_array_equal(again.ids, ids[order])
    assert mean_displacement(result.points[order], again.points) < 0.1
    ids_b, pts_b = handle.layout("coefficients", "conv2")
    np.testing.assert_array_equal(ids_b, ids[order])
    assert handle.layout("activations", "conv2") is None


def test_an_images_jobs_vectors_are_read_from_their_segment_not_copied_here(handle):
    """SharedVectors: the t-SNE process maps the images job's segment from a descriptor handed over the
    pipe (its name already unlinked) and lays out exactly what a copy of the same vectors gives."""
    from convscope.engine.proc.shm import Slot
    from convscope.features.embedding.images_job import SharedVectors

    x, labels = two_clusters(seed=4)
    slot = Slot.create(x.size)
    try:
        slot.write(7, x)  # as the worker closes an images job's write: seq = the job id
        slot.unlink()  # as at ImgAttached: only the mappings are left
        shared = SharedVectors(slot, *x.shape, seq=7)
        np.testing.assert_array_equal(shared.array(), x)
        a = handle.wait(handle.request("images", "fc1", shared, warm=False), 60.0)
        b = handle.wait(handle.request("images", "fc1", x, warm=False), 60.0)
        np.testing.assert_array_equal(a.points, b.points)
        assert nearest_centroid_accuracy(a.points, labels) == 1.0
        assert our_segments() == []
    finally:
        slot.close()


def test_new_view_cancels_a_running_job_and_partial_layouts_arrive(handle):
    rng = np.random.default_rng(2)
    long = TsneParams(iters=1_000_000, progress_min_points=1, check_every=5)  # runs until cancelled
    done_before = handle.jobs_done
    handle.request("activations", "conv1", rng.normal(size=(200, 16)), params=long)
    deadline = time.monotonic() + 60
    partial = None
    while partial is None and time.monotonic() < deadline:
        got = handle.poll()
        if got is not None and not got.final:
            partial = got
        time.sleep(0.01)
    assert partial is not None, "no partial layout from a running job"
    assert partial.points.shape == (200, 2) and 0 < partial.fraction < 1
    p = handle.progress
    assert (
        p is not None and p.kind == "activations" and p.n == 200 and p.phase in ("exaggeration", "optimize")
    )
    x, labels = two_clusters(seed=3)
    job = handle.request("coefficients", "conv1", x)  # another view: the long job must not block it
    result = handle.wait(job, 60.0)
    assert result.kind == "coefficients" and nearest_centroid_accuracy(result.points, labels) == 1.0
    assert handle.jobs_done == done_before + 1 and not handle.busy and handle.progress is None
    assert handle.layout("activations", "conv1") is None, "a cancelled job left a layout"


def running(handle: EmbedHandle, timeout: float = 60.0) -> bool:
    """Poll until the current view's job reports progress (it is attached and iterating)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        handle.poll()
        if handle.progress is not None and handle.progress.fraction > 0:
            return True
        time.sleep(0.01)
    return False


def test_sigkill_leaves_no_segment_and_the_handle_restarts(handle):
    long = TsneParams(iters=1_000_000, progress_min_points=1, check_every=5)
    restarts = handle.restarts
    handle.request("activations", "conv4", np.random.default_rng(4).normal(size=(300, 8)), params=long)
    assert running(handle), "the job never started"
    assert our_segments() == []
    old = handle.pid
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while handle.restarts == restarts and time.monotonic() < deadline:
        handle.poll()
        time.sleep(0.01)
    assert handle.restarts == restarts + 1 and handle.pid != old and "died" in (handle.error or "")
    # The job it died on is sent again (once): its new segments live until the new process attaches.
    assert running(handle), "the job was not resumed after the restart"
    assert our_segments() == [], "a SIGKILLed job left a segment"
    x, labels = two_clusters(seed=5)
    result = handle.wait(handle.request("coefficients", "conv3", x), 60.0)
    assert nearest_centroid_accuracy(result.points, labels) == 1.0
    # Killed while idle, then a request: the job goes to a dead process; the restart sends it again.
    os.kill(handle.pid, signal.SIGKILL)
    time.sleep(0.2)
    result = handle.wait(handle.request("coefficients", "conv3", x), 60.0)
    assert handle.restarts == restarts + 2 and result.points.shape == (20, 2)
    assert our_segments() == []


def test_config_reaches_the_process():
    with EmbedHandle(EmbedConfig(engine="sklearn", niceness=0)) as h:
        assert h.start(60.0), h.error
        assert h.engine == "sklearn"
        x, labels = two_clusters(seed=6)
        result = h.wait(h.request("coefficients", "conv1", x), 60.0)
        assert result.engine == "sklearn" and nearest_centroid_accuracy(result.points, labels) == 1.0
    assert our_segments() == []


def test_big_inputs_are_copied_by_a_thread_and_dropped_if_superseded(handle, monkeypatch):
    import convscope.features.embedding.handle as H

    monkeypatch.setattr(H, "BACKGROUND_COPY_BYTES", 0)  # every input takes the thread path
    x, labels = two_clusters(seed=7)
    result = handle.wait(handle.request("coefficients", "conv5", x), 60.0)
    assert nearest_centroid_accuracy(result.points, labels) == 1.0
    done = handle.jobs_done
    # Superseded while its copy is pending (the copy is only sent from poll()): never sent at all.
    handle.request("activations", "conv5", x)
    job = handle.request("coefficients", "conv6", x)
    result = handle.wait(job, 60.0)
    assert (result.kind, result.layer) == ("coefficients", "conv6") and handle.jobs_done == done + 1
    assert handle.layout("activations", "conv5") is None
    assert our_segments() == []
