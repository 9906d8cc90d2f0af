"""Checkpoints (models/checkpoint.py, Trainer.save / Trainer.load): exact round trips, exact resumption,
atomic saves, and clear errors for bad files that leave a running session as it was.

References: outputs of the saved model (bit-for-bit), the optimizer state by parameter name, and a run that
was never interrupted (a resumed run must produce the same losses and weights, bit-for-bit).
Run: python -m pytest tests/test_checkpoint.py -q
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import convscope.models.checkpoint as ckpt_mod
import pytest
import torch
import torch.nn.functional as F
from convscope.features.data.datasets import Dataset, builtin_digits
from convscope.features.training.trainer import Hyper, Trainer, TrainerConfig
from convscope.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    optimizer_state_by_name,
    save_checkpoint,
)
from convscope.models.revacnn import Arch, RevaCNN
from convscope.models.surgery import add_filter
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

torch.set_num_threads(1)

SMALL = TrainerConfig(widths=(4, 5), val_every=0)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return builtin_digits(channels=3)


def _equal(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert torch.equal(got, want), f"{what}: expected {want.flatten()[:5]}..., got {got.flatten()[:5]}..."


def _edited_adam_model() -> tuple[RevaCNN, torch.optim.Optimizer, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    model = RevaCNN(Arch(3, 32, (3, 4)), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(6, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    for i in range(4):
        if i == 2:
            add_filter(model, opt, 0, generator=g)  # an architecture that no default build has
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt, x


def test_round_trip_reproduces_outputs_and_optimizer_state(tmp_path: Path) -> None:
    model, opt, x = _edited_adam_model()
    meta = {"note": "hello", "numbers": [1, 2.5]}
    path = save_checkpoint(tmp_path / "run", model, opt, meta=meta, extra={"jitter/0": torch.arange(4.0)})
    assert path == tmp_path / "run.json" and path.is_file()
    ck = load_checkpoint(tmp_path / "run.json")
    assert ck.arch.widths == (4, 4) and ck.optimizer_name == "adam" and ck.meta == meta
    loaded = ck.build_model()
    with torch.no_grad():
        _equal(loaded(x), model(x), "outputs of the loaded model")
    want_state = optimizer_state_by_name(model, opt)
    assert ck.optimizer_state.keys() == want_state.keys()
    for name, entries in want_state.items():
        for key, v in entries.items():
            _equal(ck.optimizer_state[name][key], v, f"optimizer state {name}/{key}")
    _equal(ck.extra["jitter/0"], torch.arange(4.0), "extra tensor")
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adadelta"])
def test_resumed_run_continues_exactly(digits: Dataset, tmp_path: Path, optimizer: str) -> None:
    lr = {"sgd": 0.02, "adam": 1e-3, "adadelta": 1.0}[optimizer]
    t = Trainer(digits, Hyper(batch_size=8, optimizer=optimizer, lr=lr, seed=5), SMALL)
    for _ in range(3):
        t.step()
    t.add_filter(1)
    t.step()
    t.save(tmp_path / "run")
    straight = [t.step() for _ in range(4)]

    other = Trainer(digits, Hyper(batch_size=32, seed=99), TrainerConfig(widths=(2,), val_every=0))
    other.load(tmp_path / "run.json")
    assert other.paused and other.step_count == 4 and other.hyper == t.hyper, other.message
    other.resume()
    resumed = [other.step() for _ in range(4)]
    for key in ("loss", "loss_smooth", "acc_smooth", "step"):
        got, want = [s[key] for s in resumed], [s[key] for s in straight]
        assert got == want, f"{optimizer} {key}: expected {want}, got {got}"
    for (name, a), b in zip(t.model.state_dict().items(), other.model.state_dict().values(), strict=True):
        _equal(b, a, f"{optimizer}: {name} after 4 resumed steps")
    assert [m.tolist() for m in other.grad_magnitudes()] == [m.tolist() for m in t.grad_magnitudes()]


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt, x = _edited_adam_model()
    save_checkpoint(tmp_path / "run", model, opt)
    with torch.no_grad():
        first = model(x)
        model.head.bias.add_(1.0)
    real_replace = ckpt_mod.os.replace

    def crash_on_manifest(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("disk full (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "replace", crash_on_manifest)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path / "run", model, opt)
    monkeypatch.undo()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and not [f for f in files if f.endswith(".tmp")], f"left behind: {files}"
    with torch.no_grad():
        _equal(load_checkpoint(tmp_path / "run.json").build_model()(x), first, "the previous checkpoint")
    save_checkpoint(tmp_path / "run", model, opt)  # a good save replaces it and removes the old tensors
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    with torch.no_grad():
        _equal(load_checkpoint(tmp_path / "run.json").build_model()(x), model(x), "the new checkpoint")
    with pytest.raises(ValueError):  # meta that is not JSON fails before anything is written
        save_checkpoint(tmp_path / "other", model, opt, meta={"x": math.nan})
    assert not list(tmp_path.glob("other*"))


# -- bad files -----------------------------------------------------------------------------------------------
def _rewrite(manifest: Path, tensors=None, doc=None, raw: bytes | None = None) -> None:
    """Change a checkpoint and keep its sha256 consistent (so the check under test is the one that fires)."""
    d = json.loads(manifest.read_text())
    wpath = manifest.parent / d["weights_file"]
    if tensors is not None or raw is not None:
        blob = raw if raw is not None else st_save(tensors(st_load(wpath.read_bytes())))
        wpath.write_bytes(blob)
        d["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    if doc is not None:
        doc(d)
    manifest.write_text(json.dumps(d))


def _set(d: dict, key: str, value) -> None:
    d[key] = value


def _nan_head(t: dict) -> dict:
    t["model/head.weight"][0, 0] = math.nan
    return t


def _short_moment(t: dict) -> dict:
    t["optim/head.weight/exp_avg"] = t["optim/head.weight/exp_avg"][:, :3].contiguous()
    return t


BREAKAGES = {
    "missing manifest": (lambda m: m.unlink(), "not found"),
    "garbage manifest": (lambda m: m.write_text("{not json"), "not readable JSON"),
    "wrong format": (lambda m: _rewrite(m, doc=lambda d: _set(d, "format", "other")), "not a convscope"),
    "newer version": (lambda m: _rewrite(m, doc=lambda d: _set(d, "version", 99)), "version 99"),
    "arch says 21 filters": (
        lambda m: _rewrite(m, doc=lambda d: d["arch"]["widths"].__setitem__(1, 21)),
        "needs float32",
    ),
    "arch lacks classes": (lambda m: _rewrite(m, doc=lambda d: d["arch"].pop("classes")), "bad architecture"),
    "truncated tensors": (
        lambda m: (m.parent / json.loads(m.read_text())["weights_file"]).write_bytes(b"\x00" * 10),
        "corrupt",
    ),
    "tensors deleted": (
        lambda m: (m.parent / json.loads(m.read_text())["weights_file"]).unlink(),
        "unreadable",
    ),
    "path in weights_file": (
        lambda m: _rewrite(m, doc=lambda d: _set(d, "weights_file", "../x.safetensors")),
        "bad weights_file",
    ),
    "not safetensors": (lambda m: _rewrite(m, raw=b"hello, not safetensors"), "not valid safetensors"),
    "NaN weight": (lambda m: _rewrite(m, tensors=_nan_head), "NaN"),
    "missing tensor": (
        lambda m: _rewrite(m, tensors=lambda t: {k: v for k, v in t.items() if "bias" not in k}),
        "missing",
    ),
    "optimizer state shape": (lambda m: _rewrite(m, tensors=_short_moment), "exp_avg has shape"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_bad_checkpoint_raises_clear_error(tmp_path: Path, breakage: str) -> None:
    model, opt, _ = _edited_adam_model()
    manifest = save_checkpoint(tmp_path / "run", model, opt)
    breaker, words = BREAKAGES[breakage]
    breaker(manifest)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(manifest)
    msg = str(err.value)
    assert words in msg and str(manifest) in msg, f"{breakage}: expected {words!r} and the path, got {msg!r}"


def test_bad_checkpoint_leaves_the_live_session_untouched(digits: Dataset, tmp_path: Path) -> None:
    t = Trainer(digits, Hyper(batch_size=8, optimizer="adam", lr=1e-3), SMALL)
    for _ in range(2):
        t.step()
    manifest = t.save(tmp_path / "good")
    _rewrite(manifest, tensors=_short_moment)
    grey = Trainer(builtin_digits(channels=1), Hyper(batch_size=8), SMALL)
    wrong_input = grey.save(tmp_path / "grey")

    model, opt = t.model, t.optimizer
    weights = {k: v.clone() for k, v in t.model.state_dict().items()}
    state = optimizer_state_by_name(t.model, t.optimizer)
    before = (t.step_count, t.epoch, t.offset, t.hyper, t.paused)
    for bad, words in (
        (manifest, "exp_avg"),
        (wrong_input, "1x32x32"),
        (tmp_path / "absent.json", "not found"),
    ):
        with pytest.raises(CheckpointError, match=words):
            t.load(bad)
        assert t.model is model and t.optimizer is opt, f"{bad.name}: the live model was replaced"
        assert (t.step_count, t.epoch, t.offset, t.hyper, t.paused) == before
        for k, v in t.model.state_dict().items():
            _equal(v, weights[k], f"{bad.name}: {k}")
        for name, entries in state.items():
            for key, v in entries.items():
                _equal(t.optimizer.state[dict(t.model.named_parameters())[name]][key], v, f"{name}/{key}")
    assert t.step()["ok"]


def test_a_run_saved_after_a_layer_edit_clips_and_warms_up_after_load(
    digits: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gradient clip and the lr warm-up a layer edit started are part of the run: loaded into a session
    that never edited (and does not clip from the start), every step is clipped to the saved norm and the
    run continues bit for bit.  The norm 0.02 is smaller than every gradient here, so a step that skipped
    the clip would differ."""
    edited = replace(SMALL, clip_from_start=False, edit_clip=0.02, warmup_steps=20, settle_steps=2)
    t = Trainer(digits, Hyper(batch_size=8, lr=0.02, seed=3), edited)
    for _ in range(3):
        t.step()
    t.add_layer(1, 4)
    t.step()
    t.save(tmp_path / "run")
    saved = (t.clip_norm, t.warm_left, t.optimizer.param_groups[0]["lr"])
    straight = [t.step() for _ in range(4)]

    other = Trainer(digits, Hyper(batch_size=32, seed=99), replace(SMALL, clip_from_start=False))
    assert other.clip_norm == 0.0
    clipped: list[tuple[float, float, float]] = []  # (clip norm, gradient norm before, after)
    real = Trainer._clip_gradients

    def spy(self: Trainer) -> float:
        total = real(self)
        after = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self._params])))
        clipped.append((self.clip_norm, total, after))
        return total

    monkeypatch.setattr(Trainer, "_clip_gradients", spy)
    other.load(tmp_path / "run.json")
    assert (other.clip_norm, other.warm_left) == saved[:2] == (0.02, 19), (other.clip_norm, other.warm_left)
    other.resume()
    resumed = [other.step() for _ in range(4)]
    assert len(clipped) == 4 and all(m == 0.02 and g > 0.02 and a <= 0.02 for m, g, a in clipped), clipped
    assert other.optimizer.param_groups[0]["lr"] > saved[2], "the warm-up goes on where it stopped"
    for key in ("loss", "loss_smooth", "step"):
        got, want = [s[key] for s in resumed], [s[key] for s in straight]
        assert got == want, f"{key}: expected {want}, got {got}"
    for (name, a), b in zip(t.model.state_dict().items(), other.model.state_dict().values(), strict=True):
        _equal(b, a, f"{name} after 4 resumed steps")


