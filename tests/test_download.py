"""Data-set downloads (features/data/download.py, features/data/datasets.py) against a local http.server, and
the training scene's progress bar while its worker loads the data.

Everything is served from 127.0.0.1 by a server in a thread: no internet, no /work/shared.  The downloader
reports progress that only grows and ends at the file's size; a wrong checksum, a 404, a refused
connection, a stalled server, a cut connection and a cancel each fail with the URL and the reason, leaving
neither the file nor its `.part`; a list of mirrors falls through to the one that works.  load_mnist reads
the IDX files the downloader placed (small ones built here, their md5 sums injected through the documented
seam `datasets.mnist_sources`); with torchvision's real md5 sums, wrong bytes fall back to the built-in
digits with a note naming the checksum failure; a CIFAR-10 archive that does not unpack leaves no half
folder.  The scene renders its progress bar in the Training panel (PNGs in pytest's tmp_path).
Run: python -m pytest tests/test_download.py -q
"""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from convscope.features.data import datasets
from convscope.features.data.download import DownloadError, download_file, download_first, part_path


# -- a local server -----------------------------------------------------------------------------------------
class Server:
    """Serves `files` (path -> bytes) on 127.0.0.1; paths in `no_length` go without Content-Length, in `cut`
    claim twice their size and close early, in `stall` send headers and then nothing until teardown."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.no_length: set[str] = set()
        self.cut: set[str] = set()
        self.stall: set[str] = set()
        self.requests: list[str] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                if self.path in server.stall:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.flush()
                    server.release.wait(30)
                    return
                if self.path in server.cut:
                    self.send_header("Content-Length", str(2 * len(body)))
                elif self.path not in server.no_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass  # keep pytest's output clean

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def blob(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def no_leftovers(dest: Path) -> None:
    assert not dest.exists(), f"{dest} exists after a failed download"
    assert not part_path(dest).exists(), f"{part_path(dest)} left behind"


# -- the downloader -----------------------------------------------------------------------------------------
def test_progress_only_grows_and_ends_at_the_size(server, tmp_path):
    data = blob(700_000, seed=1)  # ~11 chunks
    server.files["/a.bin"] = data
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "sub" / "a.bin"
    out = download_file(f"{server.url}/a.bin", dest, md5(data), lambda d, t: seen.append((d, t)), interval=0)
    assert out == dest and dest.read_bytes() == data and not part_path(dest).exists()
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[0] == 0 and len(seen) > 3, seen
    assert seen[-1] == (len(data), len(data)) and {t for _, t in seen} == {len(data)}


def test_unknown_size_reports_none_and_still_ends_at_the_size(server, tmp_path):
    data = blob(200_000, seed=2)
    server.files["/nolen.bin"] = data
    server.no_length.add("/nolen.bin")
    seen: list[tuple[int, int | None]] = []
    download_file(f"{server.url}/nolen.bin", tmp_path / "n", md5(data), lambda d, t: seen.append((d, t)))
    assert {t for _, t in seen} == {None} and seen[-1][0] == len(data)
    assert (tmp_path / "n").read_bytes() == data


def test_wrong_checksum_fails_clearly_and_leaves_nothing(server, tmp_path):
    data = blob(100_000, seed=3)
    server.files["/b.bin"] = data
    dest = tmp_path / "b.bin"
    with pytest.raises(DownloadError) as err:
        download_file(f"{server.url}/b.bin", dest, "0" * 32)
    text = str(err.value)
    assert "checksum mismatch" in text and f"{server.url}/b.bin" in text and md5(data) in text, text
    no_leftovers(dest)


def test_closed_port_fails_fast_with_a_clear_message(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "c.bin"
    with pytest.raises(DownloadError) as err:
        download_file(f"http://127.0.0.1:{port}/c.bin", dest, None, timeout=5.0)
    assert "connection refused" in str(err.value) and f"127.0.0.1:{port}/c.bin" in str(err.value)
    no_leftovers(dest)


def test_unknown_host_says_offline(tmp_path):
    dest = tmp_path / "d.bin"
    with pytest.raises(DownloadError) as err:  # .invalid never resolves (RFC 2606)
        download_file("http://no-such-host.invalid/d.bin", dest, None, timeout=5.0)
    assert "cannot resolve the host (offline?" in str(err.value), str(err.value)
    no_leftovers(dest)


def test_http_404_cut_connection_and_stall_leave_nothing(server, tmp_path):
    dest = tmp_path / "e.bin"
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{server.url}/missing.bin", dest)
    no_leftovers(dest)
    server.files["/cut.bin"] = blob(300_000, seed=4)
    server.cut.add("/cut.bin")
    with pytest.raises(DownloadError, match="incomplete"):
        download_file(f"{server.url}/cut.bin", dest)
    no_leftovers(dest)
    server.files["/stall.bin"] = blob(1000, seed=5)
    server.stall.add("/stall.bin")
    with pytest.raises(DownloadError, match="timed out"):
        download_file(f"{server.url}/stall.bin", dest, timeout=0.5)
    no_leftovers(dest)


def test_cancel_stops_and_leaves_nothing(server, tmp_path):
    server.files["/big.bin"] = blob(1_000_000, seed=6)
    seen: list[int] = []
    dest = tmp_path / "big.bin"
    with pytest.raises(DownloadError, match="cancelled"):
        download_file(
            f"{server.url}/big.bin", dest, None, lambda d, t: seen.append(d), cancel=lambda: bool(seen)
        )
    no_leftovers(dest)


def test_mirrors_fall_back_to_the_second_when_the_first_404s(server, tmp_path):
    data = blob(50_000, seed=7)
    server.files["/m2/f.gz"] = data
    dest = tmp_path / "f.gz"
    before = len(server.requests)
    download_first([f"{server.url}/m1/f.gz", f"{server.url}/m2/f.gz"], dest, md5(data))
    assert dest.read_bytes() == data
    assert server.requests[before:] == ["/m1/f.gz", "/m2/f.gz"]
    # Both failing: the message names each URL and its reason.
    with pytest.raises(DownloadError) as err:
        download_first([f"{server.url}/m1/g.gz", f"{server.url}/m3/g.gz"], tmp_path / "g.gz")
    text = str(err.value)
    assert text.count("HTTP 404") == 2 and "/m1/g.gz" in text and "/m3/g.gz" in text, text


# -- data sets over the downloader --------------------------------------------------------------------------
def idx_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return b"".join(int(v).to_bytes(4, "big") for v in (2051, n, h, w)) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return (2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()


def test_load_mnist_reads_the_files_the_downloader_placed(server, tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 20),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 10),
    }
    sources = []
    for name, arr in parts.items():
        body = gzip.compress(idx_images(arr) if arr.ndim == 3 else idx_labels(arr), mtime=0)
        server.files[f"/mnist/{name}.gz"] = body
        sources.append((f"{name}.gz", md5(body)))

    # The documented seam: small files with their own md5 sums instead of torchvision's.
    def small_sources(mirror):
        return [(n, m, [f"{mirror.rstrip('/')}/{n}"]) for n, m in sources]

    monkeypatch.setattr(datasets, "mnist_sources", small_sources)
    seen: list[tuple] = []
    ds = datasets.load_mnist(tmp_path, progress=lambda *a: seen.append(a), mirror=f"{server.url}/mnist/")
    assert ds.x_train.shape == (20, 1, 32, 32) and ds.x_val.shape == (10, 1, 32, 32)
    x = parts["train-images-idx3-ubyte"]
    assert np.array_equal(ds.x_train[:, 0, 2:30, 2:30].numpy(), x) and int(ds.x_train[:, :, :2].sum()) == 0
    assert np.array_equal(ds.y_val.numpy(), parts["t10k-labels-idx1-ubyte"])
    whats = list(dict.fromkeys(w for w, _, _ in seen))
    assert whats == [f"Downloading MNIST (file {i} of 4)" for i in range(1, 5)] + ["Loading MNIST"], whats
    raw = tmp_path / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(n for n, _ in sources), "no .part files"


def test_wrong_bytes_fall_back_to_the_digits_with_a_checksum_note(server, tmp_path):
    """torchvision's own md5 sums (no seam): a mirror serving other bytes is refused."""
    from torchvision.datasets import MNIST

    for name, _ in MNIST.resources:
        server.files[f"/bad/{name}"] = blob(5000, seed=9)
    seen: list[tuple] = []
    ds = datasets.make_dataset(
        "mnist", tmp_path, progress=lambda *a: seen.append(a), mirror=f"{server.url}/bad"
    )
    assert ds.name == "digits" and ds.channels == 1
    assert "checksum mismatch" in ds.note and f"{server.url}/bad/train-images-idx3-ubyte.gz" in ds.note, (
        ds.note
    )
    assert "built-in digits" in ds.note
    assert seen and seen[0][0] == "Downloading MNIST (file 1 of 4)" and seen[-1][1:] == (5000, 5000), seen
    raw = tmp_path / "MNIST" / "raw"
    assert not raw.exists() or list(raw.iterdir()) == [], "a refused file was kept"


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_cifar_archive_is_fetched_unpacked_whole_and_checked(server, tmp_path, monkeypatch):
    # An archive of the right shape but wrong batches: it unpacks, torchvision's batch md5s refuse it.
    good_tar = tar_gz({"cifar-10-batches-py/data_batch_1": blob(3000, seed=10)})
    monkeypatch.setattr(
        datasets,
        "cifar10_source",
        lambda mirror: ("cifar-10-python.tar.gz", md5(good_tar), [f"{mirror}/c/x"]),
    )
    server.files["/c/x"] = good_tar
    seen: list[tuple] = []
    with pytest.raises(datasets.DatasetUnavailable, match="corrupt or incomplete"):
        datasets.load_cifar10(tmp_path, progress=lambda *a: seen.append(a), mirror=server.url)
    whats = list(dict.fromkeys(w for w, _, _ in seen))
    assert whats == ["Downloading CIFAR-10", "Extracting CIFAR-10", "Loading CIFAR-10"], whats
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_1").is_file()
    assert not list(tmp_path.glob(".cifar10-unpack-*")) and not list(tmp_path.glob("*.part"))

    # Bytes that match their md5 but are no archive: no half folder appears.
    other = tmp_path / "other"
    junk = blob(4000, seed=11)
    server.files["/c/junk"] = junk
    monkeypatch.setattr(
        datasets, "cifar10_source", lambda mirror: ("cifar-10-python.tar.gz", md5(junk), [f"{mirror}/c/junk"])
    )
    with pytest.raises(datasets.DatasetUnavailable, match="could not unpack"):
        datasets.load_cifar10(other, mirror=server.url)
    assert not (other / "cifar-10-batches-py").exists() and not list(other.glob(".cifar10-unpack-*"))


