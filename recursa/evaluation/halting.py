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
   step whose confidence reaches it; the thresholds for which it and every higher one keep exact
   accuracy (and, where the family has a rule checker, the valid rate) within ``tolerance`` of
   the fixed protocol are acceptable, and the most cautious of them that costs at most ``slack``
   (5%) more steps than the lowest acceptable one is chosen. Why the slack: on the demo's models
   the steps fall steeply to ~2 at 0.995 and then barely (1.86 -> 1.73 from 0.995 to 0.95), while
   the puzzles lost on unseen data rise (0 -> 6 of 500 on one run whose 500 validation puzzles
   lost none at 0.95);
3. this is done for each halting *signal* (:func:`signals`): the q head's sigmoid(q_halt), and the
   model's probability of its own answer (:func:`recursa.models.base.answer_log_odds`), which
   needs no training. A detached q head (``model.halt_detach``, the CPU recipes') reads one
   position's state and never learns what the whole answer looks like: on the demo model it gave
   right answers 0.49 and wrong ones 0.48, and its calibrated threshold saved nothing, while the
   answer's probability (1.00 against 0.59) cut the steps to about a quarter at the same accuracy.
   The signal whose threshold saves the most steps wins;
4. the choice, with what it measured, goes into the checkpoint's ``config.json`` under
   ``halting``; ``recursa eval --adaptive`` and ``recursa solve --adaptive`` use it unless
   ``--halt-threshold`` / ``--halt-signal`` are given, and say which they used. Checkpoints
   without it (official imports, older runs) keep the official rule: the q head at 0.5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import storage
from ..data.dataset import iter_eval
from ..data.format import IGNORE_LABEL_ID, Split, check_task_matches, load_split
from ..device import to_device
from ..errors import RecursaError
from ..inference.engine import Protocol, calls_per_step, think
from ..models import ACT

#: Thresholds tried, most cautious first.
GRID = (0.9999, 0.999, 0.995, 0.99, 0.98, 0.97, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5,
        0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1)
OFFICIAL_THRESHOLD = 0.5
DEFAULT_TOLERANCE = 0.002  # 0.2 points: one puzzle in 500
#: A threshold below the most cautious one within this fraction of its mean steps saves too
#: little to be worth it (see :func:`choose_threshold`)
DEFAULT_SLACK = 0.05


def signals(model: ACT) -> tuple[str, ...]:
    """The halting signals calibration tries on ``model``, its own first: a model that halts on
    its answer's probability has no trained q head; one with a q head can halt on either."""
    own = model.inner.cfg.halt_signal
    return ("answer",) if own == "answer" else ("head", "answer")


def step_outcomes(model: ACT, split: Split, task, *, batch_size: int = 256, device=None,
                  limit: int = 0, signal: str | None = None) -> dict[str, np.ndarray]:
    """Run every puzzle the trained number of steps; per puzzle and step: ``exact`` (N, M) bool,
    ``valid`` (N, M) bool or None (no checker), ``confidence`` (N, M) sigmoid(q_halt) of
    ``signal`` (None: the model's own)."""
    device = device or next(model.parameters()).device
    protocol = Protocol.as_trained(model, halt_signal=signal)
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


def choose_threshold(outcomes: dict[str, np.ndarray], tolerance: float = DEFAULT_TOLERANCE,
                     slack: float = DEFAULT_SLACK) -> dict:
    """The thresholds of :data:`GRID` that, with every higher one, keep exact accuracy (and the
    valid rate) within ``tolerance`` of the fixed protocol are acceptable; of those, the most
    cautious whose mean steps are within ``slack`` (a fraction) of the lowest acceptable one's is
    chosen: a lower threshold that saves a few percent of the steps is not worth the risk that
    the validation puzzles happened to pass it. ``threshold`` None when even the most cautious is
    not acceptable; ``lowest_threshold`` the lowest acceptable."""
    fixed = {"exact": float(outcomes["exact"][:, -1].mean())}
    if outcomes["valid"] is not None:
        fixed["valid"] = float(outcomes["valid"][:, -1].mean())
    acceptable = []
    for t in GRID:
        got = adaptive_outcome(outcomes, t)
        if any(got[k] < fixed[k] - tolerance for k in fixed):
            break
        acceptable.append((t, got))
    chosen, at = None, None
    if acceptable:
        bound = acceptable[-1][1]["mean_steps"] * (1 + slack)
        chosen, at = next((t, got) for t, got in acceptable if got["mean_steps"] <= bound + 1e-9)
    N, M = outcomes["confidence"].shape
    result = {"threshold": chosen, "n": int(N), "max_steps": int(M), "tolerance": tolerance, "slack": slack,
              "lowest_threshold": acceptable[-1][0] if acceptable else None, "fixed_exact": fixed["exact"]}
    if "valid" in fixed:
        result["fixed_valid"] = fixed["valid"]
    if at is not None:
        result.update({"adaptive_exact": at["exact"], "adaptive_mean_steps": at["mean_steps"]})
        if "valid" in at:
            result["adaptive_valid"] = at["valid"]
    return result


def choose_signal(by_signal: dict[str, dict]) -> str:
    """Of the signals' :func:`choose_threshold` records (in order of preference), the one whose
    threshold saves the most steps; the first when none has a threshold or they tie."""
    best, best_steps = next(iter(by_signal)), float("inf")
    for name, rec in by_signal.items():
        if rec["threshold"] is not None and rec["adaptive_mean_steps"] < best_steps - 1e-9:
            best, best_steps = name, rec["adaptive_mean_steps"]
    return best


def calibrate(model: ACT, split: Split, task, *, split_name: str = "val", step: int | None = None,
              batch_size: int = 256, device=None, tolerance: float = DEFAULT_TOLERANCE,
              slack: float = DEFAULT_SLACK) -> dict:
    """Choose the signal and threshold on ``split`` (see the module docstring); returns the
    ``halting`` record: the chosen signal's :func:`choose_threshold` record with ``signal``, and
    every signal's under ``candidates``."""
    by_signal = {}
    for signal in signals(model):
        outcomes = step_outcomes(model, split, task, batch_size=batch_size, device=device, signal=signal)
        if not len(outcomes["exact"]):
            raise RecursaError(f"the {split_name} split has no labelled puzzles to calibrate halting on")
        by_signal[signal] = choose_threshold(outcomes, tolerance, slack)
    chosen = choose_signal(by_signal)
    rec = dict(by_signal[chosen])
    rec.update({"signal": chosen, "split": split_name, "calls_per_step": calls_per_step(model),
                "candidates": {name: {k: r[k] for k in ("threshold", "adaptive_exact", "adaptive_mean_steps") if k in r}
                               for name, r in by_signal.items()}})
    if step is not None:
        rec["step"] = step
    return rec


def calibrate_run(ckpt: Path, model: ACT, data_dir, task, *, step: int, batch_size: int, device) -> str:
    """:func:`calibrate` on the ``val/`` split of ``data_dir`` (checked against ``task``), stored
    into the checkpoint ``ckpt``: what a run with ``train.calibrate_halt`` does at its end. Returns
    the line the training log says about it."""
    val = load_split(data_dir, "val")
    if task is not None:
        check_task_matches(task, val.meta, Path(data_dir), "val")
    rec = calibrate(model, val, task, step=step, batch_size=batch_size, device=device)
    store(ckpt, rec)
    return describe(rec)


def store(ckpt: Path, record: dict) -> None:
    """Put ``record`` into the checkpoint's config.json under ``halting`` (atomically; the weights'
    checksums there are unchanged)."""
    path = Path(ckpt) / "config.json"
    meta = storage.read_json(path, expect=dict)
    meta["halting"] = record
    storage.atomic_write_text(path, json.dumps(meta, indent=1))


SIGNAL_WORDS = {"head": "the q head", "answer": "the answer's probability"}


def describe(rec: dict) -> str:
    """One line on a calibration record, for the training log."""
    if rec["threshold"] is None:
        return (f"halting: no threshold keeps the accuracy on {rec['n']} validation puzzles; "
                "--adaptive will run every step")
    return (f"halting: --adaptive will stop at confidence {rec['threshold']} of "
            f"{SIGNAL_WORDS[rec['signal']]} (on {rec['n']} validation "
            f"puzzles: exact {rec['adaptive_exact']:.3f} in {rec['adaptive_mean_steps']:.2f} steps, fixed "
            f"{rec['fixed_exact']:.3f} in {rec['max_steps']})")


def resolve_threshold(meta: dict, given: float | None, source: str = "config.json",
                      signal: str | None = None) -> tuple[float | None, str | None, str]:
    """The threshold and signal ``--adaptive`` uses and why. The signal: ``signal``
    (``--halt-signal``), else the calibrated one, else None (the model's own). The threshold:
    ``given`` (``--halt-threshold``), else the checkpoint's calibrated one if it was calibrated
    for that signal, else the official 0.5. A threshold of None: calibration found that no
    threshold keeps the accuracy, so the puzzle runs every step. ``source`` names the checkpoint's
    config.json in errors."""
    rec = meta.get("halting")
    if rec is not None:
        if not isinstance(rec, dict):
            raise RecursaError(f"{source}: 'halting' must be an object, got {type(rec).__name__}")
        t = rec.get("threshold", "missing")
        if not (t is None or (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < 1)):
            raise RecursaError(f"{source}: 'halting.threshold' must be a number in (0, 1) or null, got {t!r}")
        if rec.get("signal", "head") not in SIGNAL_WORDS:
            raise RecursaError(f"{source}: 'halting.signal' must be one of {sorted(SIGNAL_WORDS)}, got {rec['signal']!r}")
    model_cfg = meta.get("config", {}).get("model") if isinstance(meta.get("config"), dict) else None
    own = model_cfg.get("halt_signal", "head") if isinstance(model_cfg, dict) else "head"
    calibrated = rec.get("signal", own) if rec is not None else None
    use = signal or calibrated  # None: the model's own
    words = SIGNAL_WORDS[use or own]
    if given is not None:
        return given, use, f"{given} (--halt-threshold) on {words}"
    if rec is not None and (use or own) == calibrated:
        where = f"calibrated on {rec.get('n')} {rec.get('split', 'val')} puzzles after training"
        if rec["threshold"] is None:
            return None, use, f"none ({where}: no threshold kept the accuracy; every puzzle runs every step)"
        return float(rec["threshold"]), use, f"{rec['threshold']} on {words} ({where})"
    why = ("this checkpoint has no calibrated threshold" if rec is None
           else f"calibrated for {SIGNAL_WORDS[calibrated]}, not for this signal")
    return OFFICIAL_THRESHOLD, use, f"{OFFICIAL_THRESHOLD} on {words} (the official rule; {why})"


def adaptive_setting(meta: dict, adaptive: bool, given: float | None, source: str,
                     signal: str | None = None) -> tuple[bool, float, str | None, str | None]:
    """(adaptive, threshold, signal, why) for a Protocol from the command line's ``--adaptive``,
    ``--halt-threshold`` and ``--halt-signal`` (None: not given) and the checkpoint's meta; ``why``
    says where the threshold came from (None when not adaptive)."""
    if signal is not None and signal not in SIGNAL_WORDS:
        raise RecursaError(f"--halt-signal {signal!r}: choose one of {', '.join(SIGNAL_WORDS)}")
    if not adaptive:
        return False, given if given is not None else OFFICIAL_THRESHOLD, signal, None
    t, use, why = resolve_threshold(meta, given, source, signal)
    if t is None:
        return False, OFFICIAL_THRESHOLD, use, why
    return True, t, use, why
