"""Sudoku-Extreme, the 9x9 benchmark of the HRM and TRM papers, and other real 9x9 collections.

Sources, read by path (nothing is downloaded):

- the benchmark's CSV layout: a header ``source,question,answer,rating`` then one puzzle per row,
  81-character strings with ``.`` or ``0`` for blanks (the benchmark ships ``train.csv`` and
  ``test.csv``). ``rating`` is the benchmark's difficulty (search backtracks);
- plain text: one 81-character puzzle per line, blank lines and ``#`` comments skipped, no
  answers. recursa's batched exact solver labels them, proves each solution unique, and rates
  each puzzle by the number of guesses its search needed.

The build follows the official builder (tokens = value + 1, seq_len 81, vocab 11, one shared
puzzle identifier; training groups = a puzzle + ``num_aug`` augmentations: digit relabelling,
band/stack and row/column-within permutations, transpose; the test set is not augmented) without
its unseeded subsample. Every random choice comes from ``seed``; parsing, checking, labelling and
augmentation are vectorised over puzzles.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import storage
from ..data.format import make_split, write_dataset
from ..data.ratings import DEFAULT_BUCKETS, bucket_names, parse_buckets
from ..errors import RecursaError
from .base import BuildCommand, carve_held_out, check_memory, count_arg, read_benchmark_csv, seeded_split
from .sudoku import Sudoku, SudokuTask

LABEL_CHUNK = 1024  # puzzles per solver call; fixed so results never depend on the worker count


@dataclass
class Collection:
    """Puzzles read from one file, or from several (:func:`merge`); ``lines`` are 1-based line
    numbers for error messages, ``file`` each puzzle's index into ``paths``."""

    path: Path  # the file; for several, their names joined (messages about the whole collection)
    lines: np.ndarray  # (P,) int64
    puzzles: np.ndarray  # (P, 81) int8, 0 = blank
    answers: np.ndarray | None  # (P, 81) int8 or None (plain files)
    ratings: np.ndarray | None  # (P,) float32 or None
    paths: tuple[Path, ...] = ()  # the files (empty: just ``path``)
    file: np.ndarray | None = None  # (P,) int64 index into ``paths``

    def take(self, idx: np.ndarray) -> Collection:
        return Collection(self.path, self.lines[idx], self.puzzles[idx],
                          None if self.answers is None else self.answers[idx],
                          None if self.ratings is None else self.ratings[idx],
                          self.paths, None if self.file is None else self.file[idx])

    def __len__(self) -> int:
        return len(self.lines)

    def where(self, i: int) -> str:
        """``file:line`` of puzzle ``i``."""
        return f"{self.paths[self.file[i]] if self.file is not None else self.path}:{self.lines[i]}"

    def keys(self) -> np.ndarray:
        """(P,) int64 naming each puzzle uniquely within the collection (file and line)."""
        return self.lines if self.file is None else (self.file << 32) | self.lines

    def found(self, what: str, idx: np.ndarray) -> list[str]:
        """Puzzles ``idx`` have ``what``, file by file: ["a.txt: 2 with <what> (line 3, 9)", ...]."""
        if self.file is None:
            return [f"{self.path}: {len(idx)} with {what} (line {_lines_text(self.lines[idx])})"]
        return [f"{p}: {int(here.sum())} with {what} (line {_lines_text(self.lines[idx][here])})"
                for k, p in enumerate(self.paths) if (here := self.file[idx] == k).any()]


def merge(cols: list[Collection]) -> Collection:
    """Several files' puzzles as one collection (in order); all must be CSV or all plain text."""
    if len(cols) == 1:
        return cols[0]
    kinds = {c.answers is not None for c in cols}
    if len(kinds) > 1:
        raise RecursaError(" + ".join(str(c.path) for c in cols) + ": mixes CSV (answers) and plain (unlabelled) "
                                                                     "files; give sources of one kind")
    rated = all(c.ratings is not None for c in cols)
    return Collection(Path(" + ".join(str(c.path) for c in cols)), np.concatenate([c.lines for c in cols]),
                      np.concatenate([c.puzzles for c in cols]),
                      np.concatenate([c.answers for c in cols]) if kinds == {True} else None,
                      np.concatenate([c.ratings for c in cols]) if rated else None,
                      tuple(c.path for c in cols),
                      np.concatenate([np.full(len(c), k, dtype=np.int64) for k, c in enumerate(cols)]))


