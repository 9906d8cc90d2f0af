"""The training loop of the live-training scene, as plain methods a worker process can drive.

`Trainer` owns one RevaCNN, its optimizer, the data and the run state: step counters, the batch order,
smoothed chart values, the per-filter statistics the scene draws, the last good weights, pause state and
the message for the user.  One call to `step()` is one minibatch; the worker calls `tick()` in its loop
(a step unless paused), forwards the returned stats dict, and calls the rest in answer to commands:

    pause() / resume() / single_step() / reset(seed)      run control
    set_hyper(lr=..., batch_size=..., optimizer=...)      validated now, applied at the start of the next step
    add_filter / remove_filter / add_layer / remove_layer steering, through models/surgery.py
    grad_magnitudes()                                     jitter: smoothed mean |dL/dw| per filter coefficient
    monitor()                                             paths: activation-map sums for the monitored image
    validate() / save(path) / load(path)

Hyperparameters and optimizers.  lr and weight_decay apply to every optimizer; `momentum` is SGD's (Adam
keeps betas (0.9, 0.999), Adadelta rho 0.95 and eps 1e-6; Adadelta's customary lr is 1.0).  Switching the
optimizer rebuilds it and carries over the state that has a meaning in the new one:
    Adam -> SGD        momentum_buffer = bias-corrected exp_avg / (1 - momentum)  (SGD's buffer sums g/(1-mu))
    Adam -> Adadelta   square_avg = bias-corrected exp_avg_sq; acc_delta starts at 0
    Adadelta -> Adam   exp_avg_sq = square_avg, exp_avg = 0, step = steps trained so far (bias correction then
                       over-, never under-estimates the second moment: first steps are small, not large)
    SGD -> Adam / Adadelta, Adadelta -> SGD: fresh state.  A first moment without a second moment would make
                       Adam's first updates huge, and Adadelta's averages have no SGD counterpart.

Divergence guard (guard.py).  A NaN or inf loss (or one above `max_loss`), or NaN/inf weights,
restores good weights with their optimizer state, step counter and batch position, pauses, and sets
`message`; nothing raises.  Weights broken by an update show in the next step's loss (a NaN or inf weight
makes it NaN or inf); a scan of the weights runs before each rolling copy, so no copy holds bad ones, and
whenever the trainer comes to rest (single_step, pause, save), where no next step would tell.  Which
weights: those from before the last hyperparameter change when the blow-up comes within `suspect_steps` of
it (the change is the suspect: weights trained under an absurd learning rate can be finite yet ruined),
else a copy taken at least `good_every` steps before the failure.
The message names the step restored and why; reset() or a checkpoint goes further back.

Determinism.  A run starts from `hyper.seed` (kept as `run_seed`; a changed seed waits for reset()): the
initial weights, the batch order (epoch e is a permutation drawn from (run_seed, e)) and the weights drawn by
surgery ((run_seed, edits so far)) all follow from it, so a run resumed from a checkpoint continues bit for
bit.  `reset()` rebuilds the *current* architecture from the seed (so an edited '20-20-21' net can be compared
with the same net trained from scratch, as in the paper's section 4.2).

Layer edits re-fit the linear head on the first `refit_images` training images (models/surgery.py explains
why), train the layers from the edit on for `settle_steps` towards the predictions from before it, and ramp
the lr up again over `warmup_steps`.  Each step's gradient norm is clipped to `edit_clip` from the first
step (`clip_from_start`) or from a layer edit on, until a larger lr is set by hand; a blow-up that brings
back the settings from before brings back the clip too.  A checkpoint keeps the clip, the warm-up left and
the step of the edit, so a loaded run trains on as the saved one would have; docs/BENCHMARKS.md ("Layer
edits") has the losses around each edit on MNIST and CIFAR-10.

Stats dict of step(): step, epoch (fractional), batch_size, lr, optimizer, loss, loss_smooth, acc (this
batch), acc_smooth, images_per_s (smoothed, validation excluded), val_acc / val_loss / val_step (latest
pass, None before the first), ok (False when the guard fired), paused, message.

Torch-side only: imported by the worker process and the tools, never by the render process.

Length: one class, because every method reads and changes the same run state (model, optimizer,
counters, guard copies, pending settings); surgery and checkpoints live in models/, the guard in guard.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from convscope.engine.graph.spec import NetSpec
from convscope.features.data.datasets import Dataset, to_input
from convscope.features.training.guard import DivergenceGuard
from convscope.models import surgery
from convscope.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_optimizer_state_by_name,
    save_checkpoint,
)
from convscope.models.revacnn import Arch, RevaCNN

OPTIMIZERS = ("sgd", "adam", "adadelta")
ADAM_BETAS = (0.9, 0.999)
ADADELTA_RHO = 0.95
ADADELTA_EPS = 1e-6
MAX_LR = 10.0
MAX_BATCH = 4096
_SEED_MIX = 1_000_003  # spreads (seed, counter) pairs over generator seeds
JITTER_IMAGES = 16  # TrainerConfig.jitter_every=0: a jitter sample at least every this many images
NO_EDIT = -(10**9)  # Trainer._edit_step before any layer edit: never "soon after" one


@dataclass(frozen=True)
class Hyper:
    """What the user may change while training runs; a bad value raises ValueError naming the field."""

    lr: float = 0.01  # step size, 0 < lr <= 10
    momentum: float = 0.9  # SGD momentum, 0 <= momentum < 1 (unused by Adam and Adadelta)
    batch_size: int = 4  # images per step, 1..4096 (the paper's default is 4; clipped to the training set)
    weight_decay: float = 1e-4  # L2 penalty, 0..1 (ConvNetJS's CIFAR-10 demo uses 1e-4)
    optimizer: str = "sgd"  # "sgd" (with momentum), "adam" or "adadelta"
    seed: int = 0  # initial weights and batch order; a changed seed takes effect at reset()

    def __post_init__(self) -> None:
        def number(name: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> None:
            v = getattr(self, name)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            if not ok:
                rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
                raise ValueError(f"{name} must be a number in {rng}, got {v!r}")
            object.__setattr__(self, name, float(v))

        number("lr", 0.0, MAX_LR, True, False)
        number("momentum", 0.0, 1.0, False, True)
        number("weight_decay", 0.0, 1.0, False, False)
        for name, hi in (("batch_size", MAX_BATCH), ("seed", 2**63 - 1)):
            v = getattr(self, name)
            lo = 1 if name == "batch_size" else 0
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainerConfig:
    """Set once per session (the user does not change these live): start architecture, measuring, guards."""

    widths: tuple[int, ...] = (16, 20, 20)  # conv filters per layer at start (the paper's 16-20-20 model)
    val_every: int = 500  # steps between validation passes; 0 = only when validate() is called
    val_limit: int = 1000  # held-out images per validation pass (the first ones: the same subset each time)
    val_batch: int = 500  # images per forward pass while validating (bounds memory)
    jitter_beta: float = 0.9  # EMA factor of the per-filter gradient magnitudes (~10-sample memory)
    # Steps between jitter samples; 0: one sample per JITTER_IMAGES images (every step from batch 16 up,
    # every 4th at batch 4: a 4-image step is ~3 ms, and sampling costs it ~2 %)
    jitter_every: int = 0
    chart_beta: float = 0.98  # EMA factor of the smoothed loss and training accuracy (~50-step memory)
    rate_beta: float = 0.9  # EMA factor of images/s
    monitor_index: int = 0  # held-out image whose activations drive the paths
    max_loss: float = 1e4  # a batch loss above this counts as divergence, like NaN (sane 10-class CE: < 20)
    refit_images: int = 1024  # training images the head is re-fitted on after a layer edit (0: none)
    # ... and then the layers from the edit on are trained for this many steps towards the net's
    # predictions from before the edit on those images (surgery.distill; 0: not).  On MNIST an inserted
    # layer's pooling left the held-out loss at 2-4x its value with the head re-fit alone; 50 steps (~1 s
    # on one core) take back about half of the rise.
    settle_steps: int = 50
    settle_lr: float = 1e-3  # Adam's step size for those steps (3e-3 took a trained net to chance)
    settle_batch: int = 128  # calibration images per step of them
    # The head re-fit's pull towards the block-rule weights after "- layer" (surgery.refit_head's ridge;
    # "+ layer" keeps its 0.01).  Without a conv layer's pool the head reads 4x the inputs, more than the
    # 1,024 images pin down: at 0.01 its largest weight grew 75x and the run lurched later (MNIST and
    # CIFAR-10 "- layer conv1", 2 seeds each: peak held-out loss in the next 2,000 steps 0.86 / 0.86 /
    # 2.22 / 2.18; at 1.0: 0.64 / 0.51 / 1.98 / 1.96, as low right after the edit).
    remove_ridge: float = 1.0
    warmup_steps: int = 1000  # after a layer edit the lr ramps from a tenth to its value over these steps
    # From a layer edit on (until Reset, or a larger lr set by hand) each step's gradient norm is clipped
    # to this (0: never).  The network after "+ layer" is sharper than the one trained so far: unclipped,
    # a run at the default SGD settings drifted to chance ~1000 steps after "+ layer" at 1.
    edit_clip: float = 1.0
    # ... and from the first step (until a larger lr is set by hand): at the default SGD settings on
    # CIFAR-10 the unclipped net's conv3 went dead within 200 steps (6 % of its units active) and the
    # loss sat at chance for 12,000 steps (seed 0); clipped, it reached 1.7 / 41 % in 4,000.
    clip_from_start: bool = True
    good_every: int = 16  # steps between copies of the good weights (the divergence guard's rolling copy)
    suspect_steps: int = (
        500  # a blow-up this soon after a hyperparameter change restores the weights before it
    )
    device: str = "cpu"  # torch device of the model and the batches


def _training_settings(h: Hyper) -> dict:
    """What changes how the next updates go (the divergence guard watches these; the seed waits for reset)."""
    return {k: v for k, v in h.to_dict().items() if k != "seed"}


def make_optimizer(name: str, params, hyper: Hyper) -> torch.optim.Optimizer:
    """A fresh optimizer of kind `name` over `params` with `hyper`'s settings."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=hyper.lr, momentum=hyper.momentum, weight_decay=hyper.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=hyper.lr, betas=ADAM_BETAS, weight_decay=hyper.weight_decay)
    if name == "adadelta":
        return torch.optim.Adadelta(
            params, lr=hyper.lr, rho=ADADELTA_RHO, eps=ADADELTA_EPS, weight_decay=hyper.weight_decay
        )
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def convert_optimizer(
    old: torch.optim.Optimizer, old_name: str, hyper: Hyper, model: RevaCNN, steps: int
) -> torch.optim.Optimizer:
    """A `hyper.optimizer` over model's parameters, `old`'s state mapped as the module docstring says."""
    new = make_optimizer(hyper.optimizer, model.parameters(), hyper)
    b1, b2 = ADAM_BETAS
    for p in model.parameters():
        st = old.state.get(p) or {}
        if old_name == hyper.optimizer:
            new.state[p] = {k: v.clone() if torch.is_tensor(v) else v for k, v in st.items()}
        elif old_name == "adam" and "exp_avg" in st:
            t = float(st["step"])
            if hyper.optimizer == "sgd" and hyper.momentum > 0:
                new.state[p] = {"momentum_buffer": st["exp_avg"] / (1 - b1**t) / (1 - hyper.momentum)}
            elif hyper.optimizer == "adadelta":
                new.state[p] = {
                    "step": torch.tensor(0.0),
                    "square_avg": st["exp_avg_sq"] / (1 - b2**t),
                    "acc_delta": torch.zeros_like(p),
                }
        elif old_name == "adadelta" and hyper.optimizer == "adam" and "square_avg" in st:
            new.state[p] = {
                "step": torch.tensor(float(max(steps, 1))),
                "exp_avg": torch.zeros_like(p),
                "exp_avg_sq": st["square_avg"].clone(),
            }
    return new


