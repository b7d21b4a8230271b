"""What a run does about a non-finite loss: ``train.on_nonfinite = "stop"`` remembers the first bad
step on the device (no host sync per step) and stops at the next check, without saving;
``"skip_step"`` drops that step's update (one host sync per step) and stops after
``train.max_nonfinite_skips`` in a row. Nothing non-finite is ever saved."""

from __future__ import annotations

import torch

from ..errors import RecursaError
from . import distributed


class Diverged(RecursaError):
    """Training produced a non-finite loss or non-finite weights."""


class Guard:
    def __init__(self, t, dist, device, log_row):
        self.on_nonfinite, self.max_skips = t.on_nonfinite, t.max_nonfinite_skips
        self.dist, self.device, self.log_row = dist, device, log_row
        # First step whose loss was not finite (-1: none), kept on the device: no host sync per step.
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.skipped = self.streak = 0  # steps skipped (skip_step), and in a row
        self.last_good = None  # the last checkpoint written, for the messages

    def skip(self, loss: torch.Tensor, step: int) -> bool:
        """Whether to drop this step's update (skip_step and the loss of any rank is not finite)."""
        finite = torch.isfinite(loss)
        if self.on_nonfinite == "skip_step":
            # one host sync per step, the price of skipping; every rank skips when any must
            if distributed.any_all(self.dist, not bool(finite), self.device):
                self.skipped += 1
                self.streak += 1
                return True
            self.streak = 0
        else:  # remember the first bad step on the device; checked at log intervals and before saving
            self.bad_step = torch.where((self.bad_step < 0) & ~finite, step, self.bad_step)
        return False

    def check_streak(self, step: int) -> None:
        """After a skipped step: stop when too many were skipped in a row."""
        if self.streak >= self.max_skips:
            self.diverged(f"the loss was non-finite {self.streak} steps in a row (up to step {step})", step)

    def pending(self) -> bool:
        """A check would find something (or must talk to the other ranks anyway)."""
        return self.dist.active or int(self.bad_step) >= 0

    def check(self, tensors: list[torch.Tensor], step: int, lr_at) -> None:
        """Raise :class:`Diverged` when a loss since the start was non-finite or ``tensors`` are;
        ``lr_at(step)`` is the learning rate the message names."""
        if self.dist.active:  # every rank learns the first bad step of any rank
            big = torch.iinfo(torch.int64).max
            first = torch.where(self.bad_step < 0, big, self.bad_step)
            torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
            self.bad_step = torch.where(first == big, -1, first)
        bad = int(self.bad_step)  # host sync: only at log intervals and before saving
        if bad >= 0:
            self.diverged(f"the loss became non-finite at step {bad} (learning rate there {lr_at(bad):.3g})", step)
        if tensors and not bool(torch.stack([torch.isfinite(x).all() for x in tensors]).all()):
            self.diverged(f"the weights became non-finite by step {step}", step)

    def diverged(self, what: str, step: int):
        self.log_row(step, {"diverged": what})
        kept = f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint was written"
        stop = self.on_nonfinite == "stop"
        fix = "lower train.lr (or lengthen train.lr_warmup_steps)" if stop else "lower train.lr"
        raise Diverged(f"training diverged: {what}; stopped at step {step} without saving ({kept}); {fix}"
                       + (', or set train.on_nonfinite = "skip_step"' if stop else ""))
