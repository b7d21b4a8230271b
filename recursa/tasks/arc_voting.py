"""ARC evaluation as the papers report it: voting across augmented views, pass@K, submission.json.

Every test-split row is one augmented version of one test input. Its final prediction is cropped
(the largest top-left all-colour rectangle), mapped back (inverse transform, then inverse colour
map, from the version's identifier ``task|||t{t}|||{perm}``) and counted as a vote for that test
input, with the model's halting confidence sigmoid(q_halt). Candidates are ranked by (votes, mean
confidence). pass@K: a test input is solved when its true output is among the top K. Two rules
turn that into a benchmark score, and both are always reported:

- ``pass@K`` (TRM's evaluator): a task scores the fraction of its test inputs solved; the score is
  the mean over tasks;
- ``all_tests_pass@K`` (HRM's ``arc_eval.ipynb``): a task counts only when all its test inputs are
  solved (at most ``pass@K``; equal when every task has one test input).

One ``ArcVoting`` object is one evaluation: votes never carry over to the next one (the official
evaluator accumulates them across evaluations of different checkpoints).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import storage
from ..errors import RecursaError
from .arc_grid import crop, invert_grid, parse_version

PASS_K = (1, 2, 5, 10, 100, 1000)


def _key(grid: np.ndarray) -> bytes:
    return bytes(grid.shape) + grid.tobytes()


class ArcVoting:
    """The ARC family's :class:`~recursa.tasks.base.Scorer`."""

    key = "arc"
    writes_submission = True  # result() carries the Kaggle submission
    pools_checkpoints = True  # eval --checkpoints: one vote per view and checkpoint (official protocol)

    def __init__(self, data_dir: str | Path, split_meta: dict | None = None, *, puzzle_identifiers=None,
                 puzzle_indices=None):
        root = Path(data_dir)
        for name in ("identifiers.json", "test_puzzles.json"):
            if not (root / name).is_file():
                raise RecursaError(f"{root / name}: missing (ARC evaluation needs a dataset from `recursa build arc`)")
        self.names = storage.read_json(root / "identifiers.json", expect=list)
        self.truth = {}
        # the held-out training tasks of --num-val: their rows vote only for themselves
        for name in ("test_puzzles.json", "val_puzzles.json"):
            if name == "val_puzzles.json" and not (root / name).is_file():
                continue
            truth = storage.read_json(root / name, expect=dict)
            try:
                # an output of null: unknown (tasks adapted to without solutions): answered, not scored
                self.truth.update({tid: [None if p["output"] is None else np.array(p["output"], dtype=np.uint8)
                                         for p in t["test"]] for tid, t in truth.items()})
            except (KeyError, TypeError, ValueError, OverflowError) as e:
                raise RecursaError(f"{root / name}: expected {{task id: {{\"test\": [{{\"output\": grid}}]}}}} "
                                   f"({type(e).__name__}: {e})") from None
        self.puzzle_identifiers = np.asarray(puzzle_identifiers)
        self.puzzle_indices = np.asarray(puzzle_indices)
        self.votes: dict[tuple[str, int], dict[bytes, list]] = {}
        self._parsed: dict[int, tuple[str, int, np.ndarray]] = {}

    @classmethod
    def for_split(cls, data_dir: str | Path, split) -> ArcVoting:
        return cls(data_dir, puzzle_identifiers=split.puzzle_identifiers, puzzle_indices=split.puzzle_indices)

    def _version(self, ident: int) -> tuple[str, int, np.ndarray]:
        v = self._parsed.get(ident)
        if v is None:
            v = self._parsed[ident] = parse_version(self.names[ident])
        return v

    def update(self, idx: np.ndarray, preds: np.ndarray, q_halt: np.ndarray, exact=None, scored=None) -> None:
        """Votes of test rows ``idx`` (predicted tokens (B, 900), halting logits (B,)); a row's own
        exactness is not used: the vote decides."""
        puzzle = np.searchsorted(self.puzzle_indices, idx, side="right") - 1
        pair = idx - self.puzzle_indices[puzzle]
        conf = 1.0 / (1.0 + np.exp(-np.asarray(q_halt, dtype=np.float64)))
        for i, grid in enumerate(crop(preds)):
            task, t, mapping = self._version(int(self.puzzle_identifiers[puzzle[i]]))
            if task not in self.truth:
                continue
            if grid.size:
                grid = invert_grid(grid, t, mapping)
            box = self.votes.setdefault((task, int(pair[i])), {})
            entry = box.get(_key(grid))
            if entry is None:
                box[_key(grid)] = [1, conf[i], grid]
            else:
                entry[0] += 1
                entry[1] += conf[i]

    def ranked(self, task: str, pair: int) -> list[np.ndarray]:
        """Candidate answers, best first: most votes, then highest mean confidence."""
        box = self.votes.get((task, pair), {})
        order = sorted(box.values(), key=lambda e: (e[0], e[1] / e[0]), reverse=True)
        return [e[2] for e in order]

    def result(self) -> dict:
        """pass@K under both rules over the tasks that received predictions, and the submission."""
        answered = sorted({task for task, _ in self.votes})
        if not answered:
            return {"tasks": 0}
        tasks = [t for t in answered if all(o is not None for o in self.truth[t])]
        fraction = {k: [] for k in PASS_K}
        all_tests = {k: [] for k in PASS_K}
        submission = {}
        for task in answered:
            outs = self.truth[task]
            per_k = {k: 0 for k in PASS_K}
            attempts = []
            for p, true in enumerate(outs):
                ranked = self.ranked(task, p)
                hits = [true is not None and r.shape == true.shape and np.array_equal(r, true) for r in ranked]
                first = hits.index(True) if True in hits else None
                for k in PASS_K:
                    per_k[k] += first is not None and first < k
                top = [r for r in ranked if r.size][:2]
                top = top or [np.zeros((1, 1), np.uint8)]
                top = top + [top[0]] * (2 - len(top))
                attempts.append({"attempt_1": top[0].tolist(), "attempt_2": top[1].tolist()})
            if task in tasks:
                for k in PASS_K:
                    fraction[k].append(per_k[k] / len(outs))
                    all_tests[k].append(float(per_k[k] == len(outs)))
            submission[task] = attempts
        res = {f"pass@{k}": float(np.mean(v)) if v else None for k, v in fraction.items()}
        res.update({f"all_tests_pass@{k}": float(np.mean(v)) if v else None for k, v in all_tests.items()})
        res["tasks"] = len(tasks)
        res["test_inputs"] = sum(len(self.truth[t]) for t in tasks)
        if len(answered) > len(tasks):
            res["unscored_tasks"] = len(answered) - len(tasks)  # outputs unknown: in the submission only
        res["submission"] = submission
        return res

    def lines(self, res: dict) -> list[str]:
        if not res.get("tasks"):
            return [f"ARC: {res['unscored_tasks']} task(s) answered, none scored (outputs unknown)"] \
                if res.get("unscored_tasks") else []
        ks = ("1", "2", "5", "10", "100", "1000")
        return [f"ARC ({res['tasks']} tasks, {res['test_inputs']} test inputs, voting over views"
                + (f", pooled over {res['checkpoints']} checkpoints" if res.get("checkpoints", 1) > 1 else "") + ")",
                "  pass@K, TRM rule (fraction of test inputs)  " + "  ".join(f"@{k} {res['pass@' + k]:.4f}" for k in ks),
                "  pass@K, HRM rule (all test inputs right)    "
                + "  ".join(f"@{k} {res['all_tests_pass@' + k]:.4f}" for k in ks)]

    def scalars(self, res: dict) -> dict[str, float]:
        return {f"ARC/{k}": v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
