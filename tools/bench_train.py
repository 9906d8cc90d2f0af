"""Training throughput: a bare torch loop vs Trainer.step (engine/worker/training.py), in images/s.

Both train the paper's 16-20-20 RevaCNN with SGD (momentum 0.9) on the built-in digits (3x32x32), one
thread by default.  The bare loop is what one would write by hand: images converted to float once, then
index, forward, cross-entropy, backward, step.  Trainer.step adds what the live scene needs: per-batch uint8
conversion, the last-good-weights copy, the NaN/inf checks, the per-filter gradient statistics and the
smoothed chart values.  The difference is that bookkeeping's cost.

Run: python tools/bench_train.py [--seconds 2] [--batch-sizes 4 32 128] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine.worker.datasets import Dataset, builtin_digits, to_input  # noqa: E402
from engine.worker.training import Hyper, Trainer, TrainerConfig  # noqa: E402
from models.revacnn import Arch, RevaCNN  # noqa: E402


def _timed(step, batch: int, seconds: float, warmup: int) -> float:
    for _ in range(warmup):
        step()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= 3:
            return n * batch / dt


def bare_images_per_s(data: Dataset, batch: int, seconds: float = 2.0, warmup: int = 3) -> float:
    model = RevaCNN(Arch(data.channels, data.size), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x_all, y_all = to_input(data.x_train), data.y_train
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, len(x_all), (batch,), generator=g)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x_all[idx]), y_all[idx]).backward()
        opt.step()

    return _timed(step, batch, seconds, warmup)


def trainer_images_per_s(data: Dataset, batch: int, seconds: float = 2.0, warmup: int = 3) -> float:
    trainer = Trainer(data, Hyper(batch_size=batch), TrainerConfig(val_every=0))
    return _timed(trainer.step, batch, seconds, warmup)


def bench(batch_sizes=(4, 32, 128), seconds: float = 2.0, threads: int = 1) -> list[dict]:
    """Measure both loops at each batch size; returns one row per batch size."""
    torch.set_num_threads(threads)
    data = builtin_digits(channels=3)
    rows = []
    for b in batch_sizes:
        bare = bare_images_per_s(data, b, seconds)
        trainer = trainer_images_per_s(data, b, seconds)
        rows.append(
            {"batch": b, "bare": bare, "trainer": trainer, "overhead_pct": 100 * (bare / trainer - 1)}
        )
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'batch':>5}  {'bare torch img/s':>16}  {'Trainer.step img/s':>18}  {'overhead':>8}"]
    for r in rows:
        lines.append(
            f"{r['batch']:>5}  {r['bare']:>16.0f}  {r['trainer']:>18.0f}  {r['overhead_pct']:>7.1f}%"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per loop and batch size")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 32, 128])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args(argv)
    rows = bench(tuple(args.batch_sizes), args.seconds, args.threads)
    print(
        f"RevaCNN 16-20-20, SGD momentum 0.9, built-in digits 3x32x32, "
        f"{args.threads} thread(s), torch {torch.__version__}"
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