def test_a_checkpoint_without_edit_state_loads_as_before(digits: Dataset, tmp_path: Path) -> None:
    """A checkpoint from before the edit state was saved loads as it did then: no clip, no warm-up.  A
    malformed edit state is refused with the file named, and the session is as it was."""
    t = Trainer(digits, Hyper(batch_size=8, seed=1), SMALL)
    t.step()
    t.add_layer(0, 3)
    manifest = t.save(tmp_path / "run")
    assert json.loads(manifest.read_text())["meta"]["run"]["edit"]["clip_norm"] == 1.0
    _rewrite(manifest, doc=lambda d: d["meta"]["run"].pop("edit"))
    fresh = Trainer(digits, Hyper(batch_size=8), SMALL)
    assert fresh.clip_norm == 1.0, "a new run clips from the start"
    fresh.load(manifest)
    assert (fresh.clip_norm, fresh.warm_left, fresh.step_count) == (0.0, 0, 1), fresh.message
    for bad in ({"clip_norm": -1}, {"clip_norm": "lots"}, {"warm_left": -5}, "yes"):
        _rewrite(manifest, doc=lambda d, bad=bad: d["meta"]["run"].__setitem__("edit", bad))
        model = fresh.model
        with pytest.raises(CheckpointError, match="edit state|bad run state") as err:
            fresh.load(manifest)
        assert str(manifest) in str(err.value) and fresh.model is model and fresh.clip_norm == 0.0