def test_progress_label_reads_like_the_panel_says_it():
    from convscope.scenes.train.state import progress_label

    text, frac = progress_label(("Downloading CIFAR-10", 45_200_000, 170_500_000))
    assert text == "Downloading CIFAR-10: 45.2 of 170.5 MB" and frac == pytest.approx(45.2 / 170.5)
    assert progress_label(("Downloading CIFAR-10", 12_300_000, None)) == (
        "Downloading CIFAR-10: 12.3 MB",
        None,
    )
    assert progress_label(("Downloading MNIST (file 2 of 4)", 14_000, 28_881))[0].endswith("14.0 of 28.9 kB")
    assert progress_label(("Extracting CIFAR-10", None, None)) == ("Extracting CIFAR-10 ...", None)


# -- the scene shows the progress ---------------------------------------------------------------------------
@pytest.mark.gl
def test_train_scene_draws_the_download_progress_bar(tmp_path):
    from convscope.engine.app import App
    from convscope.features.training.handle import TrainHandle
    from convscope.scenes.train.scene import TrainScene
    from convscope.scenes.train.state import TrainConfig
    from gl_helpers import gl_context
    from PIL import Image

    class Loading(TrainHandle):
        """A handle whose worker is still downloading: no process, progress set by the test."""

        def launch(self) -> None:
            pass

    handle = Loading("cifar10")
    scene = TrainScene(TrainConfig(), handle=handle)
    app = App(scene, ctx=gl_context(), size=(1280, 720))
    try:

        def shot(progress, name: str) -> np.ndarray:
            handle.progress = progress
            for _ in range(3):  # the panel sizes itself over the first frames
                app.frame()
            img = app.read_pixels()
            Image.fromarray(img).save(tmp_path / f"{name}.png")
            return img

        def bar_fill(img: np.ndarray) -> np.ndarray:
            """Pixels of imgui's progress-bar fill (its default amber) in the left column."""
            left = img[:, :360].astype(int)
            r, g, b = left[..., 0], left[..., 1], left[..., 2]
            return (r > 200) & (g > 140) & (g < 200) & (b < 60)

        none = shot(None, "no_progress")
        quarter = shot(("Downloading CIFAR-10", 45_200_000, 170_500_000), "progress_26")
        assert scene.state.progress == ("Downloading CIFAR-10", 45_200_000, 170_500_000)
        most = shot(("Downloading CIFAR-10", 150_000_000, 170_500_000), "progress_88")
        shot(("Extracting CIFAR-10", None, None), "extracting")  # a moving bar: looked at, not measured
        assert bar_fill(none).sum() == 0, "amber in the panel without a download"
        fq, fm = bar_fill(quarter), bar_fill(most)
        assert fq.sum() > 100, "no progress bar drawn"
        wq, wm = np.flatnonzero(fq.any(axis=0)), np.flatnonzero(fm.any(axis=0))
        # The fill starts at the same place and reaches 88/26.5 times as far.
        assert wq[0] == wm[0]
        ratio = (wm[-1] - wm[0] + 1) / (wq[-1] - wq[0] + 1)
        assert 2.9 < ratio < 3.8, ratio
    finally:
        app.close()


