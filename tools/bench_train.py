"""Training throughput: a bare torch loop vs Trainer.step (features/training/trainer.py), in images/s.

Both train the paper's 16-20-20 RevaCNN with SGD (momentum 0.9) on the built-in digits (3x32x32), one
thread by default.  The bare loop is what one would write by hand: images converted to float once, then
index, forward, cross-entropy, backward, step.  Trainer.step adds what the live scene needs: per-batch uint8
conversion, the last-good-weights copy, the divergence checks, the per-filter gradient statistics and the
smoothed chart values.  The difference is that bookkeeping's cost.

The machine is shared and its speed drifts by 10 % within seconds, so the two loops take turns in short
windows (`--window` s, `--rounds` of each) and the figure is the median of the per-round ratios.  The
process tunes glibc's allocator as the training worker does (features/training/allocator.py), so both loops
run as they would there.

`BareProcess` runs the bare loop in a process of its own, started like the training worker (spawn, one
torch thread, the same allocator settings): tools/bench_training.py measures the worker against it.

Run: python tools/bench_train.py [--window 0.5] [--rounds 12] [--batch-sizes 4 32 128] [--threads 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from convscope.features.data.datasets import Dataset, builtin_digits, to_input  # noqa: E402
from convscope.features.training.allocator import tune_for_training  # noqa: E402
from convscope.features.training.trainer import Hyper, Trainer, TrainerConfig  # noqa: E402
from convscope.models.revacnn import Arch, RevaCNN  # noqa: E402


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


def bare_step(data: Dataset, batch: int, seed: int = 0):
    """One step of the hand-written loop per call (a fresh model and optimizer behind it)."""
    model = RevaCNN(Arch(data.channels, data.size), generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x_all, y_all = to_input(data.x_train), data.y_train
    g = torch.Generator().manual_seed(seed)

    def step() -> None:
        idx = torch.randint(0, len(x_all), (batch,), generator=g)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x_all[idx]), y_all[idx]).backward()
        opt.step()

    return step


def bare_images_per_s(data: Dataset, batch: int, seconds: float = 2.0, warmup: int = 3) -> float:
    return _timed(bare_step(data, batch), batch, seconds, warmup)


def trainer_images_per_s(data: Dataset, batch: int, seconds: float = 2.0, warmup: int = 3) -> float:
    trainer = Trainer(data, Hyper(batch_size=batch), TrainerConfig(val_every=0))
    return _timed(trainer.step, batch, seconds, warmup)


def bench(batch_sizes=(4, 32, 128), window: float = 0.5, rounds: int = 12, threads: int = 1) -> list[dict]:
    """Both loops in turns at each batch size; one row per batch size with medians and the ratio."""
    torch.set_num_threads(threads)
    tune_for_training()
    data = builtin_digits(channels=3)
    rows = []
    for b in batch_sizes:
        bare = bare_step(data, b)
        trainer = Trainer(data, Hyper(batch_size=b), TrainerConfig(val_every=0))
        for _ in range(2):  # warm both (allocator, oneDNN's primitive cache)
            _timed(bare, b, window / 2, 2)
            _timed(trainer.step, b, window / 2, 2)
        pairs = [(_timed(bare, b, window, 0), _timed(trainer.step, b, window, 0)) for _ in range(rounds)]
        a, t = np.array(pairs).T
        ratio = t / a
        rows.append(
            {
                "batch": b,
                "bare": float(np.median(a)),
                "trainer": float(np.median(t)),
                "ratio_pct": float(100 * np.median(ratio)),
                "ratio_iqr_pct": [
                    float(100 * np.percentile(ratio, 25)),
                    float(100 * np.percentile(ratio, 75)),
                ],
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'batch':>5}  {'bare torch img/s':>16}  {'Trainer.step img/s':>18}  {'Trainer/bare':>12}"
    lines = [f"{head}  {'IQR':>11}"]
    for r in rows:
        lo, hi = r["ratio_iqr_pct"]
        lines.append(
            f"{r['batch']:>5}  {r['bare']:>16.0f}  {r['trainer']:>18.0f}  {r['ratio_pct']:>11.1f}%"
            f"  {lo:>4.0f}-{hi:.0f} %"
        )
    return "\n".join(lines)


# -- the bare loop in a process of its own ------------------------------------------------------------------
def _bare_main(conn, threads: int) -> None:
    tune_for_training()
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    data = builtin_digits(channels=3)
    steps: dict[int, object] = {}
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        batch, seconds = msg
        if batch not in steps:
            steps[batch] = bare_step(data, batch)
            _timed(steps[batch], batch, 0.5, 2)  # warm it like a running worker is warm
        conn.send(_timed(steps[batch], batch, seconds, 0))


class BareProcess:
    """The bare loop in a spawned process (one torch thread, the worker's allocator settings)."""

    def __init__(self, threads: int = 1) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_bare_main, args=(child, threads), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(120) or self.conn.recv() != "ready":
            self.close()
            raise RuntimeError("the bare-loop process did not start")

    def images_per_s(self, batch: int, seconds: float) -> float:
        self.conn.send((batch, seconds))
        return float(self.conn.recv())

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=float, default=0.5, help="seconds per turn of each loop")
    ap.add_argument("--rounds", type=int, default=12, help="turns of each loop per batch size")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 32, 128])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args(argv)
    rows = bench(tuple(args.batch_sizes), args.window, args.rounds, args.threads)
    print(
        f"RevaCNN 16-20-20, SGD momentum 0.9, built-in digits 3x32x32, {args.threads} thread(s), "
        f"torch {torch.__version__}; {args.rounds} turns of {args.window:g} s each, medians"
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
