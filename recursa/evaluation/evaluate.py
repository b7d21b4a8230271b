"""Held-out evaluation: every puzzle runs all supervision steps (as in the official code) and the
answer is scored after each of them.

Metrics (the official definitions):
- ``token_accuracy``: per puzzle, the fraction of labelled positions predicted right, averaged;
- ``exact_accuracy``: the whole answer right; ``exact_by_step[k]``: the same after step k+1;
- ``valid_rate``: the answer obeys the task's rules (the task checker; may exceed exact accuracy
  when a puzzle has several valid answers);
- ``mean_steps``: supervision steps used per puzzle; ``halt_step_mean``: the step at which the
  model's own halting head first says "done" (q_halt > 0), or the last step;
- ``n``: puzzles evaluated;
- the family's own metric, when its task has a scorer (:meth:`Task.scorer`), under the scorer's
  key: ``arc`` (voting across views, pass@K), ``exact_by_rating`` (Sudoku-Extreme builds: exact
  accuracy and count per rating bucket).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.dataset import iter_eval
from ..data.format import Split
from ..device import to_device
from ..models.act import refine
from ..models import ACT
from ..tasks import Task
from ..data.format import IGNORE_LABEL_ID


def evaluate(model: ACT, split: Split, task: Task | None, *, batch_size: int = 256, device=None,
             limit: int = 0, steps: int | None = None, scorer=None) -> dict:
    """Score ``model`` on ``split``. ``scorer`` (a :class:`~recursa.tasks.base.Scorer`, e.g. ARC's
    voting) receives every row's final prediction, halting logit and exactness; its result (less
    any submission) goes under ``scorer.key``."""
    device = device or next(model.parameters()).device
    steps = steps or model.halt_max_steps
    n = 0
    token_acc = 0.0
    exact = np.zeros(steps)
    valid = 0
    halt_step = 0
    for idx, batch_np in iter_eval(split, batch_size, limit):
        batch = to_device(batch_np, device)
        labels = batch["labels"]
        mask = labels != IGNORE_LABEL_ID
        counts = mask.sum(-1)
        keep = counts > 0  # rows without labels are not scored
        first_halt = torch.full_like(counts, steps)
        preds = q_last = None
        for k, out in enumerate(refine(model, batch, steps)):
            preds, q_last = out["preds"], out["q_halt"]
            correct = mask & (preds == labels)
            seq_ok = (correct.sum(-1) == counts) & keep
            exact[k] += seq_ok.sum().item()
            first_halt = torch.where((out["q_halt"] > 0) & (first_halt == steps), k + 1, first_halt)
        token_acc += torch.where(keep, correct.sum(-1) / counts.clamp_min(1), 0).sum().item()
        n += int(keep.sum().item())
        halt_step += int(torch.where(keep, first_halt, 0).sum().item())
        if scorer is not None:
            scorer.update(idx, preds.cpu().numpy(), q_last.float().cpu().numpy(), seq_ok.cpu().numpy(),
                          keep.cpu().numpy())
        if task is not None and hasattr(task, "check"):
            ok = task.check(batch_np["inputs"], preds.cpu().numpy())
            valid += int(ok[keep.cpu().numpy()].sum())
    d = max(n, 1)
    extra = {}
    if scorer is not None:
        extra[scorer.key] = {k: v for k, v in scorer.result().items() if k != "submission"}
    return {
        "token_accuracy": token_acc / d,
        "exact_accuracy": float(exact[-1] / d),
        "valid_rate": (valid / d) if task is not None and hasattr(task, "check") else None,
        "mean_steps": float(steps),
        "halt_step_mean": halt_step / d,
        "exact_by_step": [float(x / d) for x in exact],
        "n": n,
        **extra,
    }