_SUDOKU = Sudoku(3, 3)
_CHAR_VALUE = np.full(256, -1, dtype=np.int8)
_CHAR_VALUE[ord(".")] = _CHAR_VALUE[ord("0")] = 0
_CHAR_VALUE[[ord(str(d)) for d in range(1, 10)]] = np.arange(1, 10)


def _grids(strings: list[str], lines: np.ndarray, path: Path, what: str, blanks: bool) -> np.ndarray:
    """81-character strings -> (P, 81) int8, vectorised; the first bad row gets a precise error."""
    where = (lambda i: f"{path}:{lines[i]}: {what}") if what else (lambda i: f"{path}:{lines[i]}")
    if not strings:
        return np.zeros((0, 81), np.int8)
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    bad = np.flatnonzero(lengths != 81)
    if len(bad):
        _SUDOKU.parse(strings[bad[0]], where(bad[0]), check_givens=False)  # raises: "N cells, expected 81"
        raise RecursaError(f"{where(bad[0])}: {lengths[bad[0]]} characters, expected 81")
    try:
        raw = np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8).reshape(-1, 81)
    except UnicodeEncodeError:
        i = next(i for i, s in enumerate(strings) if not s.isascii())
        _SUDOKU.parse(strings[i], where(i), check_givens=False)
        raise RecursaError(f"{where(i)}: non-ASCII character") from None
    grids = _CHAR_VALUE[raw]
    bad = np.flatnonzero((grids < 0).any(1) | (False if blanks else (grids == 0).any(1)))
    if len(bad):
        i = bad[0]
        _SUDOKU.parse(strings[i], where(i), check_givens=False)  # names the bad character
        j = int(np.flatnonzero(grids[i] == 0)[0])
        raise RecursaError(f"{where(i)}: position {j + 1} (row {j // 9 + 1}, column {j % 9 + 1}) is blank; "
                           "an answer must be complete")
    return grids


