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
from ..data.ratings import RatingBuckets
from ..errors import RecursaError
from .base import BuildCommand, TaskBase, check_counts, check_memory, count_arg
from .grid import DIHEDRAL_INVERSE, dihedral_rows

BLANK_CHARS = ".0_"
MAX_N = 9  # one character per cell
#: The generator of `build_sudoku` gives up when this many draws in a row all gave puzzles it
#: already had: the distinct puzzles of that size and --givens are then (nearly) all drawn, e.g.
#: 4x4 complete grids (--givens 16), of which only 288 exist. With m of K equally likely puzzles
#: still undrawn, such a run has probability about exp(-2000 m / K): it fires only when the
#: space is all but exhausted (m / K below ~1/300), never for 6x6 or 9x9 puzzles.
MAX_REPEATED_DRAWS = 2000
#: Number of distinct complete grids, where small enough to be hit: refused up front.
FULL_GRIDS = {(2, 2): 288}


@dataclass(frozen=True)
class SudokuAugs:
    """A batch of n augmentations, each a relabelling of the digits and a permutation of the cells
    (band/stack and row/column-within-band permutations, then a transpose for square boxes):
    ``new[k] = digit_map[k][old[k][cells[k]]]``."""

    digit_map: np.ndarray  # (n, N+1) int8, digit_map[:, 0] = 0
    cells: np.ndarray  # (n, N*N) new cell j takes old cell cells[k, j]

    def __len__(self) -> int:
        return len(self.cells)


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
        # For the batched solver: where each cell sits in its row, column and box unit, as flat
        # indices into a (3N * N) array laid out like ``units``; bit-count and bit->digit tables.
        slot = np.empty((self.cells, 3), dtype=np.int64)
        for k, unit in enumerate(self.units):
            for j, cell in enumerate(unit):
                slot[cell, k // N] = k * N + j
        self._slot = slot
        self._cell_units = slot // N
        self._popcount = np.array([bin(m).count("1") for m in range(1 << N)], dtype=np.int8)
        digit = np.zeros(1 << N, dtype=np.int8)
        digit[1 << np.arange(N)] = np.arange(1, N + 1)
        self._digit = digit

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
            if not "1" <= ch <= "9" or int(ch) > N:  # ASCII digits only ('²'.isdigit() is True)
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
    def solve(self, grid: np.ndarray, limit: int = 2, exclude: tuple[int, int] | None = None
              ) -> tuple[int, np.ndarray | None]:
        """Count solutions up to ``limit``; return (count, first solution or None).

        Depth-first search on bit masks, always branching on the cell with fewest candidates.
        Givens that conflict count as 0 solutions. ``exclude = (cell, value)`` (an empty cell):
        count only the solutions whose ``cell`` is not ``value``.
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
        ex_cell, ex_bit = (exclude[0], 1 << (int(exclude[1]) - 1)) if exclude is not None else (-1, 0)

        def search(empties: list[int]) -> int:
            if not empties:
                found.append(list(cells)) if not found else None
                return 1
            best_i, best_m, best_n = -1, 0, N + 1
            for i in empties:
                r, c, b = rcb[i]
                m = full & ~(rows[r] | cols[c] | boxes[b])
                if i == ex_cell:
                    m &= ~ex_bit
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

    def solve_many(self, grids: np.ndarray, limit: int = 2,
                   chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batched exact solver: count the solutions of many puzzles at once, capped at ``limit``.

        ``grids`` is (P, N*N) values (0 = blank). Returns ``(counts (P,), solutions (P, N*N) int8,
        guesses (P,))``: a puzzle's solution row is its first solution found (zeros when it has
        none); with ``limit = 2`` a count of 1 proves the solution unique. ``guesses`` counts the
        branchings the search needed (0 = solved by propagation alone), a difficulty rating.

        Vectorised over every open search state: candidates are bit masks, propagated to a fixed
        point with naked singles (a placed digit leaves its row, column and box) and hidden singles
        (a digit with one place left in a unit goes there); a state with an empty cell, a digit
        with no place, or a digit placed twice is dropped. Unsolved states branch on the cell with
        the fewest candidates (its lowest digit / the rest), depth-first in blocks of ``chunk``
        states so memory stays bounded.
        """
        grids = np.asarray(grids)
        if grids.ndim != 2 or grids.shape[1] != self.cells:
            raise ValueError(f"expected (P, {self.cells}) grids, got {grids.shape}")
        P, C = grids.shape
        g = grids.astype(np.int32)
        cand = np.where(g > 0, np.left_shift(1, np.maximum(g - 1, 0)), self.full_mask).astype(np.int16)
        counts = np.zeros(P, dtype=np.int64)
        guesses = np.zeros(P, dtype=np.int64)
        solutions = np.zeros((P, C), dtype=np.int8)
        stack = [(cand, np.arange(P))]
        pop, digit = self._popcount, self._digit
        while stack:
            cand, owner = stack.pop()
            if len(owner) > chunk:
                stack.append((cand[:-chunk], owner[:-chunk]))
                cand, owner = cand[-chunk:], owner[-chunk:]
            live = counts[owner] < limit
            cand, owner = cand[live], owner[live]
            if not len(owner):
                continue
            cand, ok = self._propagate(cand)
            cand, owner = cand[ok], owner[ok]
            pc = pop[cand]
            done = (pc == 1).all(1)
            if done.any():
                d_own = owner[done]
                first_owner, first_at = np.unique(d_own, return_index=True)
                new = counts[first_owner] == 0
                solutions[first_owner[new]] = digit[cand[done][first_at[new]]]
                np.add.at(counts, d_own, 1)
                cand, owner, pc = cand[~done], owner[~done], pc[~done]
            if not len(owner):
                continue
            rows = np.arange(len(owner))
            cell = np.where(pc > 1, pc, 127).argmin(1)
            m = cand[rows, cell]
            low = m & -m
            np.add.at(guesses, owner, 1)
            take = cand.copy()
            take[rows, cell] = low
            cand[rows, cell] = m ^ low
            stack.append((np.concatenate([cand, take]), np.concatenate([owner, owner])))
        return np.minimum(counts, limit), solutions, guesses

    def _propagate(self, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Naked + hidden singles to a fixed point on (S, C) candidate masks -> (cand, ok (S,))."""
        N = self.N
        pop, units, slot, cell_units = self._popcount, self.units, self._slot, self._cell_units
        cand = cand.copy()
        ok = np.ones(len(cand), dtype=bool)
        active = np.arange(len(cand))
        full = self.full_mask
        while len(active):
            c = cand[active]
            pc = pop[c]
            bad = (pc == 0).any(1)
            solved = np.where(pc == 1, c, 0)
            per_unit = solved[:, units]  # (S, 3N, N)
            unit_or = np.bitwise_or.reduce(per_unit, axis=2)
            bad |= (per_unit.sum(2) != unit_or).any(1)  # a digit placed twice in a unit
            taken = np.bitwise_or.reduce(unit_or[:, cell_units], axis=2)  # (S, C)
            new = np.where(pc == 1, c, c & ~taken)
            # Hidden singles: digits with exactly one candidate cell in a unit.
            cu = new[:, units]  # (S, 3N, N cells)
            seen = np.zeros(cu.shape[:2], dtype=cu.dtype)
            twice = np.zeros_like(seen)
            for j in range(N):
                twice |= seen & cu[:, :, j]
                seen |= cu[:, :, j]
            bad |= (seen != full).any(1)  # a digit with no place left in a unit
            once = seen & ~twice
            flat = (cu & once[..., None]).reshape(len(c), -1)
            forced = flat[:, slot[:, 0]] | flat[:, slot[:, 1]] | flat[:, slot[:, 2]]
            fp = pop[forced]
            bad |= (fp > 1).any(1)  # one cell forced to two digits
            new = np.where(fp == 1, forced, new)
            bad |= (pop[new] == 0).any(1)
            changed = (new != c).any(1) & ~bad
            cand[active] = new
            ok[active[bad]] = False
            active = active[changed]
        return cand, ok

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
            # still unique <=> no solution with another value in cell i (the known one has v there):
            # the same answer as counting solutions up to 2, without finding the known one first
            if self.solve(puzzle, limit=1, exclude=(int(i), int(v)))[0]:
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
    def random_augs(self, rng: np.random.Generator, n: int) -> SudokuAugs:
        """n random validity-preserving transformations, drawn in a vectorised way."""
        N, R, C = self.N, self.box_rows, self.box_cols
        digits = rng.permuted(np.tile(np.arange(1, N + 1), (n, 1)), axis=1)
        digit_map = np.concatenate([np.zeros((n, 1), np.int64), digits], axis=1).astype(np.int8)
        # rows: the C bands of R rows in random order, each band's rows in random order; columns alike
        bands = rng.permuted(np.tile(np.arange(C), (n, 1)), axis=1)
        within_r = rng.permuted(np.tile(np.arange(R), (n, C, 1)), axis=2)
        row_perm = (bands[:, :, None] * R + within_r).reshape(n, N)
        stacks = rng.permuted(np.tile(np.arange(R), (n, 1)), axis=1)
        within_c = rng.permuted(np.tile(np.arange(C), (n, R, 1)), axis=2)
        col_perm = (stacks[:, :, None] * C + within_c).reshape(n, N)
        cells = row_perm[:, :, None] * N + col_perm[:, None, :]  # (n, N, N)
        if R == C:  # only square boxes survive a transpose
            transpose = rng.random(n) < 0.5
            cells = np.where(transpose[:, None, None], cells.transpose(0, 2, 1), cells)
        return SudokuAugs(digit_map, cells.reshape(n, N * N))

    def apply_augs(self, grids: np.ndarray, augs: SudokuAugs) -> np.ndarray:
        """Apply augmentation k to grid k: (n, N*N) -> (n, N*N)."""
        k = np.arange(len(augs))[:, None]
        return augs.digit_map[k, np.asarray(grids)[k, augs.cells]]

    def invert_augs(self, grids: np.ndarray, augs: SudokuAugs) -> np.ndarray:
        """Inverse of :meth:`apply_augs`."""
        k = np.arange(len(augs))[:, None]
        inverse_map = np.argsort(augs.digit_map, axis=1).astype(np.int8)
        relabelled = inverse_map[k, np.asarray(grids)]
        out = np.empty_like(relabelled)
        out[k, augs.cells] = relabelled
        return out

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


class SudokuTask(TaskBase):
    """Sudoku in token space for the trainer/evaluator/CLI (see module docstring)."""

    name = "sudoku"

    def __init__(self, box_rows: int = 3, box_cols: int = 3):
        self.sudoku = Sudoku(box_rows, box_cols)
        self.vocab_size = self.sudoku.vocab_size
        self.seq_len = self.sudoku.cells
        self.grid = (self.sudoku.N, self.sudoku.N)
        N, br, bc = self.sudoku.N, box_rows, box_cols
        cells = range(N * N)
        self.groups = (tuple(i // N for i in cells), tuple(i % N for i in cells),
                       tuple((i // N) // br * (N // bc) + (i % N) // bc for i in cells))

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

    def parse_for_solve(self, text: str, where: str, allow_multiple: bool = False) -> np.ndarray:
        return self.parse(text, where, require_unique=not allow_multiple)

    @property
    def _transforms(self) -> tuple[int, ...]:
        """Dihedral transforms that keep boxes boxes: all 8 for square boxes; for r x c boxes with
        r != c the ones that keep rows rows (identity, half turn, the two mirrors)."""
        s = self.sudoku
        return tuple(range(8)) if s.box_rows == s.box_cols else (0, 2, 4, 5)

    @property
    def views(self) -> int:
        return len(self._transforms)

    def view(self, tokens: np.ndarray, v: int) -> np.ndarray:
        return dihedral_rows(tokens, self.sudoku.N, self._transforms[v])

    def unview(self, tokens: np.ndarray, v: int) -> np.ndarray:
        return dihedral_rows(tokens, self.sudoku.N, DIHEDRAL_INVERSE[self._transforms[v]])

    def puzzle_text(self, tokens: np.ndarray) -> str:
        return "".join(str(int(v)) if v else "." for v in self.sudoku.decode(tokens))

    def check(self, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        return self.sudoku.is_valid(self.sudoku.decode(inputs), self.sudoku.decode(preds))

    def render(self, tokens: np.ndarray) -> str:
        return self.sudoku.render(self.sudoku.decode(tokens))

    def scorer(self, data_dir, split):
        """Exact accuracy by rating bucket when the split carries ratings (Sudoku-Extreme builds)."""
        return RatingBuckets.for_split(data_dir, split)

    def reference(self, inputs: np.ndarray) -> np.ndarray | None:
        """The exact solver's answer tokens (None if unsolvable)."""
        _, sol = self.sudoku.solve(self.sudoku.decode(inputs), limit=1)
        return None if sol is None else self.sudoku.encode(sol)


def parse_box(text: str) -> tuple[int, int]:
    """'2x3' -> (2, 3)."""
    m = re.fullmatch(r"\s*([0-9]{1,4})\s*[xX]\s*([0-9]{1,4})\s*", text)
    if not m:
        raise RecursaError(f"--box {text!r}: expected ROWSxCOLS, e.g. 2x3")
    return int(m.group(1)), int(m.group(2))


def build_sudoku(out, *, box_rows: int = 2, box_cols: int = 3, num_train: int = 1000, num_test: int = 1000,
                 num_aug: int = 0, givens: int = 0, seed: int = 0, overwrite: bool = False, num_val: int = 0,
                 log=print) -> SudokuTask:
    """Generate unique-solution puzzles; training groups are an original + ``num_aug`` augmentations.

    Test puzzles come from their own random stream and any that equal a training view are
    re-drawn, so the test set is held out. The test set is never augmented. ``num_val`` > 0 adds a
    ``val/`` split from a third stream, disjoint from both (train and test are the same as without
    it): for choices made after training, such as the halting threshold, never on the test set.
    """
    task = SudokuTask(box_rows, box_cols)
    s = task.sudoku
    if not 0 <= givens <= s.cells:
        raise RecursaError(f"--givens {givens}: must be in 0..{s.cells}")
    if num_train < 1 or num_aug < 0:
        raise RecursaError(f"--num-train {num_train} / --num-aug {num_aug}: need at least one training puzzle "
                           "and --num-aug >= 0")
    if num_test < 1:
        raise RecursaError(f"--num-test {num_test}: a dataset needs at least one test puzzle")
    if num_val < 0:
        raise RecursaError(f"--num-val {num_val}: must be >= 0")
    known = FULL_GRIDS.get((box_rows, box_cols)) if givens == s.cells else None
    if known is not None and num_train + num_test + num_val > known:
        raise RecursaError(f"--givens {givens} asks for complete grids, and only {known} distinct {s.name} grids "
                           f"exist: --num-train {num_train} + --num-test {num_test} = {num_train + num_test} is too many")
    # At least the two int32 token arrays of every training view and test puzzle are held at once.
    check_memory((num_train * (num_aug + 1) + num_test) * s.cells * 8,
                 f"--num-train {num_train} x (--num-aug {num_aug} + 1) {s.name} puzzles")

    def generate(rng, n, seen, what):
        puzzles, solutions = [], []
        repeats = 0
        while len(puzzles) < n:
            p, sol = s.generate(rng, givens)
            key = p.tobytes()
            if key in seen:
                repeats += 1
                if repeats >= MAX_REPEATED_DRAWS:
                    held_out = {"test": " that are not training views", "val": " that are neither training views nor test puzzles"}.get(what, "")
                    raise RecursaError(
                        f"--num-{what} {n}: found only {len(puzzles)} distinct {what} puzzles{held_out} "
                        f"({MAX_REPEATED_DRAWS} draws in a row repeated a puzzle already drawn), but {n} were asked "
                        f"for: too few distinct {s.name} puzzles with --givens {givens} exist; ask for fewer "
                        "puzzles or change --givens")
                continue
            repeats = 0
            seen.add(key)
            puzzles.append(p)
            solutions.append(sol)
        return np.stack(puzzles), np.stack(solutions)

    seen: set[bytes] = set()
    train_p, train_s = generate(np.random.default_rng([seed, 0]), num_train, seen, "train")
    aug_rng = np.random.default_rng([seed, 2])
    views_p, views_s = [train_p], [train_s]
    for _ in range(num_aug):
        augs = s.random_augs(aug_rng, num_train)
        views_p.append(s.apply_augs(train_p, augs))
        views_s.append(s.apply_augs(train_s, augs))
    train_p = np.stack(views_p, axis=1).reshape(-1, s.cells)  # group-major: original, aug 1, ...
    train_s = np.stack(views_s, axis=1).reshape(-1, s.cells)
    seen.update(p.tobytes() for p in train_p)
    test_p, test_s = generate(np.random.default_rng([seed, 1]), num_test, seen, "test")

    enc = s.encode
    splits = {
        "train": make_split(enc(train_p), enc(train_s), np.full(num_train, num_aug + 1), vocab_size=task.vocab_size),
        "test": make_split(enc(test_p), enc(test_s), vocab_size=task.vocab_size),
    }
    build_args = {"num_train": num_train, "num_test": num_test, "num_aug": num_aug, "givens": givens}
    if num_val:
        val_p, val_s = generate(np.random.default_rng([seed, 3]), num_val, seen, "val")  # seen holds the test set
        splits["val"] = make_split(enc(val_p), enc(val_s), vocab_size=task.vocab_size)
        build_args["num_val"] = num_val
    info = {"format_version": 1, "task": task.name, "params": task.params(), "seed": seed, "build_args": build_args}
    write_dataset(out, splits, ["<blank>"], info, overwrite=overwrite)
    mean_givens = float((test_p > 0).sum(-1).mean()) if num_test else float("nan")
    val = f", {num_val} validation puzzles" if num_val else ""
    log(f"wrote {out}: {len(train_p)} training puzzles ({num_train} x {num_aug + 1} views), "
        f"{num_test} test puzzles{val}, {task.describe()}, mean givens {mean_givens:.1f}")
    return task


# ---------------------------------------------------------------------- `recursa build sudoku`
def _build_arguments(p) -> None:
    p.add_argument("--box", default="2x3", help="box shape ROWSxCOLS: 2x2 (4x4 grid), 2x3 (6x6), 3x3 (9x9); default 2x3")
    p.add_argument("--num-train", type=count_arg, default=2000, help="training puzzles before augmentation (default 2000)")
    p.add_argument("--num-test", type=count_arg, default=1000, help="held-out test puzzles (default 1000)")
    p.add_argument("--num-aug", type=count_arg, default=0, help="augmented copies of each training puzzle (default 0)")
    p.add_argument("--num-val", type=count_arg, default=0, help="validation puzzles (val/), disjoint from train and "
                   "test: the halting threshold is calibrated on them at the end of training (default 0: none)")
    p.add_argument("--givens", type=count_arg, default=0, help="stop removing cells at this many givens; 0 = minimal puzzles (default 0)")
    p.add_argument("--seed", type=count_arg, default=0, help="random seed (default 0)")


def _build_from_args(args):
    check_counts(args)
    rows, cols = parse_box(args.box)
    build_sudoku(args.out, overwrite=args.overwrite, box_rows=rows, box_cols=cols, num_train=args.num_train,
                 num_test=args.num_test, num_aug=args.num_aug, givens=args.givens, seed=args.seed,
                 num_val=args.num_val)


BUILD = BuildCommand(
    "sudoku", "generated Sudoku puzzles with a unique solution",
    "Generate Sudoku puzzles with a unique solution. Cells are removed in random order "
    "while the solution stays unique, down to --givens givens (0 = minimal puzzles, "
    "the hardest). Training groups hold each puzzle plus --num-aug augmentations "
    "(digit relabelling, band/stack and row/column-within permutations, transpose "
    "for square boxes); the test set is held out and not augmented.",
    _build_arguments, _build_from_args, builder=build_sudoku)

#: This family's token-space task (``recursa.tasks.TASKS[SudokuTask.name]``).
TASK = SudokuTask
