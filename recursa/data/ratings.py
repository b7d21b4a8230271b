"""Per-puzzle ratings (a dataset's ``all__ratings.npy``, e.g. solver guesses for Sudoku-Extreme)
and the buckets ``recursa eval`` reports exact accuracy in."""

from __future__ import annotations

import math

from ..errors import RecursaError

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
