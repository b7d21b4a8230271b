"""Per-puzzle ratings (a dataset's ``all__ratings.npy``, e.g. solver guesses for Sudoku-Extreme)
and the buckets ``recursa eval`` reports exact accuracy in."""

from __future__ import annotations

import math

import numpy as np

from ..errors import RecursaError
from .format import read_task_json

DEFAULT_BUCKETS = (0, 1, 10, 100)


def bucket_names(edges) -> list[str]:
    """Edges (0, 1, 10, 100) -> ["0", "1-9", "10-99", "100+"] (ratings are counts)."""
    names = []
    for k, lo in enumerate(edges):
        hi = edges[k + 1] if k + 1 < len(edges) else None
        if hi is None:
            names.append(f"{_fmt(lo)}+")
        elif hi - lo == 1 and float(lo).is_integer():
            names.append(_fmt(lo))
        else:
            names.append(f"{_fmt(lo)}-{_fmt(hi - 1) if float(hi).is_integer() and float(lo).is_integer() else _fmt(hi)}")
    return names


def _fmt(x) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def parse_buckets(text: str) -> tuple[float, ...]:
    try:
        edges = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise RecursaError(f"--rating-buckets {text!r}: expected increasing numbers separated by commas") from None
    if not edges or not all(math.isfinite(b) for b in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise RecursaError(f"--rating-buckets {text!r}: expected increasing numbers separated by commas")
    return edges


class RatingBuckets:
    """Exact accuracy per rating bucket: a :class:`~recursa.tasks.base.Scorer` for splits with
    per-puzzle ratings (Sudoku-Extreme builds). ``edges`` are the buckets' lower edges (a
    dataset's ``task.json`` ``rating_buckets``; default 0, 1, 10, 100); puzzles rated below the
    first edge are not counted."""

    key = "exact_by_rating"
    writes_submission = False
    pools_checkpoints = False

    def __init__(self, ratings, puzzle_indices, edges=None):
        self.ratings = np.asarray(ratings, dtype=np.float64)
        self.puzzle_indices = np.asarray(puzzle_indices)
        self.edges = np.asarray(edges or DEFAULT_BUCKETS, dtype=np.float64)
        self.names = bucket_names(tuple(self.edges.tolist()))
        self.n = np.zeros(len(self.edges), np.int64)
        self.ok = np.zeros(len(self.edges), np.int64)

    @classmethod
    def for_split(cls, data_dir, split) -> RatingBuckets | None:
        """The scorer for a split that has ratings, else None."""

        ratings = split.extras.get("ratings")
        if ratings is None:
            return None
        return cls(ratings, split.puzzle_indices, read_task_json(data_dir).get("rating_buckets"))

    def update(self, idx, preds, q_halt, exact, scored) -> None:
        puzzle = np.searchsorted(self.puzzle_indices, idx, side="right") - 1
        b = np.searchsorted(self.edges, self.ratings[puzzle], side="right") - 1
        use = np.asarray(scored, bool) & (b >= 0)
        np.add.at(self.n, b[use], 1)
        np.add.at(self.ok, b[use], np.asarray(exact, bool)[use].astype(np.int64))

    def result(self) -> dict:
        return {name: {"n": int(c), "exact": float(k / c) if c else None}
                for name, c, k in zip(self.names, self.n, self.ok)}

    def lines(self, res: dict) -> list[str]:
        return ["exact by rating  " + "  ".join(f"{k}: {v['exact']:.3f} (n={v['n']})" for k, v in res.items() if v["n"])]

    def scalars(self, res: dict) -> dict[str, float]:
        return {f"exact_rating_{name}": b["exact"] for name, b in res.items() if b["n"]}
