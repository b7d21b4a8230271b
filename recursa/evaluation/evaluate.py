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
- ``exact_by_rating``: when the split has per-puzzle ratings (Sudoku-Extreme builds), exact
  accuracy and count per rating bucket (bucket lower edges from the dataset's ``task.json``).
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
from ..data.ratings import DEFAULT_BUCKETS, bucket_names


def evaluate(model: ACT, split: Split, task: Task | None, *, batch_size: int = 256, device=None,
             limit: int = 0, steps: int | None = None, rating_buckets=None, voting=None) -> dict:
    """Score ``model`` on ``split``. ``voting`` (e.g. :class:`~recursa.evaluation.arc.ArcVoting`)
    receives every row's final prediction and halting logit; its result goes under ``"arc"``."""
    device = device or next(model.parameters()).device
    steps = steps or model.halt_max_steps
    n = 0
    token_acc = 0.0
    exact = np.zeros(steps)
    valid = 0
    halt_step = 0
    ratings = split.extras.get("ratings")
    if ratings is not None:
        edges = np.asarray(rating_buckets or DEFAULT_BUCKETS, dtype=np.float64)
        names = bucket_names(tuple(edges.tolist()))
        bucket_n, bucket_ok = np.zeros(len(edges), np.int64), np.zeros(len(edges), np.int64)
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
        if voting is not None:
            voting.update(idx, preds.cpu().numpy(), q_last.float().cpu().numpy())
        if task is not None and hasattr(task, "check"):
            ok = task.check(batch_np["inputs"], preds.cpu().numpy())
            valid += int(ok[keep.cpu().numpy()].sum())
        if ratings is not None:
            puzzle = np.searchsorted(split.puzzle_indices, idx, side="right") - 1
            b = np.searchsorted(edges, np.asarray(ratings)[puzzle], side="right") - 1
            scored = keep.cpu().numpy() & (b >= 0)
            np.add.at(bucket_n, b[scored], 1)
            np.add.at(bucket_ok, b[scored], seq_ok.cpu().numpy()[scored].astype(np.int64))
    d = max(n, 1)
    extra = {}
    if voting is not None:
        extra["arc"] = {k: v for k, v in voting.result().items() if k != "submission"}
    if ratings is not None:
        extra["exact_by_rating"] = {name: {"n": int(c), "exact": float(k / c) if c else None}
                                    for name, c, k in zip(names, bucket_n, bucket_ok)}
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