def top_half(values: np.ndarray) -> np.ndarray:
    """Mask of the ceil(n/2) largest values (ties by index): the paths the paper draws (its top 50%)."""
    order = np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")
    mask = np.zeros(len(order), dtype=bool)
    mask[order[: (len(order) + 1) // 2]] = True
    return mask


class _Smooth:
    """Bias-corrected exponential moving average (starts at the first value, not at 0)."""

    def __init__(self, beta: float, value: float = 0.0, weight: float = 0.0) -> None:
        self.beta, self.value, self.weight = beta, value, weight

    def update(self, x: float) -> float:
        self.value = self.beta * self.value + (1 - self.beta) * x
        self.weight = self.beta * self.weight + (1 - self.beta)
        return self.get()

    def get(self) -> float:
        return self.value / self.weight if self.weight > 0 else float("nan")


class Trainer:
    """Live training of a RevaCNN on `data`; see the module docstring for the whole contract."""

    def __init__(
        self, data: Dataset, hyper: Hyper | None = None, config: TrainerConfig | None = None
    ) -> None:
        self.data = data
        self._x_np = data.x_train.numpy()  # zero-copy views: steps gather their batch in numpy (_batch)
        self._y_np = data.y_train.numpy()
        self.config = config or TrainerConfig()
        self.device = torch.device(self.config.device)
        self.hyper = hyper or Hyper()
        self._pending: Hyper | None = None
        self.paused = False
        self.message = ""  # the latest thing the user should read (a refused edit, a NaN pause, a load)
        self.monitor_index = self.config.monitor_index
        arch = Arch(data.channels, data.size, tuple(self.config.widths), len(data.classes))
        self._build(arch)

    # -- construction and run state -------------------------------------------------------------------------
    def _build(self, arch: Arch) -> None:
        """Fresh weights from the seed, a fresh optimizer, counters at zero."""
        self.run_seed = self.hyper.seed  # the seed this run started from; a later seed change waits for reset
        g = torch.Generator().manual_seed(self.run_seed)
        self.model = RevaCNN(arch, generator=g).to(self.device)
        self.optimizer = make_optimizer(self.hyper.optimizer, self.model.parameters(), self.hyper)
        self._params = list(self.model.parameters())  # cached: model.parameters() walks modules each call
        self._guard = DivergenceGuard(self.config.good_every, self.config.suspect_steps)
        self.step_count = 0  # optimizer updates applied to the current weights
        self.epoch, self.offset = 0, 0  # position in the batch order
        self.n_edits = 0  # surgeries so far (seeds the weights they draw)
        self._perm: tuple[int, torch.Tensor] | None = None
        self._loss = _Smooth(self.config.chart_beta)
        self._acc = _Smooth(self.config.chart_beta)
        self._rate = _Smooth(self.config.rate_beta)
        # Jitter EMA per conv layer: per weight while training (see _update_jitter), per filter after an edit
        self._jitter: list[torch.Tensor | None] = [None] * len(arch.widths)
        self._jitter_ready = False  # every entry is a per-weight buffer of its layer's weight shape
        self.val_acc: float | None = None
        self.val_step: int | None = None
        self.val_loss: float | None = None  # mean cross-entropy of the latest validation pass
        self._warm_left = 0  # steps of lr warm-up left after a layer edit (see _warm_up)
        self._warm_steps = self.config.warmup_steps  # the length of that warm-up's ramp
        # Each step's gradient norm is clipped to this (0: not clipped): config.edit_clip from the start or
        # from a layer edit on
        self.clip_norm = max(float(self.config.edit_clip), 0.0) if self.config.clip_from_start else 0.0
        self._pinned_clip = 0.0  # clip_norm when the guard pinned its copy: it comes back with the settings
        self._edit_step = NO_EDIT  # step_count at the latest layer edit (the guard's advice names it)
        self._rebase_guard()

    @property
    def warm_left(self) -> int:
        """Steps of the lr warm-up after a layer edit still to come (0: the lr is the one set)."""
        return max(self._warm_left, 0)

    @property
    def spec(self) -> NetSpec:
        """The NetSpec of the current architecture (rebuild the scene's layout when it changes)."""
        return NetSpec.build("revacnn", self.model.describe(), classes=self.data.classes)

    def pause(self) -> dict | None:
        """Stop after the current step.  The weights are scanned once (steps only check them through the
        next loss): bad ones are restored like any blow-up, and the stats dict of that is returned."""
        self.paused = True
        if not self._weights_finite():
            return self._blow_up("the weights became NaN or inf")
        return None

    def resume(self) -> None:
        self.paused = False
        self.message = ""

    def tick(self) -> dict | None:
        """The worker loop's call: one step unless paused."""
        return None if self.paused else self.step()

    def single_step(self) -> dict:
        """One step, then paused."""
        self.paused = True
        return self.step()

    def reset(self, seed: int | None = None, widths: tuple[int, ...] | None = None) -> None:
        """Start over from fresh weights drawn from `seed` (default: the current seed) for the current
        architecture (or `widths`); pending hyperparameters apply now.  Pause state is kept."""
        old = self.model.spec
        arch = Arch(  # checked before anything changes: bad widths raise ValueError
            old.in_channels, old.size, tuple(widths) if widths is not None else old.widths, old.classes
        )
        if seed is not None:
            self.set_hyper(seed=seed)
        if self._pending is not None:
            self.hyper, self._pending = self._pending, None
        self._build(arch)
        self.message = ""

    # -- hyperparameters ------------------------------------------------------------------------------------
    def set_hyper(self, **changes) -> Hyper:
        """Validate `changes` now (ValueError naming the field); they apply at the start of the next step."""
        known = {f.name for f in fields(Hyper)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown}; known: {sorted(known)}")
        self._pending = replace(self._pending or self.hyper, **changes)
        return self._pending

    @property
    def pending(self) -> Hyper | None:
        return self._pending

    def _apply_pending(self) -> None:
        new, self._pending = self._pending, None
        if new is None or new == self.hyper:
            return
        old = self.hyper
        self.hyper = new
        before, after = _training_settings(old), _training_settings(new)
        if before == after:
            return  # only the seed changed: it waits for reset()
        position = (self.epoch, self.offset)
        clip, pinned = self.clip_norm, self._guard.pinned
        if new.lr > old.lr:
            # A larger step asked for by hand is shown as it is: clipped, lr 10 after a layer edit no longer
            # blew up but silently stalled, and the divergence guard had nothing to tell.
            self.clip_norm = 0.0
        if new.optimizer != old.optimizer:
            self.optimizer = convert_optimizer(
                self.optimizer, old.optimizer, new, self.model, self.step_count
            )
            # Copies must hold state the new optimizer understands: start them over from the converted one.
            self._rebase_guard()
        self._guard.pin(self._params, self.optimizer, self.step_count, position, before, after)
        if self._guard.pinned is not pinned:  # a new copy, not a burst: the weights the old clip left
            self._pinned_clip = clip
        if new.optimizer != old.optimizer:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = new.lr
            group["weight_decay"] = new.weight_decay
            if new.optimizer == "sgd":
                group["momentum"] = new.momentum

    # -- batches --------------------------------------------------------------------------------------------
    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed((self.run_seed * _SEED_MIX + epoch) % 2**63)
            self._perm = (epoch, torch.randperm(len(self.data.x_train), generator=g).numpy())
        return self._perm[1]

    def _batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Images `idx` as the network's input (exactly datasets.to_input, done in numpy: a handful of
        torch calls cost more than the arithmetic at batch 4), their labels, and the labels in numpy."""
        x = torch.from_numpy(np.divide(self._x_np[idx], 255, dtype=np.float32))
        y_np = self._y_np[idx]
        y = torch.from_numpy(y_np)
        if self.device.type != "cpu":
            x, y = x.to(self.device), y.to(self.device)
        return x, y, y_np

    def _next_indices(self, batch_size: int) -> np.ndarray:
        n = len(self.data.x_train)
        batch_size = min(batch_size, n)
        if self.offset + batch_size > n:  # drop the short tail: every epoch has whole batches
            self.epoch, self.offset = self.epoch + 1, 0
        idx = self._permutation(self.epoch)[self.offset : self.offset + batch_size]
        self.offset += batch_size
        return idx

    # -- the step -------------------------------------------------------------------------------------------
    def step(self) -> dict:
        """One minibatch: forward, guard, backward, update, statistics.  Returns the stats dict.

        The bookkeeping around torch's own work is kept to a few cheap calls (tools/bench_train.py measures
        it against a bare loop): the batch is gathered and converted in numpy, the gradients are dropped
        directly, the accuracy is counted in numpy, the jitter statistic is two foreach calls on sampled
        steps (TrainerConfig.jitter_every), and the weights are not scanned after every update: the next
        step's loss is that check (NaN or inf weights make it NaN or inf), and an explicit scan runs before
        every rolling copy and whenever the trainer comes to rest (single step, pause, save)."""
        t0 = time.perf_counter()
        self._apply_pending()
        if self._warm_left > 0:
            self._warm_up()
        position = (self.epoch, self.offset)
        idx = self._next_indices(self.hyper.batch_size)
        x, y, y_np = self._batch(idx)

        if not self.model.training:  # monitor() and validate() leave it in eval mode; a call costs ~15 us
            self.model.train()
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        loss_value = float(loss.item())
        if not math.isfinite(loss_value) or loss_value > self.config.max_loss:
            bad = "" if self._weights_finite() else " (the weights hold NaN or inf)"
            if math.isfinite(loss_value):
                return self._blow_up(
                    f"the loss rose to {loss_value:.4g}, above max_loss {self.config.max_loss:g}{bad}"
                )
            return self._blow_up(f"the loss became {loss_value}{bad}")
        if self._guard.due(self.step_count):
            # The rolling copy must hold finite weights: a finite loss nearly proves it, the scan does.
            if not self._weights_finite():
                return self._blow_up("the weights became NaN or inf")
            self._guard.tick(self._params, self.optimizer, self.step_count, position)
        for p in self._params:  # what optimizer.zero_grad(set_to_none=True) does, without its overhead
            p.grad = None
        loss.backward()
        if self.clip_norm > 0:
            self._clip_gradients()
        self.optimizer.step()
        if self.paused and not self._weights_finite():  # single_step: the next loss will not check them
            return self._blow_up("the weights became NaN or inf")
        self.step_count += 1

        acc = int(np.count_nonzero(logits.detach().cpu().numpy().argmax(1) == y_np)) / len(idx)
        every = self.config.jitter_every or max(1, round(JITTER_IMAGES / len(idx)))
        if (self.step_count - 1) % every == 0:  # this update's own count, before the increment
            self._update_jitter()
        rate = len(idx) / max(time.perf_counter() - t0, 1e-9)  # before validation: that is not training
        if self.config.val_every and self.step_count % self.config.val_every == 0:
            self.validate()
        return self._stats(
            loss=loss_value,
            acc=acc,
            loss_smooth=self._loss.update(loss_value),
            acc_smooth=self._acc.update(acc),
            images_per_s=self._rate.update(rate),
            ok=True,
        )

    def _stats(self, **kw) -> dict:
        n = len(self.data.x_train)
        return {
            "step": self.step_count,
            "epoch": self.epoch + self.offset / n,
            "batch_size": min(self.hyper.batch_size, n),
            "lr": self.hyper.lr,
            "optimizer": self.hyper.optimizer,
            "val_acc": self.val_acc,
            "val_loss": self.val_loss,
            "val_step": self.val_step,
            "paused": self.paused,
            "message": self.message,
            **kw,
        }

    def _clip_gradients(self) -> float:
        """Scale the gradients so that their joint norm is at most `clip_norm`; returns the norm before.
        What torch.nn.utils.clip_grad_norm_ does, in three calls: its checks cost ~55 us a step here
        (3 % of a 4-image step), these ~15 us."""
        grads = [p.grad for p in self._params if p.grad is not None]
        total = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
        if total > self.clip_norm:  # NaN fails this: the next step's loss reports it
            torch._foreach_mul_(grads, self.clip_norm / (total + 1e-6))
        return total

    def _weights_finite(self) -> bool:
        # One sum per tensor: NaN/inf propagate into it.  (A sum can also overflow for weights near 1e38,
        # which is divergence too.)  ~3x cheaper than isfinite().all() per tensor, and this runs every step.
        with torch.no_grad():
            return bool(torch.isfinite(torch.stack([p.sum() for p in self._params])).all())

    def _update_jitter(self) -> None:
        """One sample of the jitter EMA, kept per weight: mean is linear, so the per-filter mean of an EMA
        of |grad| is the EMA of the per-filter mean |grad|, and two foreach calls replace a dozen small
        ops.  A layer whose entry is not a per-weight buffer of its weight's shape (first step, a new
        layer, any edit) starts one here: from this |grad| when it has no history, else from its
        per-filter means."""
        convs = self.model.convs
        grads = [conv.weight.grad for conv in convs]
        with torch.no_grad():
            mags = torch._foreach_abs(grads)
            if not self._jitter_ready:
                for i, (j, m) in enumerate(zip(self._jitter, mags, strict=True)):
                    if j is None:
                        self._jitter[i] = m.clone()  # the first value of the average is the first sample
                    elif j.shape != m.shape:
                        self._jitter[i] = j.reshape(-1, *[1] * (m.dim() - 1)).expand_as(m).clone()
                self._jitter_ready = True
            torch._foreach_lerp_(self._jitter, mags, 1 - self.config.jitter_beta)  # beta * ema + (1-beta) |g|

    def jitter_means(self) -> list[torch.Tensor | None]:
        """Per conv layer, the (width,) smoothed mean |dL/dw| per filter, or None before its first step."""
        return [j if j is None or j.dim() == 1 else j.flatten(1).mean(1) for j in self._jitter]

    def _collapse_jitter(self) -> None:
        """Before an edit: per-filter means (what the edits slice and extend); per weight again next step."""
        self._jitter = self.jitter_means()
        self._jitter_ready = False

    # -- last good weights ----------------------------------------------------------------------------------
    def _rebase_guard(self) -> None:
        """Shapes or optimizer state changed (start, surgery, load, optimizer switch): fresh guard copies."""
        self._guard.rebase(self._params, self.optimizer, self.step_count, (self.epoch, self.offset))

    def _blow_up(self, reason: str) -> dict:
        failed = self.step_count + 1
        good, why = self._guard.choose(failed)
        self._guard.restore(good, self._params, self.optimizer)
        self.step_count = good.step
        self.epoch, self.offset = good.position
        self.paused = True
        failed_with = f"{self.hyper.optimizer}, lr {self.hyper.lr:g}"
        restored = self._restore_settings(good.before)
        after_edit = 0 <= failed - self._edit_step <= self.config.suspect_steps
        if after_edit:
            advice = "it came soon after a layer edit: resume (the learning rate warms up again) or lower it"
        elif restored:
            advice = "resume to go on with them"
        else:
            advice = "lower the learning rate and resume"
        if after_edit:
            self._start_warm_up()
        self.message = (
            f"training paused at step {failed}: {reason} ({failed_with}). "
            f"Restored the weights and optimizer state of step {self.step_count} ({why}){restored}; {advice}."
        )
        nan = float("nan")
        return self._stats(
            loss=nan,
            acc=nan,
            loss_smooth=self._loss.get(),
            acc_smooth=self._acc.get(),
            images_per_s=self._rate.get(),
            ok=False,
        )

    def _restore_settings(self, before: dict | None) -> str:
        """After a blow-up blamed on a hyperparameter change: the settings from before it come back with
        the weights (same optimizer only: its state was restored as that optimizer's), so the controls and
        the next resume do not run straight into the same divergence.  Returns a note for the message."""
        if not before or before.get("optimizer") != self.hyper.optimizer:
            return ""
        self._pending = None
        self.hyper = replace(self.hyper, **before)
        self.clip_norm = self._pinned_clip  # the settings came back: so does the clipping they ran with
        for group in self.optimizer.param_groups:
            group["lr"] = self.hyper.lr
            group["weight_decay"] = self.hyper.weight_decay
            if self.hyper.optimizer == "sgd":
                group["momentum"] = self.hyper.momentum
        self._guard.rebase(self._params, self.optimizer, self.step_count, (self.epoch, self.offset))
        return f", and its settings (lr {self.hyper.lr:g})"

    # -- steering -------------------------------------------------------------------------------------------
    def _edit_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed((self.run_seed * _SEED_MIX + 7919 * (self.n_edits + 1)) % 2**63)

    def _calibration(self) -> torch.Tensor | None:
        """The first `refit_images` training images: the head is re-fitted to keep their logits."""
        n = min(self.config.refit_images, len(self.data.x_train))
        return to_input(self.data.x_train[:n], self.device) if n > 0 else None

    def _start_warm_up(self) -> None:
        """A ramp of `warmup_steps` from here; the optimizer's lr is at once the ramp's first (what the next
        step uses, and what a snapshot shows as opt_lr)."""
        self._warm_left = self._warm_steps = self.config.warmup_steps
        for group in self.optimizer.param_groups:
            group["lr"] = self.hyper.lr * (0.1 if self._warm_left > 1 else 1.0)

    def _warm_up(self) -> None:
        """After a layer edit the re-fitted head and the new layer are far from what the optimizer's
        settings were tuned on: the lr ramps linearly from a tenth to its value over `warmup_steps`."""
        left = self._warm_left
        self._warm_left = left - 1
        factor = 1.0 if left <= 1 else 1.0 - 0.9 * left / max(self._warm_steps, 1)
        for group in self.optimizer.param_groups:
            group["lr"] = self.hyper.lr * factor

    def _after_edit(self, what: str, layer: bool = False) -> None:
        if layer:
            self._start_warm_up()
            self.clip_norm = max(float(self.config.edit_clip), 0.0)
            self._edit_step = self.step_count
        self.n_edits += 1
        self._params = list(self.model.parameters())
        self._rebase_guard()  # the copies must have the new shapes
        self.message = what

    def add_filter(self, layer_idx: int, index: int | None = None) -> int:
        """Add a filter to conv layer `layer_idx` (0-based); outputs unchanged.  SurgeryError if refused."""
        self._collapse_jitter()
        i = surgery.add_filter(
            self.model, self.optimizer, layer_idx, index=index, generator=self._edit_generator()
        )
        jit = self._jitter[layer_idx]
        if jit is not None:
            self._jitter[layer_idx] = torch.cat([jit[:i], jit.new_zeros(1), jit[i:]])
        self._after_edit(f"added filter {i} to conv{layer_idx + 1}")
        return i

    def remove_filter(self, layer_idx: int, filter_idx: int) -> None:
        self._collapse_jitter()
        surgery.remove_filter(self.model, self.optimizer, layer_idx, filter_idx)
        jit = self._jitter[layer_idx]
        if jit is not None:
            self._jitter[layer_idx] = torch.cat([jit[:filter_idx], jit[filter_idx + 1 :]])
        self._after_edit(f"removed filter {filter_idx} from conv{layer_idx + 1}")

    def _predictions(self, images: torch.Tensor | None) -> torch.Tensor | None:
        """The logits of `images` now, before a layer edit changes the network (what _settle aims for)."""
        if images is None or self.config.settle_steps <= 0:
            return None
        self.model.eval()
        with torch.no_grad():
            return self.model(images)

    def _settle(
        self, images: torch.Tensor | None, targets: torch.Tensor | None, g: torch.Generator, first: int
    ) -> None:
        """After a layer edit (head already re-fitted): a few steps of conv layers `first`.. and the head
        towards `targets`, the predictions from before the edit."""
        if images is None or targets is None:
            return
        c = self.config
        surgery.distill(self.model, images, targets, c.settle_steps, c.settle_lr, c.settle_batch, g, first)

    def add_layer(self, position: int, width: int) -> int:
        """Insert a conv layer before conv layer `position` (len: at the end), initialised as the identity,
        then re-fit the head and settle the net towards its predictions from before (module docstring)."""
        self._collapse_jitter()
        images, g = self._calibration(), self._edit_generator()
        targets = self._predictions(images)
        p = surgery.add_conv_layer(
            self.model, self.optimizer, position, width, generator=g, calibration=images
        )
        self._settle(images, targets, g, p)
        self._jitter.insert(p, None)
        self._after_edit(f"added conv layer {p + 1} with {width} filters", layer=True)
        return p

    def remove_layer(self, layer_idx: int) -> None:
        self._collapse_jitter()
        images, g = self._calibration(), self._edit_generator()
        targets = self._predictions(images)
        surgery.remove_conv_layer(
            self.model, self.optimizer, layer_idx, calibration=images, ridge=self.config.remove_ridge
        )
        self._settle(images, targets, g, layer_idx)
        del self._jitter[layer_idx]
        self._after_edit(f"removed conv layer {layer_idx + 1}", layer=True)

    # -- what the scene draws -------------------------------------------------------------------------------
    def grad_magnitudes(self) -> list[np.ndarray]:
        """Per conv layer, (width,) float32: smoothed mean |dL/dw| over each filter's coefficients (jitter).

        Zeros for a layer that has not been through a step yet (a new layer, or before the first step).
        """
        return [
            (j.detach().cpu().numpy().astype(np.float32) if j is not None else np.zeros(w, np.float32))
            for j, w in zip(self.jitter_means(), self.model.widths, strict=True)
        ]

    def monitor(self, image: torch.Tensor | None = None) -> dict:
        """Activations of the monitored image (default: held-out image `monitor_index`), for the paths.

        Returns {"activations": {layer: array}, "filter_sums": {grid layer: (C,) sums of each map},
        "top_half": {grid layer: bool mask of the upper half of those sums}} — every layer of `spec`.
        """
        if image is None:
            image = self.data.x_val[self.monitor_index % len(self.data.x_val)]
        x = to_input(image.unsqueeze(0), self.device) if image.dtype == torch.uint8 else image.unsqueeze(0)
        self.model.eval()
        with torch.no_grad():
            acts = {k: v[0].cpu().numpy() for k, v in self.model.forward_all(x.to(self.device)).items()}
        sums = {k: a.reshape(a.shape[0], -1).sum(1) for k, a in acts.items() if a.ndim == 3}
        return {
            "activations": acts,
            "filter_sums": sums,
            "top_half": {k: top_half(s) for k, s in sums.items()},
        }

    def validate(self) -> float:
        """Accuracy on the first `val_limit` held-out images; also stored as val_acc / val_step, with their
        mean cross-entropy as val_loss (the measure of a layer edit: tools/bench_layer_edits.py)."""
        n = min(len(self.data.x_val), self.config.val_limit)
        correct, loss = 0, 0.0
        self.model.eval()
        with torch.no_grad():
            for s in range(0, n, self.config.val_batch):
                e = min(n, s + self.config.val_batch)
                logits = self.model(to_input(self.data.x_val[s:e], self.device))
                y = self.data.y_val[s:e].to(self.device)
                correct += int((logits.argmax(1) == y).sum())
                loss += float(F.cross_entropy(logits, y, reduction="sum"))
        self.val_acc, self.val_loss, self.val_step = correct / n, loss / n, self.step_count
        return self.val_acc

    # -- checkpoints ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Checkpoint model, optimizer state, hyperparameters and run state (not a pending change).
        Weights with NaN or inf are refused (ValueError): a checkpoint is for resuming."""
        if not self._weights_finite():
            raise ValueError("the weights hold NaN or inf; not saving them (a step restores good ones)")
        meta = {
            "hyper": self.hyper.to_dict(),
            "run": {
                "seed": self.run_seed,
                "step": self.step_count,
                "epoch": self.epoch,
                "offset": self.offset,
                "n_edits": self.n_edits,
                "val_acc": self.val_acc,
                "val_loss": self.val_loss if self.val_loss is None or math.isfinite(self.val_loss) else None,
                "val_step": self.val_step,
                # What a layer edit changed in how training goes on (absent in older checkpoints: no edit)
                "edit": {
                    "clip_norm": self.clip_norm,
                    "warm_left": self.warm_left,
                    "warm_steps": self._warm_steps,
                    "edit_step": self._edit_step,
                },
                "smooth": {k: [s.value, s.weight] for k, s in (("loss", self._loss), ("acc", self._acc))},
            },
            "dataset": {
                "name": self.data.name,
                "source": self.data.source,
                "n_train": len(self.data.x_train),
            },
        }
        extra = {f"jitter/{i}": j for i, j in enumerate(self.jitter_means()) if j is not None}
        extra.update(
            {f"jitter_ema/{i}": j for i, j in enumerate(self._jitter) if j is not None and j.ndim > 1}
        )
        return save_checkpoint(path, self.model, self.optimizer, meta=meta, extra=extra)

    def load(self, path: str | Path) -> None:
        """Continue from a checkpoint.  Everything is validated first: on CheckpointError the session is as
        it was.  Afterwards the trainer is paused, at the saved step and batch position."""
        ck = load_checkpoint(path)
        where = str(ck.path)
        arch = ck.arch
        d = self.data
        if (arch.in_channels, arch.size, arch.classes) != (d.channels, d.size, len(d.classes)):
            raise CheckpointError(
                f"{where}: the network takes {arch.in_channels}x{arch.size}x{arch.size} images and "
                f"{arch.classes} classes; the data set {d.name!r} has {d.channels}x{d.size}x{d.size} and "
                f"{len(d.classes)}"
            )
        try:
            hyper = Hyper(**ck.meta["hyper"])
            run = ck.meta["run"]
            keys = ("seed", "step", "epoch", "offset", "n_edits")
            seed, step, epoch, offset, n_edits = (int(run[k]) for k in keys)
            smooth = {k: [float(v) for v in run["smooth"][k]] for k in ("loss", "acc")}
            val_acc = None if run.get("val_acc") is None else float(run["val_acc"])
            val_loss = None if run.get("val_loss") is None else float(run["val_loss"])
            val_step = None if run.get("val_step") is None else int(run["val_step"])
            edit = run.get("edit", {})  # a checkpoint from before edits were saved: as if none happened
            clip_norm = float(edit.get("clip_norm", 0.0))
            warm_left = int(edit.get("warm_left", 0))
            warm_steps = int(edit.get("warm_steps", self.config.warmup_steps))
            edit_step = int(edit.get("edit_step", NO_EDIT))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{where}: bad run state in the manifest ({exc})") from None
        if min(seed, step, epoch, offset, n_edits) < 0 or offset > len(self.data.x_train):
            raise CheckpointError(f"{where}: run state out of range for this data set")
        if not (0 <= clip_norm < math.inf and 0 <= warm_left <= max(warm_steps, 0) and edit_step <= step):
            raise CheckpointError(
                f"{where}: bad edit state in the manifest (clip_norm {clip_norm}, warm_left {warm_left} of "
                f"{warm_steps}, edit_step {edit_step} at step {step})"
            )
        if ck.optimizer_name != hyper.optimizer:
            raise CheckpointError(
                f"{where}: optimizer state is {ck.optimizer_name}'s but hyper says {hyper.optimizer}"
            )
        model = ck.build_model(self.device)
        jitter: list[torch.Tensor | None] = []
        for i, w in enumerate(arch.widths):
            # Per weight ("jitter_ema/i") when the run was mid-training, so a resumed run matches bit for
            # bit; per filter ("jitter/i") otherwise (and in checkpoints from before per-weight averages).
            shape = tuple(model.convs[i].weight.shape)
            for key, want in ((f"jitter_ema/{i}", shape), (f"jitter/{i}", (w,))):
                j = ck.extra.get(key)
                if j is not None and tuple(j.shape) != want:
                    raise CheckpointError(
                        f"{where}: {key} has shape {tuple(j.shape)}; conv{i + 1} needs {want}"
                    )
            j = ck.extra.get(f"jitter_ema/{i}", ck.extra.get(f"jitter/{i}"))
            if j is not None and not bool(torch.isfinite(j).all()):
                raise CheckpointError(f"{where}: the jitter statistics of conv{i + 1} hold NaN or inf")
            jitter.append(None if j is None else j.to(self.device, torch.float32))
        optimizer = make_optimizer(hyper.optimizer, model.parameters(), hyper)
        load_optimizer_state_by_name(model, optimizer, ck.optimizer_state)

        # Everything is built and checked: switch over.
        self.model, self.optimizer, self.hyper, self._pending = model, optimizer, hyper, None
        self.step_count, self.epoch, self.offset, self.n_edits = step, epoch, offset, n_edits
        self.run_seed = seed
        self._perm = None
        self._loss = _Smooth(self.config.chart_beta, *smooth["loss"])
        self._acc = _Smooth(self.config.chart_beta, *smooth["acc"])
        self._rate = _Smooth(self.config.rate_beta)
        self._jitter = jitter
        self._jitter_ready = all(j is not None and j.dim() > 1 for j in jitter)
        self.val_acc, self.val_loss, self.val_step = val_acc, val_loss, val_step
        self.clip_norm, self._pinned_clip = clip_norm, clip_norm
        self._warm_left, self._warm_steps, self._edit_step = warm_left, warm_steps, edit_step
        self._params = list(model.parameters())
        self._rebase_guard()
        self.paused = True
        self.message = f"loaded {where} at step {step}"
