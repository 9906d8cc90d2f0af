"""Hostile inputs and failing disks: every case ends in one `convscope: error:` line and exit status 2,
leaves no half-written file, and keeps an earlier file whole.

Read-only and full file systems are real: a small tmpfs mounted in a private mount namespace
(`unshare -rm`), where the command runs; where that is not allowed here the case is skipped, and the
same write is also failed by patching (`os.fsync` raising ENOSPC), which always runs.  Outputs:
screenshots (explorer, training scene, kiosk), activation dumps, the soak report, checkpoints.
Settings: worker_timeout, soak minutes, weights and data_dir in a config file.  Files that are not
files: FIFOs as checkpoints, configs and inputs.  Huge weights: cyan nodes, a message, a warning.
Run: python -m pytest tests/test_reliability.py -q
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from convscope.engine.files import OutputError, StagedOutput, atomic_write, check_output, read_regular
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SMALL = ("--width", "480", "--height", "320")


def convscope(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convscope.scenes.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def one_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The run failed with exit 2 and exactly one `convscope: error:` line holding `words`."""
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert len(lines) == 1, f"expected one error line, got:\n{proc.stderr}"
    assert lines[0].startswith("convscope: error:"), lines[0]
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    return lines[0]


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True
    )
    return probe.returncode == 0


UNSHARE = _can_unshare()
needs_unshare = pytest.mark.skipif(not UNSHARE, reason="no private mount namespace (unshare -rm) here")


