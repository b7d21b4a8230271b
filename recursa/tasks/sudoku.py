"""Sudoku with rectangular boxes (2x2 -> 4x4, 2x3 -> 6x6, 3x3 -> 9x9, ...).

Owns everything Sudoku-specific: the token encoding, parsing of user puzzles with precise
errors, an exact solver that counts solutions, a seeded generator of unique-solution puzzles with
a givens knob, the validity checker, the augmentations (with their inverse) and a text renderer.

Tokens follow the official builder: 0 = PAD, 1 = blank, 2..N+1 = digits 1..N (value + 1).
Grids inside this module are int8 arrays of N*N values, 0 = blank, 1..N = digits, row-major.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..data.format import make_split, write_dataset
from ..errors import RecursaError

BLANK_CHARS = ".0_"
MAX_N = 9  # one character per cell


@dataclass(frozen=True)
class SudokuAug:
    """One augmentation: new = relabel[old[row_perm][:, col_perm]] (then transposed if ``transpose``)."""

    digit_map: np.ndarray  # (N+1,), digit_map[0] = 0
    row_perm: np.ndarray  # (N,) new row i takes old row row_perm[i]
    col_perm: np.ndarray  # (N,)
    transpose: bool


class Sudoku:
    """A Sudoku family of box shape ``box_rows x box_cols`` (N = box_rows * box_cols)."""

    def __init__(self, box_rows: int, box_cols: int):
        if box_rows < 1 or box_cols < 1 or box_rows * box_cols > MAX_N or box_rows * box_cols < 2:
            raise RecursaError(f"sudoku box {box_rows}x{box_cols}: N = rows*cols must be in 2..{MAX_N}")
        self.box_rows, self.box_cols = box_rows, box_cols
        N = self.N = box_rows * box_cols
        self.cells = N * N
        r = np.arange(self.cells) // N
        c = np.arange(self.cells) % N
        b = (r // box_rows) * box_rows + c // box_cols
        self.row_of, self.col_of, self.box_of = r, c, b
        # units[k] = the N cell indices of row/col/box k (rows 0..N-1, cols N..2N-1, boxes 2N..3N-1)
        self.units = np.concatenate([
            np.stack([np.flatnonzero(r == i) for i in range(N)]),
            np.stack([np.flatnonzero(c == i) for i in range(N)]),
            np.stack([np.flatnonzero(b == i) for i in range(N)]),
        ])
        self._rcb = [(int(r[i]), int(c[i]), int(b[i])) for i in range(self.cells)]
        self.full_mask = (1 << N) - 1

    @property
    def name(self) -> str:
        return f"{self.N}x{self.N} Sudoku ({self.box_rows}x{self.box_cols} boxes)"

    # ------------------------------------------------------------------ tokens
    @property
    def vocab_size(self) -> int:
        return self.N + 2

    def encode(self, grid: np.ndarray) -> np.ndarray:
        """Grid values (0 blank, 1..N) -> tokens (1 blank, 2..N+1)."""
        return (np.asarray(grid) + 1).astype(np.int32)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens -> grid values; PAD (0) and blank (1) both become 0 (empty)."""
        return np.clip(np.asarray(tokens).astype(np.int64) - 1, 0, self.N).astype(np.int8)

    # ------------------------------------------------------------------ parsing and checks
    def parse(self, text: str, where: str = "puzzle", *, check_givens: bool = True) -> np.ndarray:
        """Parse ``N*N`` cells (digits 1..N, blank as '.', '0' or '_'; whitespace ignored)."""
        s = "".join(text.split())
        N = self.N
        if len(s) != self.cells:
            raise RecursaError(f"{where}: {len(s)} cells, expected {self.cells} for a {self.name}")
        grid = np.zeros(self.cells, dtype=np.int8)
        for i, ch in enumerate(s):
            if ch in BLANK_CHARS:
                continue
            if not ch.isdigit() or not 1 <= int(ch) <= N:
                raise RecursaError(f"{where}: position {i + 1} (row {i // N + 1}, column {i % N + 1}): "
                                   f"{ch!r} is not a digit 1-{N} or a blank ('.', '0', '_')")
            grid[i] = int(ch)
        if check_givens:
            problem = self.givens_conflict(grid)
            if problem:
                raise RecursaError(f"{where}: {problem}")
        return grid

    def givens_conflict(self, grid: np.ndarray) -> str | None:
        """Describe the first digit repeated in a row, column or box, or None."""
        kinds = ("row", "column", "box")
        for k, unit in enumerate(self.units):
            vals = grid[unit]
            seen: dict[int, int] = {}
            for pos, v in zip(unit, vals):
                if v == 0:
                    continue
                if v in seen:
                    return (f"digit {v} appears twice in {kinds[k // self.N]} {k % self.N + 1} "
                            f"(positions {seen[v] + 1} and {pos + 1})")
                seen[int(v)] = int(pos)
        return None

    def is_valid(self, puzzles: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """Vectorised checker: each answer is a full grid obeying the rules and keeping the givens.

        ``puzzles``/``answers`` are (B, N*N) grid values (0 = blank). Returns a (B,) bool array.
        """
        puzzles = np.atleast_2d(puzzles)
        answers = np.atleast_2d(answers).astype(np.int64)
        N = self.N
        in_range = ((answers >= 1) & (answers <= N)).all(-1)
        # Each unit must hold each digit exactly once: compare sorted unit contents with 1..N.
        units = np.sort(np.clip(answers, 0, N)[:, self.units], axis=-1)  # (B, 3N, N)
        rules = (units == np.arange(1, N + 1)).all(axis=(-1, -2))
        givens = ((puzzles == 0) | (puzzles == answers)).all(-1)
        return in_range & rules & givens

    # ------------------------------------------------------------------ solver
    def solve(self, grid: np.ndarray, limit: int = 2) -> tuple[int, np.ndarray | None]:
        """Count solutions up to ``limit``; return (count, first solution or None).

        Depth-first search on bit masks, always branching on the cell with fewest candidates.
        Givens that conflict count as 0 solutions.
        """
        N = self.N
        rows, cols, boxes = [0] * N, [0] * N, [0] * N
        cells = [int(v) for v in grid]
        empties = []
        for i, v in enumerate(cells):
            r, c, b = self._rcb[i]
            if v:
                bit = 1 << (v - 1)
                if (rows[r] | cols[c] | boxes[b]) & bit:
                    return 0, None
                rows[r] |= bit
                cols[c] |= bit
                boxes[b] |= bit
            else:
                empties.append(i)
        rcb, full = self._rcb, self.full_mask
        found: list = []

        def search(empties: list[int]) -> int:
            if not empties:
                found.append(list(cells)) if not found else None
                return 1
            best_i, best_m, best_n = -1, 0, N + 1
            for i in empties:
                r, c, b = rcb[i]
                m = full & ~(rows[r] | cols[c] | boxes[b])
                n = m.bit_count()
                if n < best_n:
                    best_i, best_m, best_n = i, m, n
                    if n <= 1:
                        break
            if best_n == 0:
                return 0
            rest = [i for i in empties if i != best_i]
            r, c, b = rcb[best_i]
            total = 0
            m = best_m
            while m:
                bit = m & -m
                m ^= bit
                rows[r] |= bit
                cols[c] |= bit
                boxes[b] |= bit
                cells[best_i] = bit.bit_length()
                total += search(rest)
                rows[r] ^= bit
                cols[c] ^= bit
                boxes[b] ^= bit
                if total >= limit:
                    break
            cells[best_i] = 0
            return total

        count = search(empties)
        sol = np.array(found[0], dtype=np.int8) if found else None
        return min(count, limit), sol

    # ------------------------------------------------------------------ generation
    def generate(self, rng: np.random.Generator, givens: int = 0, max_tries: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """A (puzzle, solution) pair with a unique solution.

        Cells are removed in random order while the solution stays unique, until ``givens``
        givens remain (0 = as few as possible, i.e. a minimal puzzle). Lower ``givens`` = harder.
        """
        solution = self._random_full_grid(rng)
        puzzle = solution.copy()
        n_givens = self.cells
        for i in rng.permutation(self.cells):
            if n_givens <= givens:
                break
            v = puzzle[i]
            puzzle[i] = 0
            if self.solve(puzzle, limit=2)[0] != 1:
                puzzle[i] = v
            else:
                n_givens -= 1
        return puzzle, solution

    def _random_full_grid(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly-seeded random complete grid by randomised depth-first filling."""
        N = self.N
        rows, cols, boxes = [0] * N, [0] * N, [0] * N
        cells = [0] * self.cells
        order = list(range(self.cells))
        rcb = self._rcb
        # Pre-drawn random priorities per (cell, digit) make the fill a pure function of rng.
        prio = rng.random((self.cells, N)).argsort(axis=1).tolist()

        def fill(k: int) -> bool:
            if k == len(order):
                return True
            i = order[k]
            r, c, b = rcb[i]
            used = rows[r] | cols[c] | boxes[b]
            for d in prio[i]:
                bit = 1 << d
                if used & bit:
                    continue
                rows[r] |= bit
                cols[c] |= bit
                boxes[b] |= bit
                cells[i] = d + 1
                if fill(k + 1):
                    return True
                rows[r] ^= bit
                cols[c] ^= bit
                boxes[b] ^= bit
            cells[i] = 0
            return False

        fill(0)
        return np.array(cells, dtype=np.int8)

    # ------------------------------------------------------------------ augmentation
    def random_aug(self, rng: np.random.Generator) -> SudokuAug:
        N, R, C = self.N, self.box_rows, self.box_cols
        digit_map = np.concatenate([[0], rng.permutation(N) + 1]).astype(np.int8)
        # rows: permute the C bands of R rows, then the rows within each band
        bands = rng.permutation(C)
        row_perm = np.concatenate([b * R + rng.permutation(R) for b in bands])
        stacks = rng.permutation(R)
        col_perm = np.concatenate([s * C + rng.permutation(C) for s in stacks])
        transpose = bool(R == C and rng.random() < 0.5)  # only square boxes survive a transpose
        return SudokuAug(digit_map, row_perm, col_perm, transpose)

    def apply_aug(self, grid: np.ndarray, aug: SudokuAug) -> np.ndarray:
        """Apply ``aug`` to grids of shape (..., N*N)."""
        N = self.N
        g = np.asarray(grid).reshape(*np.shape(grid)[:-1], N, N)
        g = aug.digit_map[g][..., aug.row_perm, :][..., aug.col_perm]
        if aug.transpose:
            g = np.swapaxes(g, -1, -2)
        return g.reshape(*np.shape(grid)[:-1], N * N)

    def invert_aug(self, grid: np.ndarray, aug: SudokuAug) -> np.ndarray:
        """Inverse of :meth:`apply_aug`."""
        N = self.N
        g = np.asarray(grid).reshape(*np.shape(grid)[:-1], N, N)
        if aug.transpose:
            g = np.swapaxes(g, -1, -2)
        g = g[..., np.argsort(aug.row_perm), :][..., np.argsort(aug.col_perm)]
        return np.argsort(aug.digit_map).astype(np.int8)[g].reshape(*np.shape(grid)[:-1], N * N)

    def augment(self, puzzle: np.ndarray, solution: np.ndarray, rng: np.random.Generator):
        aug = self.random_aug(rng)
        return (self.apply_aug(puzzle, aug), self.apply_aug(solution, aug)), aug

    # ------------------------------------------------------------------ rendering
    def render(self, grid: np.ndarray, puzzle: np.ndarray | None = None) -> str:
        """Text grid with box separators; blanks as '.'. Givens of ``puzzle`` are plain, filled
        cells are plain too (use ``diff`` of two renders to compare)."""
        N, R, C = self.N, self.box_rows, self.box_cols
        g = np.asarray(grid).reshape(N, N)
        lines = []
        sep = "+".join(["-" * (2 * C + 1)] * R)
        for i in range(N):
            if i and i % R == 0:
                lines.append(sep)
            parts = []
            for s in range(R):
                parts.append(" " + " ".join(str(int(v)) if v else "." for v in g[i, s * C:(s + 1) * C]) + " ")
            lines.append("|".join(parts))
        return "\n".join(lines)


class SudokuTask:
    """Sudoku in token space for the trainer/evaluator/CLI (see module docstring)."""

    name = "sudoku"

    def __init__(self, box_rows: int = 3, box_cols: int = 3):
        self.sudoku = Sudoku(box_rows, box_cols)
        self.vocab_size = self.sudoku.vocab_size
        self.seq_len = self.sudoku.cells

    def params(self) -> dict:
        return {"box_rows": self.sudoku.box_rows, "box_cols": self.sudoku.box_cols}

    def describe(self) -> str:
        return self.sudoku.name

    def parse(self, text: str, where: str = "puzzle", require_unique: bool = True) -> np.ndarray:
        grid = self.sudoku.parse(text, where)
        count, _ = self.sudoku.solve(grid, limit=2)
        if count == 0:
            raise RecursaError(f"{where}: the puzzle has no solution")
        if count > 1 and require_unique:
            raise RecursaError(f"{where}: the puzzle has more than one solution")
        return self.sudoku.encode(grid)

    def check(self, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        return self.sudoku.is_valid(self.sudoku.decode(inputs), self.sudoku.decode(preds))

    def render(self, tokens: np.ndarray) -> str:
        return self.sudoku.render(self.sudoku.decode(tokens))

    def reference(self, inputs: np.ndarray) -> np.ndarray | None:
        """The exact solver's answer tokens (None if unsolvable)."""
        _, sol = self.sudoku.solve(self.sudoku.decode(inputs), limit=1)
        return None if sol is None else self.sudoku.encode(sol)


def parse_box(text: str) -> tuple[int, int]:
    """'2x3' -> (2, 3)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise RecursaError(f"--box {text!r}: expected ROWSxCOLS, e.g. 2x3")
    return int(m.group(1)), int(m.group(2))


def build_sudoku(out, *, box_rows: int = 2, box_cols: int = 3, num_train: int = 1000, num_test: int = 1000,
                 num_aug: int = 0, givens: int = 0, seed: int = 0, log=print) -> SudokuTask:
    """Generate unique-solution puzzles; training groups are an original + ``num_aug`` augmentations.

    Test puzzles come from their own random stream and any that equal a training view are
    re-drawn, so the test set is held out. The test set is never augmented.
    """
    task = SudokuTask(box_rows, box_cols)
    s = task.sudoku
    if not 0 <= givens <= s.cells:
        raise RecursaError(f"--givens {givens}: must be in 0..{s.cells}")

    def generate(rng, n, seen):
        puzzles, solutions = [], []
        while len(puzzles) < n:
            p, sol = s.generate(rng, givens)
            key = p.tobytes()
            if key in seen:
                continue
            seen.add(key)
            puzzles.append(p)
            solutions.append(sol)
        return np.stack(puzzles), np.stack(solutions)

    seen: set[bytes] = set()
    train_p, train_s = generate(np.random.default_rng([seed, 0]), num_train, seen)
    aug_rng = np.random.default_rng([seed, 2])
    views_p, views_s = [train_p], [train_s]
    for _ in range(num_aug):
        aug = [s.random_aug(aug_rng) for _ in range(num_train)]
        views_p.append(np.stack([s.apply_aug(p, a) for p, a in zip(train_p, aug)]))
        views_s.append(np.stack([s.apply_aug(x, a) for x, a in zip(train_s, aug)]))
    train_p = np.stack(views_p, axis=1).reshape(-1, s.cells)  # group-major: original, aug 1, ...
    train_s = np.stack(views_s, axis=1).reshape(-1, s.cells)
    seen.update(p.tobytes() for p in train_p)
    test_p, test_s = generate(np.random.default_rng([seed, 1]), num_test, seen)

    enc = s.encode
    splits = {
        "train": make_split(enc(train_p), enc(train_s), np.full(num_train, num_aug + 1), vocab_size=task.vocab_size),
        "test": make_split(enc(test_p), enc(test_s), vocab_size=task.vocab_size),
    }
    info = {"format_version": 1, "task": task.name, "params": task.params(), "seed": seed,
            "build_args": {"num_train": num_train, "num_test": num_test, "num_aug": num_aug, "givens": givens}}
    write_dataset(out, splits, ["<blank>"], info)
    mean_givens = float((test_p > 0).sum(-1).mean()) if num_test else float("nan")
    log(f"wrote {out}: {len(train_p)} training puzzles ({num_train} x {num_aug + 1} views), "
        f"{num_test} test puzzles, {task.describe()}, mean givens {mean_givens:.1f}")
    return task
