"""Training methods added to the TRM recipe, each one small unit behind its config key.

A method uses one or more of four hooks of a training step (each a no-op unless it overrides it):

- ``depth(ctx, depth)``: the (H_cycles, L_cycles) this step's recursion runs (None: the model's own);
- ``weights(carry, token_w, halt_w)``: per-row weights of the token loss and the halting loss;
- ``labels(carry, labels, logits)``: the labels the token loss compares with;
- ``after_backward(params)``: anything done to the gradients before the optimiser step.

:data:`METHODS` lists them in the order their hooks compose (a later method sees the earlier ones'
result). Adding a method: a class here with ``from_config`` (None when its key is off; a one-line
error when it cannot apply) and its hooks, its key in :mod:`recursa.config`, its line in METHODS.
The optimisers (AdamATan2, AdamW, Muon) are chosen by ``train.optimizer`` in
:func:`recursa.training.optim.build_optimizers`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import RunConfig
from ..errors import RecursaError
from ..models import Carry
from .losses import log_stablemax

#: A run bounded by time only has this many total steps (its progress is the time used).
UNBOUNDED = 10**12


@dataclass(frozen=True)
class StepContext:
    """What a method may read about the step about to run."""

    step: int  # 0-based, before it runs
    total_steps: int
    elapsed: float  # training seconds so far
    max_time_s: float
    seed: int


class Method:
    key = ""

    def depth(self, ctx: StepContext, depth: tuple[int, int] | None) -> tuple[int, int] | None:
        return depth

    def weights(self, carry: Carry, token_w, halt_w):
        return token_w, halt_w

    def labels(self, carry: Carry, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return labels

    def after_backward(self, params: list[torch.Tensor]) -> None:
        pass


def depth_at(curriculum: list[list[float]], step: int, total_steps: int) -> tuple[int, int]:
    """(H_cycles, L_cycles) of training step ``step`` (0-based, before it runs) under a
    ``train.depth_curriculum``: the last entry whose progress fraction step / total has reached."""
    progress = step / max(total_steps, 1)
    entry = curriculum[0]
    for e in curriculum:
        if progress >= e[0]:
            entry = e
    return int(entry[1]), int(entry[2])


def stochastic_cycles(p: float, H: int, seed: int, step: int) -> int:
    """RSM's stochastic depth: the cycles training step ``step`` runs: with probability ``p`` a draw
    from 1..H, else H; a function of (seed, step) alone, so every rank and a resumed run agree."""
    rng = np.random.default_rng([seed, step, 71])
    return int(rng.integers(1, H + 1)) if rng.random() < p else H


class DepthCurriculum(Method):
    """CGAR: shallower recursion early in training (``train.depth_curriculum``)."""

    key = "train.depth_curriculum"

    def __init__(self, curriculum):
        self.curriculum = curriculum

    @classmethod
    def from_config(cls, cfg: RunConfig, task):
        cur = cfg.train.depth_curriculum
        if not cur:
            return None
        if cfg.model.latents > 1 and max(e[2] for e in cur) > cfg.model.latents:
            raise RecursaError(f"train.depth_curriculum: L_cycles up to {max(e[2] for e in cur)} "
                               f"> model.latents = {cfg.model.latents}")
        return cls(cur)

    def depth(self, ctx, depth):
        if ctx.total_steps >= UNBOUNDED:  # a time budget only: progress is the time used (not reproducible)
            return depth_at(self.curriculum, int(1000 * ctx.elapsed / ctx.max_time_s), 1000)
        return depth_at(self.curriculum, ctx.step, ctx.total_steps)


class StochasticDepth(Method):
    """RSM: some steps run fewer cycles (``model.stochastic_depth``)."""

    key = "model.stochastic_depth"

    def __init__(self, p: float, depth: tuple[int, int]):
        self.p, self.default = p, depth

    @classmethod
    def from_config(cls, cfg: RunConfig, task):
        m = cfg.model
        return cls(m.stochastic_depth, (m.H_cycles, m.L_cycles)) if m.stochastic_depth else None

    def depth(self, ctx, depth):
        H, L = depth or self.default
        return stochastic_cycles(self.p, H, ctx.seed, ctx.step), L


class StepWeights(Method):
    """CGAR: supervision step s of a puzzle weighs ``train.step_weights ** (s - 1)``."""

    key = "train.step_weights"

    def __init__(self, base: float):
        self.base = base

    @classmethod
    def from_config(cls, cfg: RunConfig, task):
        return cls(cfg.train.step_weights) if cfg.train.step_weights != 1.0 else None

    def weights(self, carry, token_w, halt_w):
        w = torch.pow(self.base, (carry.steps - 1).to(torch.float32))
        return w, w


class LastStepLoss(Method):
    """RSM: the token loss only where the row's puzzle ends (``train.loss_steps = "last"``)."""

    key = "train.loss_steps"

    @classmethod
    def from_config(cls, cfg: RunConfig, task):
        return cls() if cfg.train.loss_steps == "last" else None

    def weights(self, carry, token_w, halt_w):
        return carry.halted.to(torch.float32) * (token_w if token_w is not None else 1.0), halt_w


class NearestAnswer(Method):
    """Several right answers (a maze's shortest paths): train against the one of least token loss
    under the model's own prediction (``train.nearest_answer``)."""

    key = "train.nearest_answer"

    def __init__(self, task, loss: str):
        self.task, self.loss = task, loss

    @classmethod
    def from_config(cls, cfg: RunConfig, task):
        if not cfg.train.nearest_answer:
            return None
        if task is None or not getattr(task, "answer_sets", False):
            what = task.describe() if task is not None else f"{cfg.train.data} (no task.json)"
            raise RecursaError(f"train.nearest_answer: {what} has one answer per puzzle; nothing to choose among")
        return cls(task, cfg.train.loss)

    def labels(self, carry, labels, logits):
        """The task's right answer of least token loss under ``logits`` (the loss's own log-probabilities)."""
        with torch.no_grad():
            lp = log_stablemax(logits.to(torch.float64)) if self.loss == "stablemax" \
                else torch.log_softmax(logits.float(), -1)
            near = self.task.nearest_answers(carry.data["inputs"].cpu().numpy(), labels.cpu().numpy(), lp.cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(near)).to(device=labels.device, dtype=labels.dtype)


class GradClip(Method):
    """Clip the global gradient norm (``train.grad_clip``); distributed: after the all-reduce, so
    every rank clips the same averaged gradient."""

    key = "train.grad_clip"

    def __init__(self, norm: float):
        self.norm = norm

    @classmethod
    def from_config(cls, cfg: RunConfig, task):
        return cls(cfg.train.grad_clip) if cfg.train.grad_clip > 0 else None

    def after_backward(self, params):
        torch.nn.utils.clip_grad_norm_(params, self.norm, foreach=True)


METHODS = (DepthCurriculum, StochasticDepth, StepWeights, LastStepLoss, NearestAnswer, GradClip)


def methods_for(cfg: RunConfig, task) -> list[Method]:
    """The methods ``cfg`` turns on, in :data:`METHODS` order."""
    return [m for cls in METHODS if (m := cls.from_config(cfg, task)) is not None]
