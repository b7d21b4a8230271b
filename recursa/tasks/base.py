"""What the trainer, evaluator and CLI need from a puzzle family, in token space.

A task is a small object built from its parameters (stored in the dataset's ``task.json`` and in
every checkpoint), so a checkpoint knows how to parse, check and draw its puzzles.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Task(Protocol):
    name: str  # registry key, e.g. "sudoku"
    vocab_size: int
    seq_len: int

    def params(self) -> dict:
        """Parameters that rebuild this task with ``TASKS[name](**params)``."""

    def describe(self) -> str:
        """Human name, e.g. "6x6 Sudoku (2x3 boxes)"."""

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        """User text -> input tokens (seq_len,), or a RecursaError naming the position."""

    def check(self, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        """(B, L) input tokens, (B, L) predicted tokens -> (B,) bool: the answer obeys the rules."""

    def render(self, tokens: np.ndarray) -> str:
        """Draw input or answer tokens as text."""


def read_benchmark_csv(path) -> tuple[list[str], list[str], list[str] | None, list[int]]:
    """The CSV layout of the HRM benchmarks (``source,question,answer,rating``: Sudoku-Extreme,
    Maze-Hard) -> (questions, answers, ratings or None, 1-based line numbers), strings unstripped.
    Columns are found by name; a missing column, a row of the wrong width or an unreadable file
    is an error naming the file and line."""
    import csv
    from pathlib import Path

    from ..errors import RecursaError

    path = Path(path)
    questions, answers, ratings, lines = [], [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise RecursaError(f"{path}: empty file; expected a header line source,question,answer,rating")
            header = [h.strip().lower() for h in header]
            missing = [c for c in ("question", "answer") if c not in header]
            if missing:
                raise RecursaError(f"{path}:1: header {','.join(header)!r} lacks column(s) {', '.join(missing)} "
                                   "(expected source,question,answer,rating)")
            qi, ai = header.index("question"), header.index("answer")
            ri = header.index("rating") if "rating" in header else None
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(header):
                    raise RecursaError(f"{path}:{reader.line_num}: {len(row)} fields, expected {len(header)} "
                                       f"({','.join(header)})")
                questions.append(row[qi])
                answers.append(row[ai])
                if ri is not None:
                    ratings.append(row[ri].strip())
                lines.append(reader.line_num)
    except FileNotFoundError:
        raise RecursaError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise RecursaError(f"{path}: is a directory, expected a file") from None
    except OSError as e:  # permission denied, an I/O error...
        raise RecursaError(f"{path}: cannot read the file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise RecursaError(f"{path}: not a text file ({e.reason})") from None
    except csv.Error as e:
        raise RecursaError(f"{path}: malformed CSV ({e})") from None
    return questions, answers, (ratings if ri is not None else None), lines


def seeded_split(n: int, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) index arrays, each sorted: a seeded ``test_fraction`` (at least one) of ``n`` items."""
    perm = rng.permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    import os
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(n_bytes: int, what: str) -> None:
    """Refuse up front a build whose arrays (``n_bytes``, an estimate of what must be held at once)
    cannot fit in this machine's memory, e.g. ``--num-aug 1000000000000``, instead of running
    until the allocator fails."""
    from ..errors import RecursaError
    total = machine_memory()
    if total is not None and n_bytes > total:
        raise RecursaError(f"{what}: the build would need about {n_bytes / 2**30:,.1f} GiB of memory, but this "
                           f"machine has {total / 2**30:,.1f} GiB; ask for fewer puzzles or augmentations")
