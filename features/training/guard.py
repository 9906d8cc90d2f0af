"""The live trainer's divergence guard: which weights count as good, and putting them back.

A copy holds the weights, the optimizer state, the step counter and the batch position the weights were about
to train on.  Two kinds are kept:

  rolling  taken every `every` steps from weights that had just given a finite loss; the newest two are kept
           and a blow-up restores the older, so what comes back predates the failure by at least `every`
           steps.  A learning rate that wrecks the weights over a few steps while the loss stays finite
           would otherwise hand back weights that are finite but already ruined (seen about 1 run in 7
           with lr 10 when the copy was taken every step).
  pinned   taken when a hyperparameter change is applied: the weights as the old settings left them.  A
           blow-up within `window` steps of the change restores these instead: the change is the suspect,
           and weights trained under it are not trusted.  A burst of changes (a slider dragged over many
           frames) keeps the copy from before the first of them.

Copies reuse their buffers when the shapes still fit (the rolling copy runs all session long); surgery, a
load, a reset or an optimizer switch changes shapes or state layout, and the trainer calls `rebase`.

Torch-side only: imported by features/training/trainer.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Copy:
    """Weights and optimizer state as they were at `step`, with what is needed to continue from them."""

    step: int
    position: tuple[int, int]  # (epoch, offset) of the batch these weights were about to train on
    params: list[torch.Tensor]
    state: list[dict]
    before: dict | None = None  # pinned copies: the settings these weights were trained with
    after: dict | None = None  # and the newest settings since

    @property
    def change(self) -> str:
        """The settings that changed, as "lr 0.01 -> 10, weight_decay 0.0001 -> 1"."""
        if self.before is None or self.after is None:
            return ""
        moved = [
            f"{k} {_show(v)} -> {_show(self.after.get(k))}"
            for k, v in self.before.items()
            if self.after.get(k) != v
        ]
        return ", ".join(moved) or "back to the same settings"


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _capture(params: list[torch.Tensor], optimizer, step: int, position, reuse: Copy | None) -> Copy:
    """Copy `params` and their optimizer state, into `reuse`'s buffers where the shapes fit."""
    fits = reuse is not None and [t.shape for t in reuse.params] == [p.shape for p in params]
    with torch.no_grad():
        if fits:
            for buf, p in zip(reuse.params, params, strict=True):
                buf.copy_(p)
            saved, state = reuse.params, reuse.state
        else:
            saved, state = [p.detach().clone() for p in params], [{} for _ in params]
        for i, p in enumerate(params):
            live, kept = optimizer.state.get(p, {}), state[i]
            if fits and live.keys() == kept.keys():
                for k, v in live.items():
                    if torch.is_tensor(v) and torch.is_tensor(kept[k]) and v.shape == kept[k].shape:
                        kept[k].copy_(v)
                    else:
                        kept[k] = v.clone() if torch.is_tensor(v) else v
            else:
                state[i] = {k: v.clone() if torch.is_tensor(v) else v for k, v in live.items()}
    return Copy(step, tuple(position), saved, state)


class DivergenceGuard:
    """Rolling and pinned copies of the good weights; see the module docstring."""

    def __init__(self, every: int = 16, window: int = 500) -> None:
        if every < 1 or window < 0:
            raise ValueError(f"every must be >= 1 and window >= 0, got {every} and {window}")
        self.every = int(every)
        self.window = int(window)
        self.rolling: list[Copy] = []  # oldest first, at most two
        self.pinned: Copy | None = None

    def rebase(self, params, optimizer, step: int, position, keep_pinned: bool = False) -> None:
        """Forget the copies (shapes or state layout changed) and take one of the weights as they are now."""
        self.rolling = [_capture(params, optimizer, step, position, None)]
        if not keep_pinned:
            self.pinned = None

    def due(self, step: int) -> bool:
        """Whether tick() at `step` takes a copy (the trainer scans the weights first)."""
        return not self.rolling or step - self.rolling[-1].step >= self.every

    def tick(self, params, optimizer, step: int, position) -> None:
        """Before an update whose loss was finite: take a rolling copy when `every` steps have passed."""
        if not self.due(step):
            return
        reuse = self.rolling.pop(0) if len(self.rolling) >= 2 else None
        self.rolling.append(_capture(params, optimizer, step, position, reuse))

    def pin(self, params, optimizer, step: int, position, before: dict, after: dict) -> None:
        """Settings `before` are about to become `after`: keep the weights the old settings left."""
        old = self.pinned
        if old is not None and step - old.step <= self.window:
            old.after = dict(after)  # a burst of changes: the copy from before the first one stays
            return
        self.pinned = _capture(params, optimizer, step, position, None)
        self.pinned.before, self.pinned.after = dict(before), dict(after)

    def choose(self, failed_step: int) -> tuple[Copy, str]:
        """The copy to restore after a blow-up at `failed_step`, and how to name it to the user."""
        p = self.pinned
        if p is not None and failed_step - p.step <= self.window:
            return p, f"from before the change {p.change} at step {p.step}"
        if not self.rolling:
            raise RuntimeError("the divergence guard holds no weights (rebase was never called)")
        return self.rolling[0], f"{failed_step - self.rolling[0].step} steps back"

    def restore(self, copy: Copy, params, optimizer) -> None:
        """Put `copy` back into `params` and the optimizer, then take it as the only rolling copy."""
        with torch.no_grad():
            for p, buf, st in zip(params, copy.params, copy.state, strict=True):
                p.copy_(buf)
                p.grad = None
                optimizer.state[p] = {k: v.clone() if torch.is_tensor(v) else v for k, v in st.items()}
        # Newer rolling copies are suspects; the pinned one stays (a second blow-up at the same settings
        # goes back to it again).
        self.rolling = [_capture(params, optimizer, copy.step, copy.position, None)]