def repeated_givens(grids: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(P,) bool: some digit appears twice in a row, column or box (vectorised)."""
    out = np.zeros(len(grids), dtype=bool)
    for s in range(0, len(grids), chunk):
        units = np.sort(grids[s:s + chunk][:, _SUDOKU.units], axis=-1)  # (p, 27, 9)
        out[s:s + chunk] = ((units[..., 1:] == units[..., :-1]) & (units[..., 1:] > 0)).any(axis=(1, 2))
    return out


def _check_givens(grids: np.ndarray, lines: np.ndarray, path: Path) -> None:
    bad = np.flatnonzero(repeated_givens(grids))
    if len(bad):
        i = bad[0]
        raise RecursaError(f"{path}:{lines[i]}: {_SUDOKU.givens_conflict(grids[i])}")


def read_csv(path: str | Path) -> Collection:
    """The benchmark CSV layout (``source,question,answer,rating``), validated row by row."""
    path = Path(path)
    questions, answers, ratings, lines = read_benchmark_csv(path)
    questions, answers = [x.strip() for x in questions], [x.strip() for x in answers]
    ln = np.asarray(lines, dtype=np.int64)
    q = _grids(questions, ln, path, "question", blanks=True)
    _check_givens(q, ln, path)
    a = _grids(answers, ln, path, "answer", blanks=False)
    ok = _SUDOKU.is_valid(q, a) if len(q) else np.zeros(0, bool)
    bad = np.flatnonzero(~ok)
    if len(bad):
        raise RecursaError(f"{path}:{ln[bad[0]]}: the answer is not a solution of the question "
                           "(breaks a rule or changes a given)")
    r = None
    if ratings is not None:
        try:
            r = np.asarray(ratings, dtype=np.float32)
        except ValueError:
            i = next(i for i, x in enumerate(ratings) if not _is_number(x))
            raise RecursaError(f"{path}:{ln[i]}: rating {ratings[i]!r} is not a number") from None
    return Collection(path, ln, q, a, r)


def _is_number(x: str) -> bool:
    try:
        float(x)
        return True
    except ValueError:
        return False


def read_plain(path: str | Path) -> Collection:
    """One puzzle per line (81 characters; ``.`` or ``0`` blank); blank and ``#`` lines skipped."""
    path = Path(path)
    text = storage.read_text(path, "file")  # missing, a directory, unreadable, not UTF-8: one error line
    strings, lines = [], []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s and not s.startswith("#"):
            strings.append(s)
            lines.append(n)
    ln = np.asarray(lines, dtype=np.int64)
    q = _grids(strings, ln, path, "", blanks=True)
    _check_givens(q, ln, path)
    return Collection(path, ln, q, None, None)


def read_collection(path: str | Path) -> Collection:
    """CSV when the file starts with a header naming ``question``, plain text otherwise."""
    path = Path(path)
    if not path.is_file():
        if not path.exists() or path.is_dir():
            storage.read_bytes(path, "file")  # raises: not found, a directory, permission denied...
        raise RecursaError(f"{path}: not a regular file")  # e.g. a pipe, which would block
    try:
        with open(path, "rb") as f:
            head = f.readline(65536).decode("utf-8", errors="replace").lower()
    except OSError as e:
        raise RecursaError(f"{path}: cannot read the file ({e.strerror or e})") from None
    return read_csv(path) if ("question" in head and "," in head) else read_plain(path)


def _solve_chunk(grids: np.ndarray):
    return _SUDOKU.solve_many(grids, limit=2)


def label(grids: np.ndarray, workers: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve every puzzle (fixed chunks, optionally in ``workers`` processes) ->
    (counts capped at 2, solutions, guesses)."""
    chunks = [grids[s:s + LABEL_CHUNK] for s in range(0, len(grids), LABEL_CHUNK)]
    if workers > 1 and len(chunks) > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(min(workers, len(chunks))) as pool:
            parts = pool.map(_solve_chunk, chunks, chunksize=1)
    else:
        parts = [_solve_chunk(c) for c in chunks]
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 81), np.int8), np.zeros(0, np.int64)
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def _lines_text(lines: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(x) for x in lines[:limit])
    return shown + (f", ... ({len(lines)} in all)" if len(lines) > limit else "")


def label_collections(cols: list[Collection], workers: int, on_invalid: str,
                      log=print) -> tuple[list[Collection], list[str]]:
    """Label (plain files) or verify (``answers`` present) with the exact solver, all collections
    in one pass. Puzzles with no or several solutions (or a CSV answer that is not the unique
    solution) are an error naming every file and line, or are dropped with ``on_invalid='skip'``.
    Returns the kept puzzles and one report line per rejected puzzle."""
    sizes = np.cumsum([0] + [len(c) for c in cols])
    counts, sols, guesses = label(np.concatenate([c.puzzles for c in cols]), workers)
    kept, report, found = [], [], []
    for k, col in enumerate(cols):
        sl = slice(sizes[k], sizes[k + 1])
        c, x, g = counts[sl], sols[sl], guesses[sl]
        wrong = (c == 1) & (x != col.answers).any(1) if col.answers is not None else np.zeros(len(col), bool)
        problems = [("no solution", np.flatnonzero(c == 0)), ("more than one solution", np.flatnonzero(c >= 2)),
                    ("an answer that differs from the unique solution", np.flatnonzero(wrong))]
        report += [f"{col.where(i)}\t{what}" for what, idx in problems for i in idx]
        found += [x for what, idx in problems if len(idx) for x in col.found(what, idx)]
        keep = np.flatnonzero((c == 1) & ~wrong)
        out = col.take(keep)
        if out.answers is None:
            out.answers = x[keep]
        if out.ratings is None:
            out.ratings = g[keep].astype(np.float32)
        kept.append(out)
    if found:
        text = "; ".join(found)
        if on_invalid == "error":
            raise RecursaError(f"{text}; use --on-invalid skip to leave them out")
        log(f"skipping {text}")
    return kept, report


def build_sudoku_extreme(out, *, source: str | Path | list[str | Path], test_source: str | Path | None = None,
                         test_fraction: float = 0.1, subsample_size: int = 0, num_aug: int = 0,
                         min_rating: float | None = None, rating_buckets=DEFAULT_BUCKETS,
                         on_invalid: str = "error", check_unique: bool = False, workers: int = 0,
                         seed: int = 0, overwrite: bool = False, num_val: int = 0, log=print) -> SudokuTask:
    """Build a Sudoku-Extreme style dataset (official layout plus per-puzzle ``ratings``).

    ``source`` is one file or a list of files (read as one collection, in order; all CSV or all
    plain). Without ``test_source`` a seeded ``test_fraction`` of ``source`` is held out. ``min_rating``
    keeps puzzles rated at least that; ``subsample_size`` draws that many training puzzles
    (seeded); ``num_aug`` augmented views join each training puzzle in its group. Plain files are
    labelled by the exact solver (only the puzzles kept are solved, unless ``min_rating`` needs
    every rating); CSV answers are checked against the rules, and with ``check_unique`` also
    proved to be the unique solution. ``num_val`` > 0 takes that many training puzzles (seeded,
    before any subsample) as a ``val/`` split: distinct, none a test puzzle, and every training
    puzzle equal to one of them leaves training.
    """
    if on_invalid not in ("error", "skip"):
        raise RecursaError(f"--on-invalid {on_invalid!r}: expected error or skip")
    if test_source is None and not 0.0 < test_fraction < 1.0:
        raise RecursaError(f"--test-fraction {test_fraction}: must be in (0, 1)")
    if subsample_size < 0 or num_aug < 0 or num_val < 0:
        raise RecursaError("--subsample-size, --num-aug and --num-val must be >= 0")
    workers = workers or min(os.cpu_count() or 1, 8)
    rng = np.random.default_rng([seed, 10])
    task = SudokuTask(3, 3)
    s = task.sudoku
    rejected: list[str] = []

    def labelled(*cols: Collection) -> list[Collection]:
        cols, report = label_collections(list(cols), workers, on_invalid, log)
        rejected.extend(report)
        return cols

    def prepare(col: Collection) -> Collection:
        """Label now what must be labelled before selection; apply --min-rating."""
        if (col.answers is None and min_rating is not None) or (col.answers is not None and check_unique):
            (col,) = labelled(col)
        if min_rating is not None:
            if col.ratings is None:
                raise RecursaError(f"{col.path}: --min-rating needs a rating column")
            col = col.take(np.flatnonzero(col.ratings >= min_rating))
        return col

    sources = [source] if isinstance(source, (str, Path)) else list(source)
    if not sources:
        raise RecursaError("--source: give at least one file of puzzles")
    src = prepare(merge([read_collection(x) for x in sources]))
    if test_source is not None:
        test_col = prepare(read_collection(test_source))
        # Held out: leave out training puzzles that also appear in the test file.
        test_keys = {p.tobytes() for p in test_col.puzzles}
        overlap = np.fromiter((p.tobytes() in test_keys for p in src.puzzles), dtype=bool, count=len(src))
        if overlap.any():
            log(f"{src.path}: leaving out {int(overlap.sum())} training puzzles that are also in {test_source}")
        train_idx = np.flatnonzero(~overlap)
        test_idx = None
    else:
        train_idx, test_idx = seeded_split(len(src), test_fraction, rng)
    val_idx = None
    if num_val:
        held = src.puzzles[test_idx] if test_idx is not None else test_col.puzzles
        train_idx, val_idx = _carve_val(np.random.default_rng([seed, 12]), num_val, src.puzzles, train_idx, held,
                                        src.path)
    if subsample_size and subsample_size < len(train_idx):
        train_idx = np.sort(rng.choice(train_idx, subsample_size, replace=False))
    # Plain files still unlabelled: label only the puzzles the build keeps, in one pass per file.
    # File and line numbers identify puzzles, so the splits survive rejected puzzles being dropped.
    if src.answers is None:
        chosen = train_idx if test_idx is None else np.union1d(train_idx, test_idx)
        if val_idx is not None:
            chosen = np.union1d(chosen, val_idx)
        src_keys = src.keys()
        if test_idx is None and test_col.answers is None:
            src, test_col = labelled(src.take(chosen), test_col)
        else:
            (src,) = labelled(src.take(chosen))
        train_idx = np.flatnonzero(np.isin(src.keys(), src_keys[train_idx]))
        if test_idx is not None:
            test_idx = np.flatnonzero(np.isin(src.keys(), src_keys[test_idx]))
        if val_idx is not None:
            val_idx = np.flatnonzero(np.isin(src.keys(), src_keys[val_idx]))
    elif test_idx is None and test_col.answers is None:
        (test_col,) = labelled(test_col)
    train_col = src.take(train_idx)
    if test_idx is not None:
        test_col = src.take(test_idx)
    val_col = src.take(val_idx) if val_idx is not None else None
    if len(train_col) == 0 or len(test_col) == 0 or (val_col is not None and len(val_col) == 0):
        what = "training" if len(train_col) == 0 else "test" if len(test_col) == 0 else "validation"
        raise RecursaError(f"{src.path}: no {what} puzzles left to build from")

    # Augmented views, vectorised: group g = original g, then num_aug views.
    P = len(train_col)
    check_memory(P * (num_aug + 1) * 81 * 8, f"{P} training puzzles x (--num-aug {num_aug} + 1)")
    views_p, views_s = [train_col.puzzles], [train_col.answers]
    aug_rng = np.random.default_rng([seed, 11])
    for _ in range(num_aug):
        augs = s.random_augs(aug_rng, P)
        views_p.append(s.apply_augs(train_col.puzzles, augs))
        views_s.append(s.apply_augs(train_col.answers, augs))
    train_p = np.stack(views_p, axis=1).reshape(-1, 81)
    train_s = np.stack(views_s, axis=1).reshape(-1, 81)
    del views_p, views_s
    enc = s.encode
    train = make_split(enc(train_p), enc(train_s), np.full(P, num_aug + 1), vocab_size=task.vocab_size)
    test = make_split(enc(test_col.puzzles), enc(test_col.answers), vocab_size=task.vocab_size)
    splits = {"train": train, "test": test}
    if val_col is not None:
        splits["val"] = make_split(enc(val_col.puzzles), enc(val_col.answers), vocab_size=task.vocab_size)
    rated = train_col.ratings is not None and test_col.ratings is not None
    if rated:
        train.extras["ratings"] = np.repeat(train_col.ratings.astype(np.float32), num_aug + 1)
        test.extras["ratings"] = test_col.ratings.astype(np.float32)
        if val_col is not None:
            splits["val"].extras["ratings"] = val_col.ratings.astype(np.float32)
    info = {"format_version": 1, "task": task.name, "params": task.params(), "seed": seed,
            "builder": "sudoku-extreme",
            "build_args": {"source": [str(x) for x in sources] if len(sources) > 1 else str(sources[0]), "test_source": None if test_source is None else str(test_source),
                           "test_fraction": test_fraction, "subsample_size": subsample_size, "num_aug": num_aug,
                           "min_rating": min_rating, "on_invalid": on_invalid, "check_unique": check_unique,
                           **({"num_val": num_val} if num_val else {})},
            "rating_buckets": list(rating_buckets) if rated else None, "rejected": len(rejected)}
    files = {"rejected.txt": "".join(x + "\n" for x in rejected)} if rejected else {}
    write_dataset(out, splits, ["<blank>"], info, files=files, overwrite=overwrite)
    msg = f"wrote {out}: {len(train_p)} training puzzles ({P} x {num_aug + 1} views), {len(test_col)} test puzzles"
    if val_col is not None:
        msg += f", {len(val_col)} validation puzzles"
    if rated:
        hist = np.histogram(test_col.ratings, bins=[*rating_buckets, np.inf])[0]
        msg += "; test puzzles by rating: " + ", ".join(f"{n}: {c}" for n, c in zip(bucket_names(rating_buckets), hist))
    if rejected:
        msg += f"; {len(rejected)} puzzles rejected (listed in rejected.txt)"
    log(msg)
    return task


def _carve_val(rng, n: int, puzzles: np.ndarray, train_idx: np.ndarray, held: np.ndarray, source) -> tuple:
    """``n`` of the training puzzles ``puzzles[train_idx]`` (seeded) for validation: distinct, none
    equal to a ``held`` (test) puzzle; training keeps the others, less any equal to a chosen one.
    -> (train_idx, val_idx), indices into ``puzzles``, sorted."""
    chosen = carve_held_out(rng, puzzles, train_idx, held, n, source, "puzzles")
    keys = {p.tobytes() for p in puzzles[chosen]}
    rest = np.array([i for i in train_idx if puzzles[i].tobytes() not in keys], dtype=np.int64)
    return rest, chosen


# ---------------------------------------------------------------------- `recursa build sudoku-extreme`
def _build_arguments(p) -> None:
    p.add_argument("--source", required=True, action="append",
                   help="training puzzles (CSV or plain file); also the test puzzles when --test-source is not "
                        "given; repeat it to read several files as one collection (all CSV or all plain)")
    p.add_argument("--test-source", help="test puzzles (CSV or plain file), e.g. the benchmark's test.csv")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="without --test-source: seeded fraction of --source held out for test (default 0.1)")
    p.add_argument("--subsample-size", type=count_arg, default=0,
                   help="seeded random subset of this many training puzzles, e.g. 1000 as in the papers (default all)")
    p.add_argument("--num-aug", type=count_arg, default=0, help="augmented views per training puzzle, e.g. 1000 (default 0)")
    p.add_argument("--num-val", type=count_arg, default=0,
                   help="training puzzles held out as a validation split (val/), taken before --subsample-size; none "
                        "is a test puzzle (default 0)")
    p.add_argument("--min-rating", type=float, default=None,
                   help="keep only puzzles rated at least this (CSV rating column, or solver guesses for plain files)")
    p.add_argument("--rating-buckets", default=",".join(str(b) for b in DEFAULT_BUCKETS),
                   help="increasing lower edges of the rating buckets reported by eval (default %(default)s)")
    p.add_argument("--on-invalid", choices=["error", "skip"], default="error",
                   help="a puzzle with no or several solutions (or a wrong CSV answer): stop with an error naming "
                        "the lines (default), or skip it and list it in OUT/rejected.txt")
    p.add_argument("--check-unique", action="store_true",
                   help="CSV sources: also prove with the solver that each answer is the unique solution "
                        "(answers are always checked against the rules)")
    p.add_argument("--workers", type=count_arg, default=0, help="solver processes (default: CPU count, at most 8)")
    p.add_argument("--seed", type=count_arg, default=0, help="random seed of the test split, subsample and augmentations (default 0)")


def _build_from_args(args):
    if args.workers < 0:
        raise RecursaError("--workers must be >= 0")
    build_sudoku_extreme(args.out, overwrite=args.overwrite, source=args.source, test_source=args.test_source,
                         test_fraction=args.test_fraction, subsample_size=args.subsample_size, num_aug=args.num_aug,
                         min_rating=args.min_rating,
                         rating_buckets=parse_buckets(args.rating_buckets), on_invalid=args.on_invalid,
                         check_unique=args.check_unique, workers=args.workers, seed=args.seed, num_val=args.num_val)


BUILD = BuildCommand(
    "sudoku-extreme", "Sudoku-Extreme (CSV) or a file of 9x9 puzzles, solver-labelled",
    "Build the Sudoku-Extreme benchmark of the HRM/TRM papers, or a benchmark from any "
    "file of 9x9 puzzles.\n\n"
    "Sources: (a) the benchmark's CSV layout, header source,question,answer,rating, "
    "81-character strings with '.' or '0' for blanks (it ships train.csv and test.csv); "
    "(b) plain text, one 81-character puzzle per line, blank and '#' lines skipped, "
    "labelled by recursa's exact solver, which proves each solution unique and rates "
    "each puzzle by the guesses its search needed.\n\n"
    "Training groups hold each puzzle plus --num-aug augmentations (digit relabelling, "
    "transpose, band/stack and row/column-within permutations); the test set is not "
    "augmented. Per-puzzle ratings are kept (all__ratings.npy) so `recursa eval` "
    "reports exact accuracy per rating bucket. Every random choice comes from --seed.",
    _build_arguments, _build_from_args, raw_description=True, builder=build_sudoku_extreme)

#: No task class of its own: Sudoku-Extreme builds are 9x9 Sudoku (``SudokuTask``).
TASK = None
