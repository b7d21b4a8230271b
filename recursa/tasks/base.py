"""What the trainer, evaluator and CLI need from a puzzle family, in token space.

A task is a small object built from its parameters (stored in the dataset's ``task.json`` and in
every checkpoint), so a checkpoint knows how to parse, check and draw its puzzles.
"""

from __future__ import annotations

import argparse
import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..errors import RecursaError


class Task(Protocol):
    name: str  # registry key, e.g. "sudoku"
    vocab_size: int
    seq_len: int
    #: (rows, cols) when the puzzle's tokens are a grid in row-major order (what a grid-local
    #: token mixer convolves over, ``model.conv_mixer`` / ``model.conv_2d``); None: a sequence.
    grid: tuple[int, int] | None
    #: The groups of cells the rules bind together, one partition per kind: per kind, each cell's
    #: group number (Sudoku: its row, its column, its box), what ``model.group_mixer`` averages
    #: over; None: the family declares none.
    groups: tuple[tuple[int, ...], ...] | None

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

    # The rest have defaults in TaskBase; a family overrides what differs.
    def split_puzzles(self, lines: list[str], path) -> list[tuple[str, str]]:
        """A puzzle file's lines -> [(puzzle text, where)] for ``recursa solve --file``."""

    def parse_for_solve(self, text: str, where: str, allow_multiple: bool = False) -> np.ndarray:
        """``parse`` as ``recursa solve`` uses it (``allow_multiple``: accept ambiguous puzzles)."""

    def puzzle_text(self, tokens: np.ndarray) -> str:
        """Input tokens -> one line of text that ``parse`` reads back (the demo's `solve` hint)."""

    def solve_refusal(self) -> str | None:
        """Why ``recursa solve`` cannot answer this family from text (None: it can)."""

    def scorer(self, data_dir, split) -> Scorer | None:
        """A fresh evaluation-time scorer for ``split`` of the dataset in ``data_dir`` (ARC:
        voting across views; Sudoku-Extreme: exact accuracy by rating), or None."""

    #: How many views of a puzzle ``view`` makes (1: the puzzle itself only): symmetries that map
    #: a puzzle to another puzzle of the family and its answers to that puzzle's answers.
    views: int

    def view(self, tokens: np.ndarray, v: int) -> np.ndarray:
        """Tokens (B, L) of puzzles (or answers) -> their view ``v`` (0: themselves), 0 <= v < views."""

    def unview(self, tokens: np.ndarray, v: int) -> np.ndarray:
        """The inverse of ``view``: tokens of view ``v`` -> the original puzzles' frame."""

    #: Whether puzzles may have several right answers (mazes: several shortest paths).
    answer_sets: bool

    def nearest_answers(self, inputs: np.ndarray, labels: np.ndarray, logp: np.ndarray) -> np.ndarray:
        """``train.nearest_answer``: per puzzle, the right answer with the least token loss under
        ``logp`` (B, L, vocab); ``labels`` is the dataset's answer (kept where none is found)."""


class Scorer(Protocol):
    """A family's own benchmark metric, fed every evaluated batch by
    :func:`recursa.evaluation.evaluate.evaluate`. One object is one evaluation (or, when
    ``pools_checkpoints``, one pooled evaluation of several checkpoints: ``eval --checkpoints``)."""

    key: str  # evaluate() puts result() under this key, e.g. "arc"
    writes_submission: bool  # result()["submission"] is a file `eval --submission` can write
    pools_checkpoints: bool  # votes of several checkpoints may be pooled (the official ARC protocol)

    def update(self, idx: np.ndarray, preds: np.ndarray, q_halt: np.ndarray, exact: np.ndarray,
               scored: np.ndarray) -> None:
        """Rows ``idx`` of the split: final predicted tokens (B, L), halting logits (B,), whether
        each answer is exactly right (B,) and whether it has labels to score (B,)."""

    def result(self) -> dict:
        """The metric (JSON-serialisable; "submission" is left out of evaluate()'s output)."""

    def lines(self, res: dict) -> list[str]:
        """``result()`` as lines for the terminal (``recursa eval``)."""

    def scalars(self, res: dict) -> dict[str, float]:
        """``result()`` as named scalars for the training log (``eval/<name>``)."""