def in_tmpfs(
    mnt: Path, command: list[str], size: str = "16k", prep: str = "", readonly: bool = False, timeout=180
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `command` with a fresh tmpfs of `size` mounted on `mnt` (after the shell `prep`, then remounted
    read-only if asked); returns the run and the names left in the tmpfs afterwards."""
    mnt.mkdir(exist_ok=True)
    remount = 'mount -o remount,ro "$M" || exit 98;' if readonly else ""
    script = (
        f'M="$1"; shift; mount -t tmpfs -o size={size} tmpfs "$M" || exit 99; {prep or ":"}; {remount} '
        '"$@"; rc=$?; echo "@@LS"; ls -A "$M"; exit $rc'
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", str(mnt), *command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out, _, listing = proc.stdout.partition("@@LS\n")
    proc.stdout = out
    return proc, listing.split()


def _dd_fill(mnt: Path) -> str:
    return f'dd if=/dev/zero of="{mnt}/filler" bs=4k 2>/dev/null; true'


# -- 1. output paths checked before the run -----------------------------------------------------------------
@pytest.mark.parametrize(
    "args, words",
    [
        (["--headless", "--screenshot", "x.txt"], ["--screenshot", ".txt", ".png"]),
        (["--headless", "--screenshot", "shot"], ["--screenshot", "no extension", "shot.png"]),
        (["--headless", "--screenshot", "."], ["--screenshot", "is a folder"]),
        (["--headless", "--screenshot", "/dev/full"], ["--screenshot", "/dev/full", "device"]),
        (["--headless", "--dump-activations", "/dev/full"], ["--dump-activations", "device"]),
        (["--headless", "--dump-activations", "out"], ["--dump-activations", "use out.npz"]),
        (["--headless", "--dump-activations", "acts.txt"], ["--dump-activations", ".npz"]),
        (["--headless", "--screenshot", "nowhere/x.png"], ["--screenshot", "does not exist"]),
        (["--scene", "train", "--headless", "--screenshot", "x.txt"], ["--screenshot", ".txt"]),
        (["--scene", "train", "--headless", "--screenshot", "/dev/full"], ["--screenshot", "device"]),
        (["--kiosk", "--headless", "--screenshot", "x"], ["--screenshot", "no extension"]),
        (["--kiosk", "--soak", "1", "--report", "/dev/full"], ["--report", "device"]),
        (["--kiosk", "--soak", "1", "--report", "r.txt"], ["--report", ".json"]),
        (["--kiosk", "--soak", "inf", "--report", "r.json"], ["--soak", "inf"]),
        (["--kiosk", "--soak", "nan", "--report", "r.json"], ["--soak", "nan"]),
    ],
)
def test_bad_output_paths_fail_before_the_run(tmp_path, args, words):
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "convscope.scenes.cli", *args], capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )  # fmt: skip
    one_error(proc, *words)
    assert time.monotonic() - t0 < 30, "checked before any window, worker or GL context"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing written"
    assert not Path("/dev/full.npz").exists()


@needs_unshare
@pytest.mark.parametrize(
    "args",
    [
        ["--headless", "--screenshot", "{m}/shot.png"],
        ["--headless", "--dump-activations", "{m}/acts.npz"],
        ["--scene", "train", "--headless", "--screenshot", "{m}/shot.png"],
        ["--kiosk", "--headless", "--screenshot", "{m}/shot.png"],
        ["--kiosk", "--soak", "1", "--report", "{m}/soak.json"],
    ],
)
def test_read_only_folder_fails_before_the_run_and_keeps_the_old_file(tmp_path, args):
    mnt = tmp_path / "ro"
    target = Path(args[-1].format(m=mnt))
    argv = [a.format(m=mnt) for a in args]
    proc, left = in_tmpfs(
        mnt,
        [sys.executable, "-m", "convscope.scenes.cli", *argv],
        prep=f'echo old > "{target}"',
        readonly=True,
    )
    one_error(proc, "read-only file system", str(mnt))
    assert left == [target.name], f"only the old file, got {left}"


# -- 1 + 2. a disk that fills up: no file, or the old one whole ---------------------------------------------
@pytest.mark.gl
@needs_unshare
@pytest.mark.parametrize("flag, name", [("--screenshot", "shot.png"), ("--dump-activations", "acts.npz")])
def test_full_disk_leaves_no_file_and_keeps_the_old_one(tmp_path, flag, name):
    mnt = tmp_path / "full"
    # 16 kB: room for the check's probe and the old file, not for a 480x320 PNG or LeNet's 9,134 activations.
    proc, left = in_tmpfs(
        mnt,
        [sys.executable, "-m", "convscope.scenes.cli", "--headless", "--frames", "1", *SMALL,
         flag, f"{mnt}/{name}"],
        prep=f'printf old > "{mnt}/{name}"',
    )  # fmt: skip
    one_error(proc, "the disk is full", name)
    assert left == [name], f"no temporary file may be left, got {left}"


@needs_unshare
def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path):
    """The writer itself, in the namespace: a full tmpfs, an old file, a write 64 kB too big."""
    mnt = tmp_path / "w"
    code = (
        "import sys; from convscope.engine.files import atomic_write, OutputError\n"
        "try:\n"
        f"    atomic_write('{mnt}/out.json', b'x' * 65536)\n"
        "except OutputError as e:\n"
        "    print('ERR', e); sys.exit(3)\n"
    )
    proc, left = in_tmpfs(
        mnt, [sys.executable, "-c", code], size="16k", prep=f'printf old > "{mnt}/out.json"'
    )
    assert proc.returncode == 3 and "the disk is full" in proc.stdout, (proc.stdout, proc.stderr)
    assert left == ["out.json"], left


def test_a_failed_write_leaves_no_file_and_the_old_one_whole(tmp_path, monkeypatch):
    """The same, simulated: fsync reports a full disk."""
    old = tmp_path / "shot.png"
    old.write_bytes(b"old picture")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="the disk is full"):
        atomic_write(old, b"new picture")
    monkeypatch.undo()
    assert old.read_bytes() == b"old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot.png"]
    with pytest.raises(ZeroDivisionError):  # the writer's own bug passes through, after the clean-up
        atomic_write(tmp_path / "new.npz", lambda f: 1 / 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot.png"]
    atomic_write(old, b"new picture")
    assert old.read_bytes() == b"new picture" and oct(old.stat().st_mode & 0o777) == "0o644"


def test_screenshot_and_dump_writers_are_atomic(tmp_path, monkeypatch):
    from convscope.engine.files import write_screenshot

    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[2:6, 2:6] = (255, 0, 0)
    write_screenshot(pixels, tmp_path / "a.png")
    write_screenshot(pixels, tmp_path / "a.jpg")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), pixels)
    assert Image.open(tmp_path / "a.jpg").format == "JPEG"
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EROFS, "ro")))
    with pytest.raises(OutputError, match="read-only file system"):
        write_screenshot(pixels, tmp_path / "a.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a.png"]


def test_check_output_refuses_what_cannot_be_written(tmp_path):
    assert check_output(tmp_path / "x.PNG", "--screenshot", (".png",)) == tmp_path / "x.PNG"
    os.mkfifo(tmp_path / "pipe.png")
    for path, words in [
        (tmp_path / "pipe.png", "FIFO"),
        (tmp_path, "folder"),
        (Path("/dev/null"), "device"),
        (tmp_path / "a.npz.png", ".png"),
        (tmp_path / "x.txt", "ends in .txt"),
        ("", "empty"),
    ]:
        suffixes = (".npz",) if str(path).endswith("a.npz.png") else (".png",)
        with pytest.raises(OutputError, match=words.replace(".", r"\.")):
            check_output(path, "--screenshot", suffixes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.png"], "the probe leaves nothing"


# -- 2. the soak report: kept as it goes, its room reserved ------------------------------------------------
@needs_unshare
def test_staged_report_survives_a_disk_that_fills_during_the_run(tmp_path):
    mnt = tmp_path / "soak"
    code = (
        "import json, subprocess, sys\n"
        "from convscope.engine.files import StagedOutput\n"
        f"out = StagedOutput('{mnt}/soak.json', reserve=256 * 1024)\n"
        "out.write(b'{\"partial\": true}')\n"
        f"subprocess.run(['sh', '-c', '{_dd_fill(mnt)}'])\n"  # the disk fills up meanwhile
        "out.commit(json.dumps({'frames': list(range(20000))}).encode())\n"
    )
    proc, left = in_tmpfs(mnt, [sys.executable, "-c", code], size="1m")
    assert proc.returncode == 0, proc.stderr
    assert sorted(left) == ["filler", "soak.json"], left


def test_staged_report_keeps_the_partial_file_when_the_end_fails(tmp_path, monkeypatch):
    out = StagedOutput(tmp_path / "soak.json", reserve=4096)
    out.write(b'{"bucket": 1}')
    assert (tmp_path / "soak.json.partial").read_bytes() == b'{"bucket": 1}'
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OutputError, match=r"the disk is full\); the report so far is in .*soak.json.partial"):
        out.commit(b'{"bucket": 2}')
    assert not (tmp_path / "soak.json").exists()
    assert (tmp_path / "soak.json.partial").read_bytes() == b'{"bucket": 2}', "nothing measured is lost"


@pytest.mark.gl
@pytest.mark.slow
@needs_unshare
def test_soak_report_is_written_though_the_disk_fills_during_the_soak(tmp_path):
    mnt = tmp_path / "soak"
    report = mnt / "soak.json"
    cli = f"{sys.executable} -m convscope.scenes.cli --kiosk --soak 0.1 --report {report} --headless"
    # The soak starts, its .partial file appears, then the rest of the disk is filled.
    run = (
        f"{cli} --width 480 --height 320 & pid=$!; "
        f'for i in $(seq 200); do [ -e "{report}.partial" ] && break; sleep 0.1; done; {_dd_fill(mnt)}; '
        f"wait $pid; rc=$?; python3 -c \"import json; json.load(open('{report}'))\" || exit 97; exit $rc"
    )
    proc, left = in_tmpfs(mnt, ["sh", "-c", run], size="8m", timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert sorted(left) == ["filler", "soak.json"], left


# -- 3. /dev/full and a dump without its extension: checked above (no /dev/full.npz, "use out.npz") ---------


# -- 4. numeric settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line, words",
    [
        ("worker_timeout = nan", ["worker_timeout", "nan"]),
        ("worker_timeout = -1", ["worker_timeout", "-1"]),
        ("worker_timeout = inf", ["worker_timeout", "inf"]),
        ("ui_scale = nan", ["ui_scale"]),
        ("brush = inf", ["brush"]),
        ("width = 0", ["width"]),
        ("weights = { lenet = 'nowhere.safetensors' }", ["weights: cannot read nowhere.safetensors"]),
        ("weights = { vgg = 'x' }", ["weights", "vgg"]),
        ("weights = 'x'", ["weights: no file", "x"]),  # a model card's weights file, which is not there
        ("data_dir = 'no/such/folder'", ["data_dir: no/such/folder is not a folder"]),
    ],
)
def test_bad_settings_in_a_config_file_are_one_line(tmp_path, line, words):
    cfg = tmp_path / "c.toml"
    cfg.write_text(line + "\n")
    one_error(convscope("--config", str(cfg), "--headless", "--screenshot", str(tmp_path / "x.png")), *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_config_and_command_line_reject_a_missing_data_dir_alike(tmp_path):
    cli = one_error(convscope("--data-dir", "no/such/folder"))
    cfg = tmp_path / "c.toml"
    cfg.write_text("data_dir = 'no/such/folder'\n")
    file = one_error(convscope("--config", str(cfg)))
    assert cli.removeprefix("convscope: error: --") == file.removeprefix("convscope: error: ").replace(
        "data_dir", "data-dir"
    )


@pytest.mark.parametrize(
    "line, key",
    [("hold_digit = nan", "hold_digit"), ("pin_hold = inf", "pin_hold"), ("reset_after = nan", "reset")],
)
def test_kiosk_floats_must_be_finite(tmp_path, line, key):
    cfg = tmp_path / "k.toml"
    cfg.write_text(f"[kiosk]\n{line}\n")
    one_error(
        convscope("--kiosk", "--config", str(cfg), "--headless", "--screenshot", str(tmp_path / "x.png")), key
    )


# -- 5. files that are not files ----------------------------------------------------------------------------
def _finishes(fn, seconds: float = 5.0):
    """Run fn() in a thread; fail if it is still running after `seconds` (it would hang the trainer)."""
    box: dict = {}

    def call():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            box["error"] = exc

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still blocked after {seconds} s"
    return box


def test_a_fifo_checkpoint_is_one_clear_error_not_a_hang(tmp_path):
    import torch
    from convscope.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from convscope.models.revacnn import Arch, RevaCNN

    fifo = tmp_path / "ck.json"
    os.mkfifo(fifo)
    got = _finishes(lambda: load_checkpoint(fifo))
    assert isinstance(got.get("error"), CheckpointError) and "FIFO" in str(got["error"]), got
    model = RevaCNN(Arch(in_channels=1, size=32, classes=10, widths=(2, 2, 2)))
    got = _finishes(lambda: save_checkpoint(fifo, model, torch.optim.SGD(model.parameters(), lr=0.1)))
    assert isinstance(got.get("error"), CheckpointError) and "not a regular file" in str(got["error"]), got
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.json"] and fifo.is_fifo()
    # A good checkpoint whose tensor file was swapped for a FIFO: refused too, not waited on.
    good = save_checkpoint(tmp_path / "good", model)
    tensors = next(tmp_path.glob("good.*.safetensors"))
    tensors.unlink()
    os.mkfifo(tensors)
    got = _finishes(lambda: load_checkpoint(good))
    assert isinstance(got.get("error"), CheckpointError) and "FIFO" in str(got["error"]), got


def test_a_fifo_config_input_or_weights_is_one_line(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    shot = str(tmp_path / "x.png")
    one_error(convscope("--config", str(fifo), timeout=30), "FIFO")
    one_error(convscope("--kiosk", "--config", str(fifo), timeout=30), "FIFO")
    one_error(
        convscope("--headless", "--screenshot", shot, "--input", str(fifo), timeout=30), "not a regular"
    )
    one_error(convscope("--headless", "--screenshot", shot, "--weights", str(fifo), timeout=30), "--weights")


def test_read_regular_refuses_devices_and_gives_up_on_time(tmp_path, monkeypatch):
    from convscope.engine.files import InputFileError

    with pytest.raises(InputFileError, match="device"):
        read_regular("/dev/zero")
    (tmp_path / "a").write_bytes(b"abc")
    assert read_regular(tmp_path / "a") == b"abc"
    with pytest.raises(InputFileError, match="more than the 2"):
        read_regular(tmp_path / "a", limit=2)
    real_fdopen = os.fdopen

    def slow(*a, **k):
        time.sleep(2.0)  # a hung network share
        return real_fdopen(*a, **k)

    monkeypatch.setattr(os, "fdopen", slow)
    with pytest.raises(InputFileError, match="took more than 0.2 s"):
        read_regular(tmp_path / "a", timeout=0.2)


# -- 6. weights so large that the activations overflow ------------------------------------------------------
def huge_weights(path: Path) -> Path:
    """The shipped LeNet with every weight pushed to +-1e38: finite, but the sums overflow float32."""
    from safetensors.numpy import load_file, save_file

    t = load_file(str(ROOT / "models" / "lenet.safetensors"))
    save_file(
        {k: (np.sign(v) * 1e38).astype(np.float32) if "weight" in k else v for k, v in t.items()}, str(path)
    )
    return path


@pytest.mark.gl
def test_overflowing_weights_show_cyan_nodes_a_message_and_a_warning(tmp_path):
    from convscope.engine.gpu.colormaps import NONFINITE

    weights = huge_weights(tmp_path / "huge.safetensors")
    shot, dump = tmp_path / "shot.png", tmp_path / "acts.npz"
    ink = np.zeros((60, 60), np.uint8)
    ink[10:50, 27:33] = 255  # a "1"
    Image.fromarray(ink).save(tmp_path / "one.png")
    proc = convscope(
        "--headless", "--frames", "2", "--width", "800", "--height", "500", "--weights", str(weights),
        "--input", str(tmp_path / "one.png"), "--screenshot", str(shot), "--dump-activations", str(dump),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("convscope: warning:") and "inf or NaN" in lines[0], lines
    z = np.load(dump)
    assert "probabilities" in z["nonfinite"] and "fc1" in z["nonfinite"], z["nonfinite"]
    assert not np.isfinite(z["fc1"]).all() and np.isnan(z["probabilities"]).all()
    assert "input" not in z["nonfinite"] and np.isfinite(z["input"]).all()
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    cyan = np.all(np.abs(img - np.array(NONFINITE) * 255) <= 12, axis=2)
    assert cyan.sum() > 500, (
        f"{cyan.sum()} cyan pixels: the overflowing nodes must take the non-finite colour"
    )
    # The guesses panel (top left) says so in red, instead of "waiting for the network..." forever.
    panel = img[: img.shape[0] * 2 // 3, : img.shape[1] * 3 // 5]
    red_text = (panel[..., 0] > 200) & (panel[..., 1] < 140) & (panel[..., 2] < 130)
    assert red_text.sum() > 150, f"{red_text.sum()} red text pixels: the overflow message is missing"


def test_finite_dump_has_an_empty_nonfinite_list_and_no_warning(tmp_path):
    """The dump's `nonfinite` list and the non-finite colour range, without a GL context."""
    from convscope.engine.gpu.colormaps import NONFINITE, sample
    from convscope.scenes.explore.run import nonfinite_layers

    assert nonfinite_layers({"a": np.ones(3), "b": np.array([1.0, np.inf])}) == ["b"]
    rgb = sample("viridis", np.array([0.0, np.inf, -np.inf, np.nan, 1.0]))
    assert np.allclose(rgb[1:4], NONFINITE) and not np.allclose(rgb[[0, 4]], NONFINITE)
    for name in ("harley", "viridis", "grayscale"):  # no map comes near the non-finite colour
        ramp = sample(name, np.linspace(0, 1, 1001))
        assert np.abs(ramp - np.array(NONFINITE)).max(axis=1).min() > 0.4, name


def test_colour_ranges_ignore_inf():
    from convscope.engine.gpu.normalize import layer_ranges
    from convscope.models.specs import lenet_spec

    spec = lenet_spec().to_dag()
    acts = np.linspace(0, 1, spec.total_nodes, dtype=np.float32)
    layer = spec.layers[1]
    acts[layer.start] = np.inf
    acts[layer.start + 1] = -np.inf
    acts[layer.start + 2] = np.nan
    r = layer_ranges(spec, acts)
    finite = acts[layer.start + 3 : layer.stop]
    assert np.allclose(r[1], [finite.min(), finite.max()]), r[1]


# -- 7. small things ----------------------------------------------------------------------------------------
def test_ui_messages_use_only_glyphs_the_ui_font_has():
    """The training scene shows its worker's messages in ImGui's built-in font: a character it lacks
    is drawn as '?'.  Every string in the modules whose text reaches the panels must be drawable."""
    import tokenize

    from imgui_bundle import imgui

    ctx = imgui.create_context()
    try:
        baked = imgui.get_io().fonts.add_font_default_vector().get_font_baked(15.0)
        files = sorted((ROOT / "features").rglob("*.py")) + sorted((ROOT / "engine" / "proc").rglob("*.py"))
        files += sorted((ROOT / "scenes").rglob("panels.py"))
        missing = []
        for path in files:
            with open(path, "rb") as f:
                for tok in tokenize.tokenize(f.readline):
                    if tok.type != tokenize.STRING or tok.string.startswith(('"""', "'''")):
                        continue
                    for ch in set(tok.string):
                        if ord(ch) > 126 and baked.find_glyph_no_fallback(ord(ch)) is None:
                            missing.append(f"{path.name}:{tok.start[0]} {ch!r}")
        assert not missing, f"characters the UI font lacks: {missing}"
    finally:
        imgui.destroy_context(ctx)


def test_a_garbage_cifar_npz_is_corrupt_not_absent(tmp_path):
    from convscope.features.data import datasets

    (tmp_path / "cifar10.npz").write_bytes(b"PK\x03\x04 this is no zip at all" * 10)
    with pytest.raises(datasets.DatasetUnavailable, match="cifar10.npz is corrupt"):
        datasets.load_cifar10(tmp_path, download=False)
    ds = datasets.make_dataset("cifar10", tmp_path, download=False)
    assert (
        ds.name == "digits"
        and "corrupt" in ds.note
        and "absent" not in ds.note
        and "not found" not in ds.note
    )


def test_a_huge_input_image_is_one_line_without_pillows_warning(tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (10000, 10000)).save(big)
    one_error(
        convscope("--headless", "--screenshot", str(tmp_path / "x.png"), "--input", str(big)), "10000x10000"
    )


def test_data_dir_given_as_a_file_or_missing_is_refused_like_the_command_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"data_dir = '{f}'\n")
    one_error(convscope("--config", str(cfg)), f"data_dir: {f} is not a folder")


def test_training_settings_are_checked_on_construction():
    from convscope.scenes.train.state import TrainConfig

    TrainConfig()  # the defaults hold
    for bad in (
        {"worker_timeout": float("nan")},
        {"worker_timeout": -1.0},
        {"publish_hz": 0.0},
        {"max_fps": float("inf")},
        {"ui_scale": 0.0},
        {"dataset": "imagenet"},
        {"embed_images": 0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
            TrainConfig(**bad)


@needs_unshare
def test_a_disk_already_full_is_refused_before_the_run(tmp_path):
    mnt = tmp_path / "full"
    proc, left = in_tmpfs(
        mnt,
        [sys.executable, "-m", "convscope.scenes.cli", "--headless", "--screenshot", f"{mnt}/shot.png"],
        size="16k",
        prep=_dd_fill(mnt),
    )
    one_error(proc, "--screenshot", "the disk is full")
    assert left == ["filler"], left
