"""The hostile-input probe: what a careless user or a failing machine does to convscope, and what it answers.

    python tools/probe.py [--quick] [--only AREA ...] [--markdown OUT.md] [--jobs N]

Cases, by area: the command line, output paths (every output flag of every scene against read-only and
full file systems, /dev/full, folders, FIFOs, missing folders and wrong extensions), config files (every
numeric setting with nan / inf / out-of-range values, wrong types, weights and data_dir tables), kiosk
config files, weights files (pickles, truncated, NaN, overflowing), --input images, data directories,
checkpoints.  A command-line case passes when the run ends as expected: `error` is exit status 2 with
exactly one `convscope: error:` line on stderr (holding the expected words), no file left in the output
folder and an earlier file whole; `ok` is exit status 0; `warn` is exit 0 with one `convscope: warning:`
line.  Library cases (checkpoints, data sets, image decoding) call the function in this process, under a
time limit, and expect its one error.  Read-only and full disks are tmpfs mounts in a private mount
namespace (`unshare -rm`); without one those cases are reported as skipped.  `--quick` leaves out the
cases that render or start a worker.  Prints a table (case, expected, seen); the run's table is kept in
docs/RELIABILITY.md.  Worker lifetimes (killing the worker, the trainer or the parent) are covered by
tests/test_worker.py, test_train_worker.py and test_explore_scene.py, not here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from convscope.engine.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]
# A pickle that runs `os.system("touch X")` when unpickled: a weights file must never be unpickled.
PICKLE = b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93\x8c\x07touch X\x85R."
PY = sys.executable
CLI = [PY, "-m", "convscope.scenes.cli"]
SMALL = ["--width", "480", "--height", "320"]
UNSHARE = shutil.which("unshare") is not None and (
    subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0
)


@dataclass
class Case:
    area: str
    name: str
    expect: str  # "error: words" / "ok" / "warn: words" / "raises Type: words"
    run: Callable[[Path], str]  # in a fresh folder; returns what was seen, "" when it matched
    heavy: bool = False  # renders or starts a worker
    seen: str = ""
    passed: bool | None = None
    problem: str = ""  # how what was seen differs from what was expected; "" when it matched
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


_observed = threading.local()  # what the case running in this thread saw: its exit and error line


def observe(text: str) -> None:
    _observed.text = " ".join(text.split())


class Skip(Exception):
    """The case cannot run on this machine (no mount namespace)."""


# -- running the command line ------------------------------------------------------------------------------
def _ns(mnt: Path, size: str, prep: str, readonly: bool, command: list[str]) -> list[str]:
    """`command` wrapped to run with a tmpfs of `size` on `mnt` (prep, then read-only if asked); the names
    left in the tmpfs are printed after a marker line."""
    if not UNSHARE:
        raise Skip("no unshare -rm")
    mnt.mkdir(exist_ok=True)
    ro = 'mount -o remount,ro "$M" || exit 98;' if readonly else ""
    script = (  # newlines, not ";": a prep may end in "&"
        f'M="$1"; shift\nmount -t tmpfs -o size={size} tmpfs "$M" || exit 99\n{prep or ":"}\n{ro}\n'
        '"$@"; rc=$?; echo "@@LS"; ls -A "$M"; exit $rc'
    )
    return ["unshare", "-rm", "sh", "-c", script, "sh", str(mnt), *command]


def cli(
    args: list[str],
    expect: str,
    outdir_files: list[str] | None = None,
    old: dict[str, bytes] | None = None,
    tmpfs: dict | None = None,
    timeout: float = 240,
) -> Callable[[Path], str]:
    """A case that runs the command line in folder `d` ({d} in args is replaced by it).  `outdir_files`:
    the names expected in `d` (or the tmpfs) afterwards; `old`: files made first, which must stay whole."""

    def run(d: Path) -> str:
        argv = [a.replace("{d}", str(d)) for a in args]
        for name, data in (old or {}).items():
            if tmpfs is None:
                (d / name).write_bytes(data)
        command = CLI + argv
        if tmpfs is not None:
            mnt = d / "mnt"
            prep = "; ".join(f'printf {data.decode()} > "{mnt}/{name}"' for name, data in (old or {}).items())
            prep = "; ".join(p for p in (prep, tmpfs.get("prep", "").replace("{m}", str(mnt))) if p)
            command = _ns(mnt, tmpfs.get("size", "16k"), prep, tmpfs.get("ro", False), command)
            command = [c.replace("{m}", str(mnt)) for c in command]
        before = set(os.listdir(d))
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=d)
        except subprocess.TimeoutExpired:
            return f"hang (no answer in {timeout:g} s)"
        stdout, _, listing = proc.stdout.partition("@@LS\n")
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        observe(
            f"exit {proc.returncode}"
            + (f": {lines[0]}" if lines else "")
            + (" (+ more)" if len(lines) > 1 else "")
        )
        left = (
            sorted(listing.split())
            if tmpfs is not None
            else sorted(set(os.listdir(d)) - before | set(old or {}))
        )
        return _judge(
            proc.returncode, proc.stderr, left, expect, outdir_files, old, d if tmpfs is None else None
        )

    return run


def _judge(rc, stderr, left, expect, outdir_files, old, d) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    if "Traceback" in stderr:
        return f"traceback (exit {rc}): {lines[-1][:100] if lines else ''}"
    kind, _, words = expect.partition(":")
    words = [w.strip() for w in words.split("|") if w.strip()]
    first = lines[0] if lines else ""
    if kind == "ok":
        if rc != 0:
            return f"exit {rc}: {first[:120]}"
    elif kind in ("error", "warn"):
        want = "convscope: error:" if kind == "error" else "convscope: warning:"
        if kind == "error" and rc != 2:
            return f"exit {rc}: {first[:120]}"
        if kind == "warn" and rc != 0:
            return f"exit {rc}: {first[:120]}"
        if len(lines) != 1 or not first.startswith(want):
            return f"{len(lines)} stderr lines: {' / '.join(x[:60] for x in lines[:3])}"
        missing = [w for w in words if w not in first]
        if missing:
            return f"line lacks {missing}: {first[:120]}"
    if outdir_files is not None and sorted(left) != sorted(outdir_files):
        return f"files left: {left} (expected {sorted(outdir_files)})"
    if old and d is not None:
        for name, data in old.items():
            if (d / name).read_bytes() != data:
                return f"{name} was changed"
    return ""


def call(fn: Callable[[Path], object], expect_exc: str, words: str = "", timeout: float = 60) -> Callable:
    """A library case: fn(d) must raise an exception named `expect_exc` whose text holds every `words`
    (separated by |), within `timeout` s; "" expects no exception."""

    def run(d: Path) -> str:
        box: dict = {}

        def target():
            try:
                box["value"] = fn(d)
            except Exception as exc:  # noqa: BLE001 - the probe reports it
                box["exc"] = exc

        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            return f"hang (no answer in {timeout:g} s)"
        exc = box.get("exc")
        observe(f"{type(exc).__name__}: {exc}" if exc else "returned, no exception")
        if not expect_exc:
            return f"{type(exc).__name__}: {str(exc)[:100]}" if exc else ""
        if exc is None:
            return "no error"
        names = {c.__name__ for c in type(exc).__mro__}
        if expect_exc not in names:
            return f"{type(exc).__name__}: {str(exc)[:100]}"
        text = str(exc)
        missing = [w for w in words.split("|") if w and w not in text]
        if "\n" in text.strip():
            return f"{len(text.splitlines())} lines"
        return f"lacks {missing}: {text[:100]}" if missing else ""

    return run


# -- material ----------------------------------------------------------------------------------------------
def _png(d: Path, name: str, size=(60, 60), mode="L") -> Path:
    from PIL import Image

    img = Image.new(mode, size)
    if min(size) >= 20 and mode in ("L", "RGB", "RGBA"):
        img.paste(
            255 if mode == "L" else (255,) * len(mode), (size[0] // 2 - 3, 5, size[0] // 2 + 3, size[1] - 5)
        )
    img.save(d / name)
    return d / name


def _weights(d: Path, name: str, scale: float | None = None, nan: bool = False) -> Path:
    from safetensors.numpy import load_file, save_file

    t = load_file(str(ROOT / "models" / "lenet.safetensors"))
    if scale is not None:
        t = {k: (np.sign(v) * scale).astype(np.float32) if "weight" in k else v for k, v in t.items()}
    if nan:
        t["conv1.weight"] = t["conv1.weight"].copy()
        t["conv1.weight"][0, 0, 0, 0] = np.nan
    save_file(t, str(d / name))
    return d / name


def _fifo(d: Path, name: str) -> Path:
    os.mkfifo(d / name)
    return d / name


def _toml(d: Path, text: str, name: str = "c.toml") -> Path:
    (d / name).write_text(text)
    return d / name


def _checkpoint(d: Path) -> Path:
    import torch
    from convscope.models.checkpoint import save_checkpoint
    from convscope.models.revacnn import Arch, RevaCNN

    torch.manual_seed(0)
    model = RevaCNN(Arch(in_channels=1, size=32, classes=10, widths=(2, 2, 2)))
    return save_checkpoint(d / "ck", model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))


# -- the cases ---------------------------------------------------------------------------------------------
def cases() -> list[Case]:
    out: list[Case] = []

    def add(area, name, expect, run, heavy=False):
        out.append(Case(area, name, expect, run, heavy))

    # command line
    for args, words in [
        (["--frobnicate"], "frobnicate"),
        (["--frames", "0", "--headless", "--screenshot", "x.png"], "--frames"),
        (["--frames", "-5", "--headless", "--screenshot", "x.png"], "--frames"),
        (["--frames", "99999999999", "--headless", "--screenshot", "x.png"], "--frames"),
        (["--frames", "ten"], "--frames"),
        (["--width", "10", "--headless", "--screenshot", "x.png"], "width"),
        (["--width", "100000", "--headless", "--screenshot", "x.png"], "width"),
        (["--height", "-1", "--headless", "--screenshot", "x.png"], "height"),
        (["--model", "vgg"], "--model"),
        (["--colormap", "jet"], "--colormap"),
        (["--headless"], "--headless needs"),
        (["--soak", "1"], "--soak needs --kiosk"),
        (["--report", "r.json"], "--report needs --kiosk"),
        (["--kiosk", "--soak", "0", "--report", "r.json"], "--soak"),
        (["--kiosk", "--soak", "-1", "--report", "r.json"], "--soak"),
        (["--kiosk", "--soak", "nan", "--report", "r.json"], "--soak"),
        (["--kiosk", "--soak", "inf", "--report", "r.json"], "--soak"),
        (["--kiosk", "--soak", "1"], "go together"),
        (["--kiosk", "--scene", "train"], "--scene"),
        (["--kiosk", "--input", "x.png"], "--input"),
        (["--kiosk", "--headless"], "--screenshot"),
        (["--scene", "train", "--weights", "x.safetensors"], "--weights"),
        (["--scene", "train", "--model", "mlp"], "--model"),
        (["--dataset", "mnist"], "--dataset needs"),
        (["--data-mirror", "http://x/"], "--data-mirror needs"),
        (["--scene", "train", "--data-mirror", "ftp://x/", "--data-dir", "."], "--data-mirror"),
        (["--scene", "train", "--data-mirror", "http://x/"], "--data-dir"),
        (["--data-dir", "no/such/folder"], "--data-dir"),
    ]:
        add("command line", " ".join(args), f"error: {words}", cli(args, f"error: {words}", []))

    # outputs: every output flag of every scene, against each bad target
    outputs = [
        ("explore --screenshot", ["--headless", "--frames", "1", *SMALL, "--screenshot"], "shot.png", True),
        (
            "explore --dump-activations",
            ["--headless", "--frames", "1", *SMALL, "--dump-activations"],
            "a.npz",
            True,
        ),
        (
            "train --screenshot",
            [
                "--scene",
                "train",
                "--dataset",
                "digits",
                "--headless",
                "--frames",
                "1",
                *SMALL,
                "--screenshot",
            ],
            "shot.png",
            True,
        ),
        (
            "kiosk --screenshot",
            ["--kiosk", "--headless", "--frames", "3", *SMALL, "--screenshot"],
            "shot.png",
            True,
        ),
        (
            "kiosk --report",
            ["--kiosk", "--headless", *SMALL, "--soak", "0.05", "--report"],
            "soak.json",
            True,
        ),
    ]
    for label, args, name, _ in outputs:
        flag = args[-1]
        stem, ext = name.rsplit(".", 1)
        add(
            "outputs",
            f"{label} /dev/full",
            f"error: {flag}|device",
            cli([*args, "/dev/full"], f"error: {flag}|device", []),
        )
        add(
            "outputs",
            f"{label} a folder",
            f"error: {flag}|folder",
            cli([*args, "{d}"], f"error: {flag}|folder", []),
        )
        add(
            "outputs",
            f"{label} no extension",
            f"error: {flag}|no extension|{stem}.{ext}",
            cli([*args, "{d}/" + stem], f"error: {flag}|no extension|{stem}.{ext}", []),
        )
        add(
            "outputs",
            f"{label} x.txt",
            f"error: {flag}|.txt",
            cli([*args, "{d}/x.txt"], f"error: {flag}|.txt", []),
        )
        add(
            "outputs",
            f"{label} missing folder",
            f"error: {flag}|does not exist",
            cli([*args, "{d}/nowhere/" + name], f"error: {flag}|does not exist", []),
        )
        add(
            "outputs",
            f"{label} a FIFO",
            f"error: {flag}|FIFO",
            lambda d, a=args, n=name, f=flag: (_fifo(d, n), cli([*a, "{d}/" + n], f"error: {f}|FIFO", [])(d))[
                1
            ],
        )
        add(
            "outputs",
            f"{label} read-only folder, old file kept",
            f"error: {flag}|read-only file system",
            cli(
                [*args, "{m}/" + name],
                f"error: {flag}|read-only file system",
                [name],
                old={name: b"old"},
                tmpfs={"ro": True},
            ),
        )
    for label, args, name, _ in outputs[:4]:
        flag = args[-1]
        add(
            "outputs",
            f"{label} full disk, old file kept",
            f"error: the disk is full|{name}",
            cli(
                [*args, "{m}/" + name],
                f"error: the disk is full|{name}",
                [name],
                old={name: b"old"},
                tmpfs={"size": "8k"},
            ),
            heavy=True,
        )
    fill = "sh -c 'for i in $(seq 300); do [ -e {m}/soak.json.partial ] && break; sleep 0.1; done; dd if=/dev/zero of={m}/filler bs=4k 2>/dev/null' &"  # noqa: E501
    add(
        "outputs",
        "kiosk --report, the disk fills during the soak",
        "ok (report whole)",
        cli(
            ["--kiosk", "--headless", *SMALL, "--soak", "0.1", "--report", "{m}/soak.json"],
            "ok",
            ["filler", "soak.json"],
            tmpfs={"size": "8m", "prep": fill},
        ),
        heavy=True,
    )
    add(
        "outputs",
        "explore --dump-activations out.npz, old file replaced",
        "ok",
        cli(["--headless", "--frames", "1", *SMALL, "--dump-activations", "{d}/a.npz"], "ok", ["a.npz"]),
        heavy=True,
    )
    add(
        "outputs",
        "explore --screenshot x.jpg",
        "ok",
        cli(["--headless", "--frames", "1", *SMALL, "--screenshot", "{d}/x.jpg"], "ok", ["x.jpg"]),
        heavy=True,
    )

    # config files
    fields = {
        "width": ["nan", "0", "-1", "100000", "'wide'"],
        "height": ["0", "1e9", "true"],
        "ui_scale": ["nan", "inf", "0", "-1", "100"],
        "pad_size": ["0", "-280", "100000"],
        "brush": ["nan", "inf", "0", "1000"],
        "worker_timeout": ["nan", "inf", "-1", "0", "1e9", "'soon'"],
    }
    for key, values in fields.items():
        for v in values:
            add(
                "config",
                f"{key} = {v}",
                f"error: {key}",
                cli(
                    ["--config", "{d}/c.toml", "--headless", "--screenshot", "{d}/x.png"],
                    f"error: {key}",
                    ["c.toml"],
                    old={"c.toml": f"{key} = {v}\n".encode()},
                ),
            )
    for text, words in [
        ("colourmap = 'viridis'", "colourmap"),
        ("model = 'vgg'", "model"),
        ("normalize = 'none'", "normalize"),
        ("weights = { lenet = 'nowhere.safetensors' }", "weights: cannot read nowhere.safetensors"),
        ("weights = { vgg = 'models/lenet.safetensors' }", "weights|vgg"),
        ("weights = 'lenet.safetensors'", "weights"),
        ("weights = { lenet = 3 }", "weights"),
        ("data_dir = 'no/such/folder'", "data_dir: no/such/folder is not a folder"),
        ("data_dir = 'c.toml'", "data_dir: c.toml is not a folder"),
        ("width = ", "not valid TOML"),
        ("[[[", "not valid TOML"),
    ]:
        add(
            "config",
            text,
            f"error: {words}",
            cli(
                ["--config", "{d}/c.toml"],
                f"error: {words}",
                ["c.toml"],
                old={"c.toml": (text + "\n").encode()},
            ),
        )
    for label, maker, words in [
        ("config not UTF-8", lambda d: (d / "c.toml").write_bytes(b"model = '\xff'\n"), "c.toml"),
        ("config is a FIFO", lambda d: _fifo(d, "c.toml"), "FIFO"),
        ("config is a folder", lambda d: (d / "c.toml").mkdir(), "folder"),
        ("config missing", lambda d: None, "not found"),
        ("config is /dev/zero", lambda d: os.symlink("/dev/zero", d / "c.toml"), "device"),
    ]:
        add(
            "config",
            label,
            f"error: {words}",
            lambda d, m=maker, w=words: (m(d), cli(["--config", "{d}/c.toml"], f"error: {w}", None)(d))[1],
        )
    # kiosk config
    for key in [
        "attract_after",
        "reset_after",
        "control_mm",
        "screen_dpi",
        "pen_speed",
        "orbit_speed",
        "hold_digit",
        "hide_cursor_after",
        "pin_hold",
        "hang_after",
        "startup_grace",
    ]:
        for v in ("nan", "inf"):
            add(
                "kiosk config",
                f"kiosk.{key} = {v}",
                f"error: kiosk.{key}",
                cli(
                    ["--kiosk", "--config", "{d}/k.toml", "--headless", "--screenshot", "{d}/x.png"],
                    f"error: kiosk.{key}",
                    ["k.toml"],
                    old={"k.toml": f"[kiosk]\n{key} = {v}\n".encode()},
                ),
            )
    for text, words in [
        ("[kiosk]\npin = '12'", "pin"),
        ("[kiosk]\nexit_chord = 'q'", "exit_chord"),
        ("kiosk = 3", "expected a table"),
        ("[kiosk]\nbackend = 'qt'", "backend"),
    ]:
        add(
            "kiosk config",
            text.replace("\n", " "),
            f"error: {words}",
            cli(
                ["--kiosk", "--config", "{d}/k.toml", "--headless", "--screenshot", "{d}/x.png"],
                f"error: {words}",
                ["k.toml"],
                old={"k.toml": (text + "\n").encode()},
            ),
        )

    # weights
    shot = ["--headless", "--frames", "1", *SMALL, "--screenshot", "{d}/x.png"]
    for label, maker, words, heavy in [
        ("missing", lambda d: None, "--weights", False),
        ("a folder", lambda d: (d / "w.safetensors").mkdir(), "--weights", False),
        ("a FIFO", lambda d: _fifo(d, "w.safetensors"), "--weights", False),
        ("/dev/zero", lambda d: os.symlink("/dev/zero", d / "w.safetensors"), "--weights", False),
        ("empty", lambda d: (d / "w.safetensors").write_bytes(b""), "w.safetensors|corrupt", True),
        ("zeros", lambda d: (d / "w.safetensors").write_bytes(bytes(64)), "w.safetensors|corrupt", True),
        (
            "a pickle payload",
            lambda d: (d / "w.safetensors").write_bytes(PICKLE),
            "w.safetensors|corrupt",
            True,
        ),
        (
            "truncated",
            lambda d: (d / "w.safetensors").write_bytes(
                (ROOT / "models" / "lenet.safetensors").read_bytes()[:5000]
            ),
            "w.safetensors|corrupt",
            True,
        ),
        (
            "the MLP's for the LeNet",
            lambda d: shutil.copy(ROOT / "models" / "mlp.safetensors", d / "w.safetensors"),
            "does not fit",
            True,
        ),
        ("a NaN weight", lambda d: _weights(d, "w.safetensors", nan=True), "NaN or inf", True),
    ]:
        add(
            "weights",
            f"--weights {label}",
            f"error: {words}",
            lambda d, m=maker, w=words: (
                m(d),
                cli(["--weights", "{d}/w.safetensors", *shot], f"error: {w}", None)(d),
            )[1],
            heavy,
        )
    add(
        "weights",
        "--weights every weight 1e38 (overflow)",
        "warn: inf or NaN",
        lambda d: (
            _weights(d, "w.safetensors", 1e38),
            cli(
                [
                    "--weights",
                    "{d}/w.safetensors",
                    *SMALL,
                    "--headless",
                    "--frames",
                    "1",
                    "--dump-activations",
                    "{d}/a.npz",
                ],
                "warn: inf or NaN",
                None,
            )(d),
        )[1],
        True,
    )

    # --input
    inp = ["--headless", "--screenshot", "{d}/x.png", "--input"]
    for label, maker, words in [
        ("missing", lambda d: None, "no such file"),
        ("a folder", lambda d: (d / "i.png").mkdir(), "folder"),
        ("a FIFO", lambda d: _fifo(d, "i.png"), "regular file"),
        ("/dev/zero", lambda d: os.symlink("/dev/zero", d / "i.png"), "regular file"),
        ("empty", lambda d: (d / "i.png").write_bytes(b""), "i.png"),
        ("text", lambda d: (d / "i.png").write_text("hello"), "not an image"),
        (
            "truncated PNG",
            lambda d: (d / "i.png").write_bytes(_png(d, "t.png", (200, 200)).read_bytes()[:200]),
            "i.png",
        ),
        ("10000x10000", lambda d: _png(d, "i.png", (10000, 10000)), "10000x10000"),
        ("20000x20000 (a decompression bomb)", lambda d: _png(d, "i.png", (20000, 20000)), "megapixels"),
        (
            "a GIF renamed .png, 0 frames",
            lambda d: (d / "i.png").write_bytes(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
            "i.png",
        ),
    ]:
        add(
            "--input",
            f"--input {label}",
            f"error: {words}",
            lambda d, m=maker, w=words: (m(d), cli([*inp, "{d}/i.png"], f"error: {w}", None)(d))[1],
        )
    for label, size, mode in [
        ("1x1", (1, 1), "L"),
        ("RGBA 300x200", (300, 200), "RGBA"),
        ("I;16", (64, 64), "I;16"),
        ("CMYK", (64, 64), "CMYK"),
        ("5000x5000", (5000, 5000), "L"),
    ]:

        def decode(d, s=size, m=mode):
            from convscope.scenes.explore.preprocess import image_file_to_input

            ext = "jpg" if m == "CMYK" else "png"
            from PIL import Image

            Image.new(m, s).save(d / f"i.{ext}")
            x = image_file_to_input(d / f"i.{ext}")
            assert x.shape == (28, 28) and np.isfinite(x).all()

        add("--input", f"--input {label} (decoded in-process)", "ok", call(decode, ""))

    # data directories
    def garbage_npz(d):
        from convscope.features.data.datasets import load_cifar10

        (d / "cifar10.npz").write_bytes(b"not a zip" * 100)
        load_cifar10(d, download=False)

    def truncated_mnist(d):
        import gzip

        from convscope.features.data import datasets

        raw = d / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for stem in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ):
            (raw / f"{stem}.gz").write_bytes(gzip.compress(bytes(5000))[:50])
        datasets.load_mnist(d, download=False)

    def npz_wrong_shape(d):
        from convscope.features.data.datasets import load_cifar10

        np.savez(
            d / "cifar10.npz",
            x_train=np.zeros((4, 28, 28, 3), np.uint8),
            y_train=np.zeros(4, np.int64),
            x_test=np.zeros((2, 32, 32, 3), np.uint8),
            y_test=np.zeros(2, np.int64),
        )
        load_cifar10(d, download=False)

    def npz_bad_labels(d):
        from convscope.features.data.datasets import load_cifar10

        np.savez(
            d / "cifar10.npz",
            x_train=np.zeros((4, 32, 32, 3), np.uint8),
            y_train=np.full(4, 12),
            x_test=np.zeros((2, 32, 32, 3), np.uint8),
            y_test=np.zeros(2, np.int64),
        )
        load_cifar10(d, download=False)

    def cifar_folder_broken(d):
        from convscope.features.data.datasets import load_cifar10

        (d / "cifar-10-batches-py").mkdir()
        (d / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
        load_cifar10(d, download=False)

    def absent(d):
        from convscope.features.data.datasets import load_cifar10

        load_cifar10(d, download=False)

    def offline_mirror(d):
        from convscope.features.data.datasets import load_mnist

        load_mnist(d, download=True, mirror="http://127.0.0.1:9/")

    add(
        "data",
        "garbage cifar10.npz",
        "raises DatasetUnavailable: corrupt",
        call(garbage_npz, "DatasetUnavailable", "cifar10.npz is corrupt"),
    )
    add(
        "data",
        "MNIST .gz files cut short",
        "raises DatasetUnavailable: delete it",
        call(truncated_mnist, "DatasetUnavailable", "delete it and it is downloaded again"),
    )
    add(
        "data",
        "cifar10.npz with 28x28 images",
        "raises DatasetUnavailable: expected",
        call(npz_wrong_shape, "DatasetUnavailable", "expected uint8"),
    )
    add(
        "data",
        "cifar10.npz with label 12",
        "raises DatasetUnavailable: outside 0..9",
        call(npz_bad_labels, "DatasetUnavailable", "outside 0..9"),
    )
    add(
        "data",
        "cifar-10-batches-py with a broken batch",
        "raises DatasetUnavailable: delete",
        call(cifar_folder_broken, "DatasetUnavailable", "corrupt or incomplete|delete"),
    )
    add(
        "data",
        "no data, no download",
        "raises DatasetUnavailable: not found",
        call(absent, "DatasetUnavailable", "not found"),
    )
    add(
        "data",
        "MNIST from a mirror that refuses",
        "raises DatasetUnavailable: refused",
        call(offline_mirror, "DatasetUnavailable", "could not be downloaded|refused"),
    )
    add(
        "data",
        "--scene train --data-dir a file",
        "error: --data-dir|is not a folder",
        lambda d: (
            (d / "f").write_text("x"),
            cli(["--scene", "train", "--data-dir", "{d}/f"], "error: --data-dir|is not a folder", None)(d),
        )[1],
    )
    add(
        "data",
        "--data-dir a file (explorer)",
        "error: --data-dir|is not a folder",
        lambda d: (
            (d / "f").write_text("x"),
            cli(["--data-dir", "{d}/f"], "error: --data-dir|is not a folder", None)(d),
        )[1],
    )

    # checkpoints
    def ck_case(label, mutate, words, save=False):
        def fn(d):
            from convscope.models.checkpoint import load_checkpoint, save_checkpoint

            if save:
                import torch
                from convscope.models.revacnn import Arch, RevaCNN

                target = mutate(d)
                m = RevaCNN(Arch(in_channels=1, size=32, classes=10, widths=(2, 2, 2)))
                return save_checkpoint(target, m, torch.optim.SGD(m.parameters(), lr=0.1))
            manifest = _checkpoint(d)
            target = mutate(d, manifest)
            return load_checkpoint(target if isinstance(target, Path) else manifest)

        exc = "OSError" if words.startswith("cannot write") else "CheckpointError"
        add("checkpoints", label, f"raises {exc}: {words}", call(fn, exc, words, timeout=20))

    def edit(key, value):
        def m(d, manifest):
            doc = json.loads(manifest.read_text())
            doc[key] = value
            manifest.write_text(json.dumps(doc))

        return m

    def weights_file(d):
        return next(d.glob("ck.*.safetensors"))

    ck_case("manifest missing", lambda d, m: d / "nope.json", "not found")
    ck_case("manifest is a FIFO", lambda d, m: _fifo(d, "pipe.json"), "FIFO")
    ck_case("manifest is a folder", lambda d, m: (d / "dir.json").mkdir() or d / "dir.json", "folder")
    ck_case(
        "manifest is /dev/zero", lambda d, m: os.symlink("/dev/zero", d / "z.json") or d / "z.json", "device"
    )
    ck_case("manifest garbage", lambda d, m: m.write_text("{{{"), "not readable JSON")
    ck_case("manifest of another format", edit("format", "other"), "not a convscope checkpoint")
    ck_case("manifest version 99", edit("version", 99), "version")
    ck_case("weights_file ../escape", edit("weights_file", "../x.safetensors"), "bad weights_file")
    ck_case("bad architecture", edit("arch", {"widths": [-1]}), "architecture")
    ck_case("sha256 differs", edit("weights_sha256", "0" * 64), "sha256")
    ck_case(
        "tensor file truncated",
        lambda d, m: weights_file(d).write_bytes(weights_file(d).read_bytes()[:100]),
        "sha256",
    )
    ck_case(
        "tensor file is a FIFO",
        lambda d, m: (
            (weights_file(d).unlink(), os.mkfifo(d / json.loads(m.read_text())["weights_file"])) and None
        ),
        "FIFO",
    )
    ck_case("tensor file missing", lambda d, m: weights_file(d).unlink(), "unreadable")
    ck_case("save onto a FIFO", lambda d: _fifo(d, "p.json"), "not a regular file", save=True)
    ck_case(
        "save onto a folder",
        lambda d: (d / "f.json").mkdir() or d / "f.json",
        "not a regular file",
        save=True,
    )
    ck_case(
        "save under a file",
        lambda d: ((d / "file").write_text("x"), d / "file" / "ck")[1],
        "cannot make",
        save=True,
    )
    if UNSHARE:

        def ck_disk(ro: bool):
            def run(d: Path) -> str:
                code = (
                    "import torch, sys\nfrom convscope.models.checkpoint import save_checkpoint\n"
                    "from convscope.models.revacnn import Arch, RevaCNN\n"
                    "m = RevaCNN(Arch(in_channels=1, size=32, classes=10))\n"
                    f"try:\n    save_checkpoint('{d}/mnt/ck', m, torch.optim.SGD(m.parameters(), lr=0.1))\n"
                    "except OSError as e:\n    print('ERR', e); sys.exit(3)\n"
                )
                cmd = _ns(d / "mnt", "64k", 'printf old > "$M/ck.json"', ro, [PY, "-c", code])
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                out, _, listing = proc.stdout.partition("@@LS\n")
                observe(f"exit {proc.returncode}: {out.strip()}")
                want = "read-only file system" if ro else "the disk is full"
                if proc.returncode != 3 or want not in out:
                    return f"exit {proc.returncode}: {(out or proc.stderr).strip()[-120:]}"
                return "" if listing.split() == ["ck.json"] else f"files left: {listing.split()}"

            return run

        add(
            "checkpoints",
            "save on a read-only disk, old kept",
            "raises OSError: read-only file system",
            ck_disk(True),
        )
        add(
            "checkpoints", "save on a full disk, old kept", "raises OSError: the disk is full", ck_disk(False)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="leave out the cases that render or start a worker")
    p.add_argument("--only", nargs="*", help="areas to run (command line, outputs, config, ...)")
    p.add_argument("--markdown", metavar="OUT.md", help="also write the table as markdown")
    p.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    args = p.parse_args(argv)
    todo = [c for c in cases() if not (args.quick and c.heavy) and (not args.only or c.area in args.only)]

    def run(case: Case) -> Case:
        with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
            t0 = time.monotonic()
            _observed.text = ""
            try:
                case.problem = case.run(Path(tmp))
                case.passed = case.problem == ""
            except Skip as exc:
                case.problem, case.passed = f"skipped ({exc})", None
            except Exception as exc:  # noqa: BLE001 - a probe bug is a row too, not the end of the run
                case.problem, case.passed = f"probe failed: {type(exc).__name__}: {exc}"[:140], False
            case.seconds = time.monotonic() - t0
            # Temporary folders differ per run: the table shows them as D.
            case.seen = _observed.text.replace(os.path.realpath(tmp), "D").replace(tmp, "D")
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[case.passed]
        print(
            f"{mark} {case.area:13} {case.name[:60]:60} {case.seconds:5.1f} s {case.problem[:80]}", flush=True
        )
        return case

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        done = list(pool.map(run, todo))
    n_ok = sum(c.passed is True for c in done)
    n_fail = sum(c.passed is False for c in done)
    print(f"\n{len(done)} cases: {n_ok} as expected, {n_fail} not, {len(done) - n_ok - n_fail} skipped")
    if args.markdown:
        rows = [
            "| # | area | case | expected | seen | as expected |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for i, c in enumerate(done, 1):
            mark = {True: "yes", False: f"**no**: {c.problem}", None: c.problem}[c.passed]
            seen = (c.seen[:160] + "...") if len(c.seen) > 160 else c.seen
            cells = [str(i), c.area, c.name, c.expect, seen, mark]
            rows.append("| " + " | ".join(x.replace("|", "/").replace("`", "'") for x in cells) + " |")
        atomic_write(args.markdown, ("\n".join(rows) + "\n").encode())
    return 0 if n_fail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
