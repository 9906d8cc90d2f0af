"""Layer and filter edits mid-training, measured on real data: does the loss jump, does the run recover?

    python tools/bench_layer_edits.py --data-dir /work/shared/data [--datasets mnist cifar10] [--seeds 0 1]
                                      [--before 2000] [--after 2000] [--cases add0 add1 rm1 ...] [--json OUT]

Drives the training worker headless, exactly as the training scene does (TrainHandle, the scene's default
net 16-20-20 and settings: SGD lr 0.01, momentum 0.9, batch 4, weight decay 1e-4).  Per data set and seed it
trains `--before` steps, saves a checkpoint, and for every case loads that checkpoint, makes the edit with
the panel's defaults ("+ layer": 16 filters) and trains `--after` more steps.  "none" is the same run
without an edit, the yardstick for where the others end.

Columns (losses are cross-entropy; ln 10 = 2.30 is chance):
  held-out   mean loss on the first 1,000 held-out images just before the edit, right after it (no step
             yet) and `--after` steps later; acc: held-out accuracy before and at the end
  train      mean batch loss of the 50 steps before the edit and of the 50 steps after it; worst: the
             highest 100-step mean batch loss anywhere in the `--after` steps
  guard      divergence-guard pauses (each is resumed, as a user would)
  2x         the rule, for the loss right after the edit: held-out right after < 2x before and next-50 <
             2x before; every case must also end clear of chance (held-out accuracy >= 0.2 and loss <
             2.0 here).  "worst" is not part of it: compare it with the "none" row of the same seed (at
             batch 4 a 100-step stretch of a run without an edit reaches 2x the 50 steps before it too).

The worker's own clock, not this process, runs the steps; the tool only reads snapshots (every step's
batch loss arrives in their history rows), sends commands and asks for validation passes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from convscope.engine.files import atomic_write
from convscope.features.training.handle import TrainHandle

CASES = {  # name -> (command, kwargs, what the table says)
    "none": (None, {}, "no edit"),
    "add0": ("add_layer", {"position": 0, "width": 16}, "+ layer at 0"),
    "add1": ("add_layer", {"position": 1, "width": 16}, "+ layer at 1"),
    "add2": ("add_layer", {"position": 2, "width": 16}, "+ layer at 2"),
    "rm0": ("remove_layer", {"layer": 0}, "- layer conv1"),
    "rm1": ("remove_layer", {"layer": 1}, "- layer conv2"),
    "rm2": ("remove_layer", {"layer": 2}, "- layer conv3"),
    "addf0": ("add_filter", {"layer": 0}, "+ filter conv1"),
    "addf2": ("add_filter", {"layer": 2}, "+ filter conv3"),
    "rmf0": ("remove_filter", {"layer": 0, "filter": 0}, "- filter 0 conv1"),
    "rmf2": ("remove_filter", {"layer": 2, "filter": 0}, "- filter 0 conv3"),
}
TRAIN_WINDOW = 50  # steps averaged for the training loss just before and just after the edit
WORST_WINDOW = 100  # steps of the rolling mean whose maximum is "worst"
CHANCE_ACC, CHANCE_LOSS = 0.2, 2.0  # a case that ends at or under these is "stuck at chance"
TIMEOUT = 600.0  # seconds any one wait may take on a busy shared machine


class Run:
    """One worker, its batch-loss history by step, and the helpers that wait on it."""

    def __init__(self, handle: TrainHandle) -> None:
        self.h = handle
        self.losses: dict[int, float] = {}  # step -> batch loss, from the snapshots' history rows
        self.guard = 0  # divergence-guard pauses seen (and resumed)

    def _record(self, snap) -> None:
        for step, loss, _ in snap.history:
            self.losses[int(step)] = float(loss)

    def wait(self, pred):
        def seen(snap) -> bool:
            self._record(snap)
            return pred(snap)

        return self.h.wait_snapshot(seen, timeout=TIMEOUT)

    def do(self, name: str, **kwargs) -> int:
        """Send a command, wait for its answer (RuntimeError if refused); its id."""
        cmd = self.h.command(name, **kwargs)
        ok, text = self.h.wait_reply(cmd, timeout=TIMEOUT)
        if not ok:
            raise RuntimeError(f"{name} {kwargs} refused: {text}")
        return cmd

    def after(self, cmd: int, pred=None):
        """The first snapshot written after command `cmd` was handled (and for which `pred` holds)."""
        return self.wait(lambda s: s.stats["cmd"] >= cmd and (pred is None or pred(s)))

    def pause(self):
        return self.after(self.do("pause"), lambda s: s.paused)

    def validate(self) -> tuple[float, float, int]:
        """(held-out loss, accuracy, step) of a fresh validation pass on the paused worker."""
        snap = self.after(self.do("validate"))
        return snap.stats["val_loss"], snap.stats["val_acc"], snap.step

    def train_until(self, step: int):
        """Run to at least `step`; a guard pause is counted and resumed, as a user would."""
        while True:
            snap = self.after(self.do("resume"), lambda s: s.step >= step or s.paused or s.stats["ok"] == 0)
            if snap.step >= step:
                return self.pause()
            self.guard += 1
            self.wait(lambda s: s.paused)

    def mean_loss(self, first: int, last: int) -> float:
        vals = [self.losses[s] for s in range(first, last + 1) if s in self.losses]
        return float(np.mean(vals)) if vals else math.nan


def measure(dataset: str, data_dir: str, seed: int, before: int, after: int, cases: list[str]) -> list[dict]:
    handle = TrainHandle(
        dataset, data_dir, hyper={"seed": seed}, val_every=0, start_paused=True, download=False
    )
    rows = []
    try:
        if not handle.start(timeout=TIMEOUT):
            raise RuntimeError(f"the training worker did not start: {handle.error}")
        if handle.info.get("dataset") != dataset:
            raise RuntimeError(f"{dataset} not found in {data_dir}: {handle.info.get('note')}")
        run = Run(handle)
        base = run.train_until(before)
        s0 = base.step
        train_before = run.mean_loss(s0 - TRAIN_WINDOW + 1, s0)
        val_before, acc_before, _ = run.validate()
        with tempfile.TemporaryDirectory(prefix="convscope-edits-") as tmp:
            ckpt = str(Path(tmp) / "base.json")
            run.do("save", path=ckpt)
            for case in cases:
                name, kwargs, label = CASES[case]
                run.after(run.do("load", path=ckpt), lambda s: s.paused and s.step == s0)
                run.losses.clear()
                run.guard = 0
                t0 = time.perf_counter()
                if name is not None:
                    run.after(run.do(name, **kwargs))
                val_now, _, _ = run.validate()
                end = run.train_until(s0 + after)
                val_end, acc_end, _ = run.validate()
                means = [run.mean_loss(s, s + WORST_WINDOW - 1) for s in range(s0 + 1, end.step - 98, 10)]
                row = {
                    "dataset": dataset,
                    "seed": seed,
                    "case": case,
                    "edit": label,
                    "step": s0,
                    "widths": list(handle.info.get("widths", [])),
                    "val_before": val_before,
                    "val_right_after": val_now,
                    "val_end": val_end,
                    "acc_before": acc_before,
                    "acc_end": acc_end,
                    "train_before": train_before,
                    "train_next": run.mean_loss(s0 + 1, s0 + TRAIN_WINDOW),
                    "train_worst": float(np.nanmax(means)) if means else math.nan,
                    "clip_norm": end.stats["clip_norm"],
                    "guard": run.guard,
                    "end_step": end.step,
                    "seconds": time.perf_counter() - t0,
                }
                row["within_2x"] = bool(
                    row["val_right_after"] < 2 * val_before and row["train_next"] < 2 * train_before
                )
                row["clear_of_chance"] = bool(acc_end >= CHANCE_ACC and val_end < CHANCE_LOSS)
                rows.append(row)
                print(_line(row), flush=True)
    finally:
        handle.close()
    return rows


HEADER = (
    "| data | seed | edit | at step | held-out before / right after / +N "
    "| train before / next 50 / worst 100 | acc before / +N | guard | 2x |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def _line(r: dict) -> str:
    ok = "ok" if r["within_2x"] and r["clear_of_chance"] else ("AT CHANCE" if r["within_2x"] else "BROKEN")
    return (
        f"| {r['dataset']} | {r['seed']} | {r['edit']} | {r['step']} "
        f"| {r['val_before']:.3f} / {r['val_right_after']:.3f} / {r['val_end']:.3f} "
        f"| {r['train_before']:.3f} / {r['train_next']:.3f} / {r['train_worst']:.3f} "
        f"| {r['acc_before']:.3f} / {r['acc_end']:.3f} | {r['guard']} | {ok} |"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="holds MNIST/raw/ and cifar10/ (no download)")
    ap.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"], choices=["mnist", "cifar10"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--before", type=int, default=2000, help="steps trained before the edit")
    ap.add_argument("--after", type=int, default=2000, help="steps trained after it")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--json", type=Path, help="write every row here as well")
    args = ap.parse_args(argv)
    if not Path(args.data_dir).is_dir() or args.before < TRAIN_WINDOW or args.after < WORST_WINDOW:
        print(
            f"convscope: error: --data-dir must be a folder, --before >= {TRAIN_WINDOW} and "
            f"--after >= {WORST_WINDOW} steps",
            file=sys.stderr,
        )
        return 2
    rows = []
    print(HEADER, flush=True)
    try:
        for dataset in args.datasets:
            for seed in args.seeds:
                rows += measure(dataset, args.data_dir, seed, args.before, args.after, args.cases)
    except RuntimeError as exc:
        print(f"convscope: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        atomic_write(args.json, (json.dumps(rows, indent=1) + "\n").encode())
    bad = [r for r in rows if not (r["within_2x"] and r["clear_of_chance"])]
    print(f"{len(rows) - len(bad)} of {len(rows)} cases within 2x and clear of chance")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
