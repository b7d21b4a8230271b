"""A halting threshold that can be trusted: calibrated on held-out puzzles, stored in the checkpoint.

The halting head is trained on training puzzles, which the model soon answers right within a
step or two; on puzzles it has never seen its confidence says "done" too early (on the demo model,
stopping at sigmoid(q_halt) >= 0.5 lost 19 points of exact accuracy). So the threshold that
``--adaptive`` uses is chosen after training on the dataset's validation split (``val/``, disjoint
from train and test, made by ``recursa build ... --num-val N``):

1. every validation puzzle runs the trained number of steps, fixed; the answer and the halting
   confidence after every step are kept (an adaptive run is the same computation cut short, so
   one fixed run gives the result of every threshold);
2. for each threshold of :data:`GRID`, from the most cautious down, a puzzle stops at the first
   step whose confidence reaches it; the lowest threshold for which it and every higher one keep
   exact accuracy (and, where the family has a rule checker, the valid rate) within
   ``tolerance`` of the fixed protocol is chosen;
3. the choice, with what it measured, goes into the checkpoint's ``config.json`` under
   ``halting``; ``recursa eval --adaptive`` and ``recursa solve --adaptive`` use it unless
   ``--halt-threshold`` is given, and say which they used. Checkpoints without it (official
   imports, older runs) keep the official rule, 0.5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import storage
from ..data.dataset import iter_eval
from ..data.format import IGNORE_LABEL_ID, Split
from ..device import to_device
from ..errors import RecursaError
from ..models import ACT
from .engine import Protocol, calls_per_step, think

#: Thresholds tried, most cautious first.
GRID = (0.9999, 0.999, 0.995, 0.99, 0.98, 0.97, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5,
        0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1)
OFFICIAL_THRESHOLD = 0.5
DEFAULT_TOLERANCE = 0.002  # 0.2 points: one puzzle in 500


def step_outcomes(model: ACT, split: Split, task, *, batch_size: int = 256, device=None,
                  limit: int = 0) -> dict[str, np.ndarray]:
    """Run every puzzle the trained number of steps; per puzzle and step: ``exact`` (N, M) bool,
    ``valid`` (N, M) bool or None (no checker), ``confidence`` (N, M) sigmoid(q_halt)."""
    device = device or next(model.parameters()).device
    protocol = Protocol(max_steps=model.halt_max_steps)
    check = getattr(task, "check", None) if task is not None else None
    exact, valid, conf = [], [], []
    for _, batch_np in iter_eval(split, batch_size, limit):
        batch = to_device(batch_np, device)
        labels = batch["labels"]
        mask = labels != IGNORE_LABEL_ID
        counts = mask.sum(-1)
        keep = (counts > 0).cpu().numpy()
        e, v, c = [], [], []
        for snap in think(model, batch, protocol):
            e.append((((mask & (snap.preds == labels)).sum(-1) == counts).cpu().numpy())[keep])
            c.append(torch.sigmoid(snap.q_halt.double()).cpu().numpy()[keep])
            if check is not None:
                v.append(np.asarray(check(batch_np["inputs"], snap.preds.cpu().numpy()), dtype=bool)[keep])
        exact.append(np.stack(e, 1))
        conf.append(np.stack(c, 1))
        if check is not None:
            valid.append(np.stack(v, 1))
    return {"exact": np.concatenate(exact), "confidence": np.concatenate(conf),
            "valid": np.concatenate(valid) if valid else None}


def adaptive_outcome(outcomes: dict[str, np.ndarray], threshold: float) -> dict[str, float]:
    """What ``--adaptive --halt-threshold threshold`` gives (capped at the trained steps), from a
    fixed run's outcomes: exact accuracy, valid rate, mean steps."""
    conf = outcomes["confidence"]
    N, M = conf.shape
    hit = conf >= threshold
    stop = np.where(hit.any(1), hit.argmax(1), M - 1)  # 0-based step each puzzle stops at
    rows = np.arange(N)
    out = {"exact": float(outcomes["exact"][rows, stop].mean()), "mean_steps": float(stop.mean() + 1)}
    if outcomes["valid"] is not None:
        out["valid"] = float(outcomes["valid"][rows, stop].mean())
    return out