def test_an_mnist_file_cut_short_is_fetched_again(server, tmp_path, monkeypatch):
    """A .gz left truncated by an earlier copy or downloader: its md5 is wrong, so it is downloaded again and
    replaced whole; without download the error says that deleting it fetches it again."""
    rng = np.random.default_rng(9)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 12),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 6),
    }
    sources, bodies = [], {}
    for name, arr in parts.items():
        body = gzip.compress(idx_images(arr) if arr.ndim == 3 else idx_labels(arr), mtime=0)
        server.files[f"/cut/{name}.gz"] = bodies[name] = body
        sources.append((f"{name}.gz", md5(body)))
    monkeypatch.setattr(
        datasets, "mnist_sources", lambda mirror: [(n, m, [f"{mirror}{n}"]) for n, m in sources]
    )
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, body in bodies.items():
        (raw / f"{name}.gz").write_bytes(body)
    cut = raw / "train-images-idx3-ubyte.gz"
    cut.write_bytes(bodies["train-images-idx3-ubyte"][:100])
    with pytest.raises(datasets.DatasetUnavailable, match="delete it and it is downloaded again"):
        datasets.load_mnist(tmp_path, download=False)
    server.requests.clear()
    ds = datasets.load_mnist(tmp_path, mirror=f"{server.url}/cut/")
    assert server.requests == ["/cut/train-images-idx3-ubyte.gz"], server.requests
    assert cut.read_bytes() == bodies["train-images-idx3-ubyte"]
    assert np.array_equal(ds.x_train[:, 0, 2:30, 2:30].numpy(), parts["train-images-idx3-ubyte"])
    assert not list(raw.glob("*.part"))