class TaskBase:
    """Defaults of the optional :class:`Task` methods: one puzzle per line of a file ('#' starts a
    comment), ``parse`` as is, the tokens space-separated as text, solvable, no special scorer."""

    #: Colours of ``render``'s characters in `recursa render` pages and images (CSS colours);
    #: characters without one are drawn as text.
    palette: dict[str, str] = {}

    def split_puzzles(self, lines: list[str], path) -> list[tuple[str, str]]:
        return [(line, f"{path} line {i + 1}") for i, line in enumerate(lines)
                if line.strip() and not line.lstrip().startswith("#")]

    def parse_for_solve(self, text: str, where: str, allow_multiple: bool = False) -> np.ndarray:
        return self.parse(text, where)

    def puzzle_text(self, tokens: np.ndarray) -> str:
        return " ".join(str(int(v)) for v in np.asarray(tokens))

    def solve_refusal(self) -> str | None:
        return None

    def scorer(self, data_dir, split):
        return None

    views = 1
    grid: tuple[int, int] | None = None
    groups: tuple[tuple[int, ...], ...] | None = None

    #: Whether a puzzle of the family may have several right answers that ``nearest_answers``
    #: chooses among (``train.nearest_answer``); families with one answer per puzzle: False.
    answer_sets = False

    def nearest_answers(self, inputs: np.ndarray, labels: np.ndarray, logp: np.ndarray) -> np.ndarray:
        """Per puzzle (inputs, labels (B, L)), the right answer whose token loss under the model's
        log-probabilities ``logp`` (B, L, vocab) is least; only for families with ``answer_sets``."""
        raise NotImplementedError(f"{self.describe()}: one answer per puzzle, nothing to choose among")

    def view(self, tokens: np.ndarray, v: int) -> np.ndarray:
        if v != 0:
            raise ValueError(f"view {v}: this family has only the identity view")
        return np.asarray(tokens)

    unview = view

    def build_adaptation(self, out, tasks_path, solutions_path, base_rows, **kw) -> dict:
        """``recursa adapt``: write the data of new tasks, their puzzle identifiers numbered from
        ``base_rows`` on; returns what was built. Families answered through puzzle embeddings
        (ARC) implement it."""
        raise RecursaError(f"{self.describe()}: nothing to adapt (its puzzles are not answered through per-task "
                           "puzzle embeddings)")


def read_benchmark_csv(path) -> tuple[list[str], list[str], list[str] | None, list[int]]:
    """The CSV layout of the HRM benchmarks (``source,question,answer,rating``: Sudoku-Extreme,
    Maze-Hard) -> (questions, answers, ratings or None, 1-based line numbers), strings unstripped.
    Columns are found by name; a missing column, a row of the wrong width or an unreadable file
    is an error naming the file and line."""


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


def carve_held_out(rng: np.random.Generator, rows: np.ndarray, candidates: np.ndarray, excluded: np.ndarray,
                   n: int, where, noun: str) -> np.ndarray:
    """``n`` of ``candidates`` (indices into ``rows``) drawn at random for a held-out split: distinct
    rows, none equal to a row of ``excluded`` (the test split); sorted. ``where`` (the source file) and
    ``noun`` ("mazes") name them in the error when too few qualify."""
    flat, taken = rows.reshape(len(rows), -1), {r.tobytes() for r in excluded.reshape(len(excluded), -1)}
    chosen = []
    for i in rng.permutation(candidates):
        k = flat[i].tobytes()
        if k not in taken:
            taken.add(k)
            chosen.append(i)
            if len(chosen) == n:
                return np.sort(np.array(chosen, dtype=np.int64))
    raise RecursaError(f"--num-val {n}: {where} has only {len(chosen)} distinct training {noun} that are not test "
                       f"{noun}; ask for fewer")


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(n_bytes: int, what: str) -> None:
    """Refuse up front a build whose arrays (``n_bytes``, an estimate of what must be held at once)
    cannot fit in this machine's memory, e.g. ``--num-aug 1000000000000``, instead of running
    until the allocator fails."""
    total = machine_memory()
    if total is not None and n_bytes > total:
        raise RecursaError(f"{what}: the build would need about {n_bytes / 2**30:,.1f} GiB of memory, but this "
                           f"machine has {total / 2**30:,.1f} GiB; ask for fewer puzzles or augmentations")


def count_arg(text: str) -> int:
    """argparse type of every seed, count and size option: a whole number >= 0."""
    try:
        value = int(text.strip())
    except ValueError:
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {shown!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


OUT_HELP = "output dataset directory: new, or empty (an existing dataset needs --overwrite)"
OVERWRITE_HELP = ("replace an existing recursa dataset at --out (atomically, once the new one is complete); "
                  "any other non-empty directory is refused")


def add_out_arguments(p) -> None:
    """--out and --overwrite, which every builder takes."""
    p.add_argument("--out", required=True, help=OUT_HELP)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def check_counts(args) -> None:
    """--num-train > 0, --num-test and --num-aug >= 0."""
    for name in ("num_train", "num_test", "num_aug"):
        if getattr(args, name) < 0:
            raise RecursaError(f"--{name.replace('_', '-')} must be >= 0")
    if args.num_train == 0:
        raise RecursaError("--num-train must be > 0")


@dataclass(frozen=True)
class BuildCommand:
    """One ``recursa build NAME`` subcommand, owned by its family's module: ``add_arguments(parser)``
    declares the options (after ``--out``/``--overwrite``), ``run(args)`` builds; ``builder`` is
    the Python builder ``builder(out, ..., seed, overwrite, log)`` (the demo calls it)."""

    name: str
    help: str
    description: str
    add_arguments: Callable
    run: Callable
    raw_description: bool = False
    builder: Callable | None = None
