"""Adaptive computation time (ACT) wrapper with carry streaming, as in the official code.

One call is one *supervision step*. The carry holds, per batch row, the recursion state, the
step counter, the halted flag and the row's current puzzle. On each call:

1. rows that halted at the previous call restart from the init state with ``steps = 0`` and take
   the incoming batch's row; the other rows keep their puzzle and state (their incoming rows are
   dropped, exactly as the official training loop does);
2. the inner model runs one step; ``steps += 1``; a row halts at ``halt_max_steps``;
3. in training only, a row also halts when ``q_halt > 0`` (or, with ``q_continue``, when
   ``q_halt > q_continue``), except that with probability ``halt_exploration_prob`` it gets a
   random minimum of 2..halt_max_steps steps first (with ``early_halt=False`` rows never halt early:
   every training row runs ``halt_max_steps`` steps, no draw is made);
4. with ``q_continue`` (the HRM paper's Q-learning halting) and in training, an extra no-grad
   step on the new carry gives the continue target: sigmoid(q_halt') at the last step, else
   sigmoid(max(q_halt', q_continue')), returned as ``outputs["target_q_continue"]``.

In eval mode rows halt only at ``halt_max_steps`` (every row runs the full depth). Random draws
use the ``generator`` passed in, so training is reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

DATA_KEYS = ("inputs", "labels", "puzzle_identifiers")


@dataclass
class Carry:
    state: tuple[torch.Tensor, ...]  # inner recursion state, e.g. (z_H, z_L), each (B, S, D)
    steps: torch.Tensor  # (B,) int32, supervision steps taken by the current puzzle
    halted: torch.Tensor  # (B,) bool, the row finished at the previous call
    data: dict[str, torch.Tensor]  # the rows' current puzzles (DATA_KEYS)

    def map(self, f) -> "Carry":
        """The carry with ``f`` applied to every tensor (e.g. a rank's rows, or all ranks' gathered)."""
        return Carry(state=tuple(f(x) for x in self.state), steps=f(self.steps), halted=f(self.halted),
                     data={k: f(v) for k, v in self.data.items()})


class ACT(nn.Module):
    """Wraps an inner model (``TRM``/``HRM``/``Baseline``) into ``forward(carry, batch) -> (carry, outputs)``."""

    def __init__(self, inner: nn.Module, halt_max_steps: int, halt_exploration_prob: float, q_continue: bool = False,
                 halt_compare: bool | None = None, early_halt: bool = True):
        """``q_continue``: compute the Q-learning continue target (extra no-grad inner pass).
        ``halt_compare``: training halts on q_halt > q_continue instead of q_halt > 0 (default:
        the same as ``q_continue``). ``early_halt``: training rows may halt before
        ``halt_max_steps`` on the q head (the official rule); False: they never do."""
        super().__init__()
        self.halt_compare = q_continue if halt_compare is None else halt_compare
        self.inner = inner
        self.halt_max_steps = halt_max_steps
        self.halt_exploration_prob = halt_exploration_prob
        self.q_continue = q_continue
        self.early_halt = early_halt
        # (rank, world size) of a data-parallel run: this process holds rows rank*B..(rank+1)*B-1
        # of every global batch (and of every random draw); (0, 1) in a single process.
        self.draw_shard = (0, 1)

    def initial_carry(self, batch: dict[str, torch.Tensor]) -> Carry:
        """A carry in which every row is halted, so the first call loads the whole batch."""
        B = batch["inputs"].shape[0]
        device = batch["inputs"].device
        return Carry(
            state=self.inner.initial_state(B, device),
            steps=torch.zeros(B, dtype=torch.int32, device=device),
            halted=torch.ones(B, dtype=torch.bool, device=device),
            data={k: torch.zeros_like(batch[k]) for k in DATA_KEYS},
        )

    def forward(self, carry: Carry, batch: dict[str, torch.Tensor],
                generator: torch.Generator | None = None) -> tuple[Carry, dict[str, torch.Tensor]]:
        reset = carry.halted
        state = self.inner.reset_state(carry.state, reset)
        steps = torch.where(reset, 0, carry.steps)
        data = {k: torch.where(reset.view(-1, *([1] * (batch[k].dim() - 1))), batch[k], carry.data[k])
                for k in DATA_KEYS}

        state, logits, q_halt, q_continue = self.inner(state, data)

        outputs = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_continue}
        with torch.no_grad():
            steps = steps + 1
            is_last = steps >= self.halt_max_steps
            halted = is_last
            if self.training and self.halt_max_steps > 1:
                if self.early_halt:
                    halted = halted | ((q_halt > q_continue) if self.halt_compare else (q_halt > 0))
                    # Exploration: some rows must run a random minimum number of steps. In a data-parallel
                    # run every rank draws for the whole global batch and keeps its own rows.
                    rank, world = self.draw_shard
                    n = q_halt.shape[0]
                    rows = slice(rank * n, (rank + 1) * n)
                    explore = torch.rand((n * world,), generator=generator, device=q_halt.device)[rows] \
                        < self.halt_exploration_prob
                    min_steps = torch.randint(2, self.halt_max_steps + 1, (n * world,), generator=generator,
                                              device=steps.device, dtype=steps.dtype)[rows]
                    halted = halted & (steps >= explore * min_steps)
                if self.q_continue:
                    _, _, next_halt, next_continue = self.inner(state, data)
                    target = torch.where(is_last, next_halt, torch.maximum(next_halt, next_continue))
                    outputs["target_q_continue"] = torch.sigmoid(target)
        return Carry(state=state, steps=steps, halted=halted, data=data), outputs
