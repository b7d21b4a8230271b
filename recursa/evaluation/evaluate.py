"""Held-out evaluation: the puzzles run through the inference engine (:mod:`.engine`) and the
answer is scored after every supervision step.

The default protocol is the papers': every puzzle runs the trained ``halt_max_steps`` steps, one
trajectory. Metrics (the official definitions where there is one):
- ``token_accuracy``: per puzzle, the fraction of labelled positions predicted right, averaged;
- ``exact_accuracy``: the whole answer right; ``exact_by_step[k]``: the same for the answer after
  step k+1 (a puzzle that stopped earlier keeps its final answer);
- ``valid_rate``: the answer obeys the task's rules (the task checker; may exceed exact accuracy
  when a puzzle has several valid answers); ``valid_by_step`` with ``curve``;
- ``mean_steps``: supervision steps run per puzzle (less than the maximum with adaptive halting);
  ``halt_step_mean``: the step at which the model's halting head first says "done"
  (sigmoid(q_halt) >= the protocol's threshold, 0.5 by default: q_halt >= 0), or the last step;
  ``halt_histogram``: how many puzzles it first says so at each step (the last entry: never);
- ``network_calls``: network applications in all (rows x calls per step, every trajectory), and
  ``calls_by_step``: cumulative after each step (accuracy against compute);
- ``protocol``: how the model was run; ``n``: puzzles evaluated; ``per_puzzle`` (optional): the
  steps each used, its final halting confidence, whether it is exact;
- the family's own metric, when its task has a scorer (:meth:`Task.scorer`), under the scorer's
  key: ``arc`` (voting across views, pass@K), ``exact_by_rating`` (Sudoku-Extreme builds: exact
  accuracy and count per rating bucket).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.dataset import iter_eval
from ..data.format import IGNORE_LABEL_ID, Split
from ..device import to_device
from ..inference.engine import Protocol, think
from ..models import ACT
from ..tasks import Task


def evaluate(model: ACT, split: Split, task: Task | None, *, batch_size: int = 256, device=None,
             limit: int = 0, steps: int | None = None, scorer=None, protocol: Protocol | None = None,
             curve: bool = False, per_puzzle: bool = False) -> dict:
    """Score ``model`` on ``split`` under ``protocol`` (default: ``steps`` or the trained depth,
    fixed). ``scorer`` (a :class:`~recursa.tasks.base.Scorer`, e.g. ARC's voting) receives every
    row's final prediction, halting logit and exactness; its result (less any submission) goes
    under ``scorer.key``. ``curve`` adds the valid rate after every step."""
    device = device or next(model.parameters()).device
    if protocol is None:
        protocol = Protocol.as_trained(model, steps)
    M = protocol.max_steps
    check = task.check if task is not None and hasattr(task, "check") else None
    n = 0
    token_acc = 0.0
    exact = np.zeros(M)
    valid_steps = np.zeros(M)
    calls_by_step = np.zeros(M, dtype=np.int64)
    hist = np.zeros(M + 1, dtype=np.int64)
    valid = 0
    steps_used = 0
    halt_step = 0
    puzzles = {"steps": [], "confidence": [], "exact": []}
    for idx, batch_np in iter_eval(split, batch_size, limit):
        batch = to_device(batch_np, device)
        labels = batch["labels"]
        mask = labels != IGNORE_LABEL_ID
        counts = mask.sum(-1)
        keep = counts > 0  # rows without labels are not scored
        keep_np = keep.cpu().numpy()
        snap = None
        for snap in think(model, batch, protocol, check=check, task=task):
            k = snap.step - 1
            seq_ok = ((mask & (snap.preds == labels)).sum(-1) == counts) & keep
            exact[k] += seq_ok.sum().item()
            calls_by_step[k] += snap.calls
            if curve and check is not None:
                ok = snap.valid if snap.valid is not None else check(batch_np["inputs"], snap.preds.cpu().numpy())
                valid_steps[k] += int(np.asarray(ok)[keep_np].sum())
        # a puzzle that stopped early keeps its answer for the steps it did not run
        for j in range(snap.step, M):
            exact[j] += seq_ok.sum().item()
            calls_by_step[j] += snap.calls
            if curve and check is not None:
                valid_steps[j] += int(np.asarray(ok)[keep_np].sum())
        preds = snap.preds
        correct = mask & (preds == labels)
        token_acc += torch.where(keep, correct.sum(-1) / counts.clamp_min(1), 0).sum().item()
        n += int(keep.sum().item())
        first = snap.first_confident.clamp_max(M + 1)
        halt_step += int(torch.where(keep, first.clamp_max(M), 0).sum().item())
        steps_used += int(torch.where(keep, snap.steps, 0).sum().item())
        np.add.at(hist, (first[keep] - 1).cpu().numpy(), 1)
        if scorer is not None:
            scorer.update(idx, preds.cpu().numpy(), snap.q_halt.float().cpu().numpy(), seq_ok.cpu().numpy(), keep_np)
        if check is not None:
            ok = snap.valid if snap.valid is not None else check(batch_np["inputs"], preds.cpu().numpy())
            valid += int(np.asarray(ok)[keep_np].sum())
        if per_puzzle:
            puzzles["steps"] += snap.steps[keep].tolist()
            puzzles["confidence"] += [round(x, 6) for x in torch.sigmoid(snap.q_halt[keep]).tolist()]
            puzzles["exact"] += seq_ok[keep].tolist()
    d = max(n, 1)
    extra = {}
    if scorer is not None:
        extra[scorer.key] = {k: v for k, v in scorer.result().items() if k != "submission"}
    if curve:
        extra["valid_by_step"] = [float(x / d) for x in valid_steps] if check is not None else None
    if per_puzzle:
        extra["per_puzzle"] = puzzles
    return {
        "token_accuracy": token_acc / d,
        "exact_accuracy": float(exact[-1] / d),
        "valid_rate": (valid / d) if check is not None else None,
        "mean_steps": steps_used / d,
        "halt_step_mean": halt_step / d,
        "exact_by_step": [float(x / d) for x in exact],
        "n": n,
        "network_calls": int(calls_by_step[-1]),
        "calls_by_step": [int(x) for x in calls_by_step],
        "halt_histogram": [int(x) for x in hist],
        "protocol": protocol.describe(),
        **extra,
    }