def choose_threshold(outcomes: dict[str, np.ndarray], tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """The lowest threshold of :data:`GRID` that, with every higher one, keeps exact accuracy (and
    the valid rate) within ``tolerance`` of the fixed protocol; ``threshold`` None when even the
    most cautious does not."""
    fixed = {"exact": float(outcomes["exact"][:, -1].mean())}
    if outcomes["valid"] is not None:
        fixed["valid"] = float(outcomes["valid"][:, -1].mean())
    chosen, at = None, None
    for t in GRID:
        got = adaptive_outcome(outcomes, t)
        if any(got[k] < fixed[k] - tolerance for k in fixed):
            break
        chosen, at = t, got
    N, M = outcomes["confidence"].shape
    result = {"threshold": chosen, "n": int(N), "max_steps": int(M), "tolerance": tolerance,
              "fixed_exact": fixed["exact"]}
    if "valid" in fixed:
        result["fixed_valid"] = fixed["valid"]
    if at is not None:
        result.update({"adaptive_exact": at["exact"], "adaptive_mean_steps": at["mean_steps"]})
        if "valid" in at:
            result["adaptive_valid"] = at["valid"]
    return result


def calibrate(model: ACT, split: Split, task, *, split_name: str = "val", step: int | None = None,
              batch_size: int = 256, device=None, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Choose the threshold on ``split`` (see the module docstring); returns the ``halting`` record."""
    outcomes = step_outcomes(model, split, task, batch_size=batch_size, device=device)
    if not len(outcomes["exact"]):
        raise RecursaError(f"the {split_name} split has no labelled puzzles to calibrate halting on")
    rec = choose_threshold(outcomes, tolerance)
    rec.update({"split": split_name, "calls_per_step": calls_per_step(model)})
    if step is not None:
        rec["step"] = step
    return rec


def store(ckpt: Path, record: dict) -> None:
    """Put ``record`` into the checkpoint's config.json under ``halting`` (atomically; the weights'
    checksums there are unchanged)."""
    path = Path(ckpt) / "config.json"
    meta = storage.read_json(path, expect=dict)
    meta["halting"] = record
    storage.atomic_write_text(path, json.dumps(meta, indent=1))


def resolve_threshold(meta: dict, given: float | None, source: str = "config.json") -> tuple[float | None, str]:
    """The threshold ``--adaptive`` uses and why: ``given`` (``--halt-threshold``), else the
    checkpoint's calibrated one, else the official 0.5. None: calibration found that no
    threshold keeps the accuracy, so the puzzle runs every step. ``source`` names the
    checkpoint's config.json in errors."""
    if given is not None:
        return given, f"{given} (--halt-threshold)"
    rec = meta.get("halting")
    if rec is not None:
        t = rec.get("threshold", "missing") if isinstance(rec, dict) else "missing"
        if not (t is None or (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < 1)):
            raise RecursaError(f"{source}: 'halting.threshold' must be a number in (0, 1) or null, got {t!r}")
        where = f"calibrated on {rec.get('n')} {rec.get('split', 'val')} puzzles after training"
        if rec["threshold"] is None:
            return None, f"none ({where}: no threshold kept the accuracy; every puzzle runs every step)"
        return float(rec["threshold"]), f"{rec['threshold']} ({where})"
    return OFFICIAL_THRESHOLD, f"{OFFICIAL_THRESHOLD} (the official rule; this checkpoint has no calibrated threshold)"


def adaptive_setting(meta: dict, adaptive: bool, given: float | None, source: str) -> tuple[bool, float, str | None]:
    """(adaptive, threshold, why) for a Protocol from the command line's ``--adaptive`` and
    ``--halt-threshold`` (None: not given) and the checkpoint's meta; ``why`` says where the
    threshold came from (None when not adaptive)."""
    if not adaptive:
        return False, given if given is not None else OFFICIAL_THRESHOLD, None
    t, why = resolve_threshold(meta, given, source)
    if t is None:
        return False, OFFICIAL_THRESHOLD, why
    return True, t, why
