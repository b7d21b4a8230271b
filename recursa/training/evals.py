"""Evaluations during a training run: the model on the evaluation split (val/ when the dataset has
one) with the family's scorer, the row each one logs, and ``train.keep_best``."""

from __future__ import annotations

from ..data.format import Split
from ..evaluation.evaluate import evaluate
from . import run_dir
from .logging import eval_row


class Evaluations:
    def __init__(self, cfg, data, device, runs, progress):
        self.cfg, self.data, self.device, self.runs, self.progress = cfg, data, device, runs, progress
        self.best: dict | None = None  # keep_best: {"metric", "value", "step", "split"} of RUN/checkpoints/best

    def run(self, model, split: Split | None = None) -> dict:
        """``model`` on ``split`` (default: the evaluation split), with the family's scorer (ARC:
        voting), fresh for every evaluation; its scalars under ``_scalars``."""
        e = self.cfg.eval
        split = self.data.eval if split is None else split
        task = self.data.task
        scorer = task.scorer(self.cfg.train.data, split) if task is not None else None
        res = evaluate(model, split, task, batch_size=e.batch_size, device=self.device, limit=e.limit, scorer=scorer)
        if scorer is not None:
            res["_scalars"] = scorer.scalars(res[scorer.key])
        return res

    def record(self, res: dict, step: int, elapsed: float, meta: dict, weights) -> None:
        """Keep the best (``weights()`` its inference weights), log the row and the progress line."""
        if self.cfg.train.keep_best:
            self._keep_best(res, step, meta, weights)
        row = eval_row(res, "eval")  # the family's metric (ARC pass@K, exact by rating) flat
        row["eval/split"] = self.data.eval_name
        row["elapsed_s"] = elapsed  # training time at this evaluation (the accuracy-time curve)
        self.runs.log_row(step, row)
        valid = f"  valid {res['valid_rate']:.3f}" if res.get("valid_rate") is not None else ""  # families with a checker
        self.progress.message(f"eval ({self.data.eval_name}) @ step {step}: exact {res['exact_accuracy']:.3f}{valid}  "
                              f"token {res['token_accuracy']:.3f}  by step {' '.join(f'{x:.2f}' for x in res['exact_by_step'])}")

    def _keep_best(self, res: dict, step: int, meta: dict, weights) -> None:
        """When this evaluation beats the best so far, its weights become RUN/checkpoints/best
        (written atomically; weights and config only, not a resume point)."""
        best = run_dir.best_record(res, self.cfg.train.keep_best, self.best, step, self.data.eval_name)
        if best is None:
            return
        self.best = best
        run_dir.save_best(self.runs.path, {**meta, "step": step, "best": best}, weights())
        self.progress.message(f"best {best['metric']} so far: {best['value']:.4f} at step {step} -> "
                              f"{self.runs.path / 'best'}")
