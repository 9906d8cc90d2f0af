"""The training worker seen from the render side (features/training/handle.py + process.py).

One worker on the built-in digits, started paused so every step is the test's: a snapshot's activations
equal a torch forward pass of the monitored image with the worker's current weights (read back from a
checkpoint it saved) and with a Trainer run here from the same seed; a hyperparameter change shows up in
the optimizer's own param group at the next step, not before; adding a filter grows the spec by exactly
that filter's nodes; a diverging learning rate pauses with a message and leaves finite weights; a bad or
mismatched checkpoint is refused and changes nothing; refused surgery is a message, not a crash; the
render side never imports torch.  Never reads /work/shared.
Run: python -m pytest tests/test_train_worker.py -q
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from convscope.engine.graph.layout import build_layout
from convscope.engine.proc.shm import list_segments, segment_prefix
from convscope.features.data.datasets import builtin_digits, to_input
from convscope.features.training.handle import TrainHandle
from convscope.features.training.trainer import Hyper, Trainer, TrainerConfig
from convscope.models.checkpoint import load_checkpoint, save_checkpoint
from convscope.models.revacnn import Arch, RevaCNN

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 120.0  # torch import + data in a fresh process, on 2 shared cores
HYPER = {"lr": 0.02, "momentum": 0.9, "batch_size": 8, "weight_decay": 1e-4, "optimizer": "sgd", "seed": 3}
VAL_EVERY = 10_000  # no validation pass in the middle of a test's steps


@pytest.fixture(scope="module")
def data():
    return builtin_digits(channels=1)  # what the worker trains on for "digits": one grey channel


@pytest.fixture(scope="module")
def handle():
    h = TrainHandle("digits", hyper=HYPER, val_every=VAL_EVERY, start_paused=True)
    assert h.start(START_TIMEOUT), h.error
    yield h
    h.close()
    assert list_segments(segment_prefix()) == [], "snapshot segments left in /dev/shm"


def run(h: TrainHandle, cmd_id: int) -> str:
    ok, text = h.wait_reply(cmd_id)
    assert ok, text
    return text


def after(h: TrainHandle, cmd_id: int):
    """The first snapshot published after command `cmd_id` was handled (and for the current spec)."""
    h.wait_reply(cmd_id)
    return h.wait_snapshot(lambda s: s.stats["cmd"] >= cmd_id and s.spec_version == h.spec_version)


def layer_acts(h: TrainHandle, snap) -> dict[str, np.ndarray]:
    return {x.name: snap.activations[x.start : x.stop].reshape(x.shape) for x in h.spec.layers}


def test_snapshot_equals_a_direct_forward_pass(handle, data, tmp_path):
    h = handle
    for _ in range(4):
        last = h.step()
    snap = after(h, h.set_monitor_index(5))
    assert snap.step == 4 and snap.paused and int(snap.stats["monitor_index"]) == 5
    assert h.spec.total_nodes == 29_514  # one grey input channel: 1x32x32, then 16-20-20
    got = layer_acts(h, snap)

    # Reference 1: the worker's own weights, saved by it and loaded here.
    path = tmp_path / "now.json"
    snap2 = after(h, h.save(path))
    assert snap2.step == snap.step, "paused: nothing may have trained in between"
    ck = load_checkpoint(path)
    model = ck.build_model()
    x = to_input(data.x_val[5:6])
    with torch.no_grad():
        ref = {k: v[0].numpy() for k, v in model.forward_all(x).items()}
    for name, want in ref.items():
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(snap.first_filters, model.convs[0].weight.detach().numpy())
    for i, conv in enumerate(model.convs, start=1):  # the paths' weights: kernels summed per input channel
        want = conv.weight.detach().sum(dim=(2, 3)).numpy()
        np.testing.assert_allclose(snap.pair_weights[f"conv{i}"], want, rtol=1e-6, atol=1e-7)
    for name, sums in snap.filter_sums.items():
        np.testing.assert_allclose(sums, want_sums := ref[name].reshape(len(sums), -1).sum(1), rtol=1e-5)
        assert want_sums.shape == sums.shape
    jit = np.concatenate([ck.extra[f"jitter/{i}"].numpy() for i in range(3)])
    np.testing.assert_allclose(snap.jitter, jit, rtol=1e-6)

    # Reference 2: a Trainer run here from the same seed and the same four steps.
    tr = Trainer(data, Hyper(**HYPER), TrainerConfig(val_every=VAL_EVERY))
    for _ in range(4):
        tr.step()
    mon = tr.monitor(data.x_val[5])
    for name, want in mon["activations"].items():
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-5, err_msg=f"trainer {name}")
    assert h.replies[last][0]
    # The history rows carry every step's loss.
    assert list(snap.history[:, 0]) == [1, 2, 3, 4]


def test_hyperparameter_change_reaches_the_optimizer_at_the_next_step(handle):
    h = handle
    before = after(h, h.set_hyper(lr=0.05, momentum=0.5, weight_decay=1e-3, batch_size=16))
    # Validated and queued, not applied: the optimizer still has the old values.
    assert before.stats["opt_lr"] == pytest.approx(HYPER["lr"])
    assert before.stats["batch_size"] == HYPER["batch_size"]
    snap = after(h, h.step())
    assert snap.step == before.step + 1
    assert snap.stats["opt_lr"] == pytest.approx(0.05)
    assert snap.stats["opt_momentum"] == pytest.approx(0.5)
    assert snap.stats["opt_weight_decay"] == pytest.approx(1e-3)
    assert snap.stats["batch_size"] == 16
    # An optimizer switch, and a bad value refused with the reason.
    ok, text = h.wait_reply(h.set_hyper(lr=-1.0))
    assert not ok and "lr" in text
    h.set_hyper(optimizer="adam", lr=1e-3)
    snap = after(h, h.step())
    assert snap.stats["optimizer"] == 1 and snap.stats["opt_lr"] == pytest.approx(1e-3)
    run(h, h.set_hyper(**HYPER))


def test_add_filter_grows_the_spec_by_that_filters_nodes(handle):
    h = handle
    n0, v0 = h.spec.total_nodes, h.spec_version
    text = run(h, h.add_filter(1))
    assert "conv2" in text
    snap = h.wait_snapshot(lambda s: h.spec_version > v0 and s.spec_version == h.spec_version)
    conv2, pool2 = h.spec.layer("conv2"), h.spec.layer("pool2")
    assert conv2.shape == (21, 16, 16) and pool2.shape == (21, 8, 8)
    assert h.spec.total_nodes == n0 + 16 * 16 + 8 * 8
    assert snap.activations.shape == (h.spec.total_nodes,)
    assert len(snap.filter_sums["conv2"]) == 21 and len(snap.jitter) == 16 + 21 + 20
    layout = build_layout(h.spec)
    assert layout.positions.shape == (n0 + 320, 3)
    # The new filter's outgoing weights are zero: the output did not move.
    out = h.spec.layers[-1]
    logits = snap.activations[out.start : out.stop]
    assert np.all(np.isfinite(logits))
    run(h, h.remove_filter(1, 20))
    h.wait_snapshot(lambda s: s.spec_version == h.spec_version and s.activations.shape == (n0,))
    assert h.spec.total_nodes == n0


def test_diverging_learning_rate_pauses_with_a_message(handle):
    h = handle
    run(h, h.set_hyper(lr=10.0, momentum=0.9, optimizer="sgd"))
    step0 = h.last.step
    run(h, h.resume())
    snap = h.wait_snapshot(lambda s: s.paused and s.stats["cmd"] >= h._cmd and s.step >= step0, timeout=60)
    assert h.alive
    assert "paused" in h.message and ("loss" in h.message or "NaN" in h.message), h.message
    assert np.all(np.isfinite(snap.activations)), "the last good weights were restored"
    run(h, h.set_hyper(**HYPER))
    snap = after(h, h.step())
    assert snap.stats["ok"] == 1 and np.isfinite(snap.stats["loss"])


def test_bad_checkpoints_are_refused_and_change_nothing(handle, tmp_path):
    h = handle
    before = after(h, h.pause())
    version = h.spec_version

    ok, text = h.wait_reply(h.load(tmp_path / "missing.json"))
    assert not ok and "not found" in text

    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{ this is not json")
    ok, text = h.wait_reply(h.load(corrupt))
    assert not ok and "corrupt.json" in text

    rgb = RevaCNN(Arch(in_channels=3), generator=torch.Generator().manual_seed(0))  # CIFAR-shaped
    other = save_checkpoint(tmp_path / "rgb.json", rgb, torch.optim.SGD(rgb.parameters(), lr=0.1))
    ok, text = h.wait_reply(h.load(other))
    assert not ok and "3x32x32" in text

    snap = after(h, h.set_monitor_index(int(before.stats["monitor_index"])))
    assert h.spec_version == version and snap.step == before.step
    np.testing.assert_array_equal(snap.activations, before.activations)


def test_refused_surgery_is_a_message_and_training_goes_on(handle):
    h = handle
    run(h, h.remove_layer(2))
    run(h, h.remove_layer(1))
    ok, text = h.wait_reply(h.remove_layer(0))
    assert not ok and "only conv layer left" in text
    ok, text = h.wait_reply(h.add_filter(7))
    assert not ok
    snap = after(h, h.step())
    assert [x.shape[0] for x in h.spec.layers if x.kind == "conv"] == [16]
    assert snap.activations.shape == (h.spec.total_nodes,) and snap.stats["ok"] == 1


def test_snapshots_keep_within_their_share_of_the_worker_time():
    """snapshot_budget caps the worker's time spent writing snapshots (its own clock and tally): at 0.005,
    where publish_hz alone (30 a second of ~0.5-1 ms here) would spend 1.5-3 %.  Training goes on."""
    import time

    budget = 0.005
    h = TrainHandle("digits", hyper=HYPER, val_every=VAL_EVERY, publish_hz=30.0, snapshot_budget=budget)
    try:
        assert h.start(START_TIMEOUT), h.error
        h.wait_snapshot(lambda s: not s.paused and s.step > 0)
        time.sleep(1.0)  # past the first, cold publishes
        first = h.wait_snapshot()
        last, end = first, time.monotonic() + 4.0
        while time.monotonic() < end:  # read like a render loop at 60 Hz (each read allows the next)
            snap = h.poll()
            last = snap if snap is not None else last
            time.sleep(1 / 60)
        seconds = last.stats["clock"] - first.stats["clock"]
        share = (last.stats["publish_seconds"] - first.stats["publish_seconds"]) / seconds
        published = last.stats["publishes"] - first.stats["publishes"]
        assert last.step > first.step and published >= 2, "training and snapshots must go on"
        assert share <= 1.5 * budget, f"snapshots took {100 * share:.2f} % of {seconds:.1f} s ({published})"
    finally:
        h.close()


def test_render_side_never_imports_torch():
    code = textwrap.dedent(
        """
        import sys
        from convscope.features.training.handle import TrainHandle
        import convscope.scenes.train.scene, convscope.scenes.train.run
        TrainHandle("digits")
        assert "torch" not in sys.modules, "the render side imported torch"
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_download_progress_reaches_the_handle_then_falls_back_with_a_checksum_note(tmp_path):
    """MNIST from an empty data_dir through a mirror on 127.0.0.1 that serves the wrong bytes: the worker's
    PROGRESS messages arrive, torchvision's md5 refuses the file, and it trains on the built-in digits with
    a note that says so.  No internet: the mirror replaces torchvision's URLs."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from torchvision.datasets import MNIST

    served = tmp_path / "mirror"
    served.mkdir()
    rng = np.random.default_rng(12)
    for name, _ in MNIST.resources:
        (served / name).write_bytes(rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    mirror = f"http://127.0.0.1:{httpd.server_address[1]}/"
    data_dir = tmp_path / "data"
    h = TrainHandle(
        "mnist", data_dir, hyper=HYPER, val_every=VAL_EVERY, start_paused=True, data_mirror=mirror
    )
    try:
        assert h.start(START_TIMEOUT), h.error
        log = list(h.progress_log)
        first = "Downloading MNIST (file 1 of 4)"
        assert (first, 0, 20_000) in log and (first, 20_000, 20_000) in log, log
        assert h.progress is None, "the data is loaded: no progress left to show"
        info = h.info
        assert info["dataset"] == "digits" and info["n_train"] > 1000
        assert "checksum mismatch" in info["note"] and f"{mirror}train-images-idx3-ubyte.gz" in info["note"]
        assert h.spec.layers[0].shape == (1, 32, 32), "MNIST's one channel, kept for the stand-in"
        assert not list(data_dir.rglob("*.part")) and not list(data_dir.rglob("*.gz")), (
            "a refused file was kept"
        )
    finally:
        h.close()
        httpd.shutdown()
        httpd.server_close()


def test_closing_during_a_download_leaves_no_partial_file(tmp_path):
    """The render side closes while the worker is mid-download (a server that sent half the file and then
    waits): the worker's SIGTERM unwinds the downloader, which deletes its .part; nothing half is left."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    size = 400_000
    release = threading.Event()

    class HalfThenWait(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(bytes(size // 2))
            self.wfile.flush()
            release.wait(60)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), HalfThenWait)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    data_dir = tmp_path / "data"
    part = data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz.part"
    h = TrainHandle("mnist", data_dir, data_mirror=f"http://127.0.0.1:{httpd.server_address[1]}")
    try:
        h.launch()
        deadline = time.monotonic() + START_TIMEOUT
        while not (part.is_file() and part.stat().st_size > 0 and h.progress is not None):
            assert time.monotonic() < deadline and h.alive, f"no partial download appeared ({h.error})"
            h.poll()
            time.sleep(0.05)
        assert h.progress is not None and h.progress[0] == "Downloading MNIST (file 1 of 4)"
        h.close()
        assert not part.exists() and not (part.parent / "train-images-idx3-ubyte.gz").exists()
    finally:
        h.close()
        release.set()
        httpd.shutdown()
        httpd.server_close()
