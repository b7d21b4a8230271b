"""Sudoku: generator, exact solver, checker, augmentations, parsing errors."""

import numpy as np
import pytest

from recursa.errors import RecursaError
from recursa.tasks.sudoku import Sudoku, SudokuTask

from .conftest import data_file, fixture_file


@pytest.mark.parametrize("box,n", [((2, 2), 30), ((2, 3), 30), ((3, 3), 3)])
def test_generator_gives_unique_solution_puzzles(box, n):
    s = Sudoku(*box)
    rng = np.random.default_rng(1)
    for _ in range(n):
        puzzle, solution = s.generate(rng)
        count, found = s.solve(puzzle, limit=5)
        assert count == 1
        assert np.array_equal(found, solution)
        assert s.is_valid(puzzle[None], solution[None])[0]
        assert (puzzle > 0).sum() < s.cells


@pytest.mark.parametrize("box", [(2, 2), (2, 3)])
def test_excluding_the_known_value_decides_uniqueness_as_counting_to_two(box):
    """The generator asks "is there a solution with another value in this cell?" (solve with
    exclude) instead of counting solutions up to 2: the same answer for every cell of every puzzle,
    and a minimal puzzle (givens=0) loses uniqueness when any given is removed."""
    s = Sudoku(*box)
    rng = np.random.default_rng(5)
    for _ in range(6):
        puzzle, solution = s.generate(rng)
        for i in range(s.cells):
            p = puzzle.copy()
            p[i] = 0
            unique = s.solve(p, limit=2)[0] == 1
            assert unique == (s.solve(p, limit=1, exclude=(i, int(solution[i])))[0] == 0), i
            if puzzle[i]:
                assert not unique, i  # minimal


def test_givens_knob_controls_difficulty():
    s = Sudoku(2, 3)
    rng = np.random.default_rng(0)
    easy = [(s.generate(rng, givens=20)[0] > 0).sum() for _ in range(10)]
    hard = [(s.generate(rng, givens=0)[0] > 0).sum() for _ in range(10)]
    assert min(easy) == 20 and max(hard) < 20


def _real_puzzles(name, k):
    lines = [ln.strip() for ln in data_file(f"sudoku/{name}").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    return lines[:k]


@pytest.mark.parametrize("name,unique", [("puzzles5_forum_hardest_1905_11+.txt", True),
                                         ("puzzles2_17_clue.txt", True),
                                         # a solver benchmark: its puzzles have several solutions
                                         ("puzzles7_serg_benchmark.txt", False)])
def test_solver_and_checker_agree_on_real_hard_puzzles(name, unique):
    s = Sudoku(3, 3)
    for line in _real_puzzles(name, 5):
        grid = s.parse(line, name)
        count, sol = s.solve(grid, limit=2)
        assert count == (1 if unique else 2), line
        assert s.is_valid(grid[None], sol[None])[0]
        # Any corruption of a blank cell breaks validity.
        bad = sol.copy()
        i = int(np.flatnonzero(grid == 0)[0])
        bad[i] = bad[i] % 9 + 1
        assert not s.is_valid(grid[None], bad[None])[0]
        # Changing a given breaks validity even when the rules hold elsewhere.
        j = int(np.flatnonzero(grid > 0)[0])
        other = grid.copy()
        other[j] = other[j] % 9 + 1
        assert not s.is_valid(other[None], sol[None])[0]


def test_checker_rejects_rule_violations():
    s = Sudoku(2, 2)
    sol = np.array([1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1], dtype=np.int8)
    empty = np.zeros(16, dtype=np.int8)
    assert s.is_valid(empty[None], sol[None])[0]
    rows_ok_boxes_bad = np.array([1, 2, 3, 4, 2, 3, 4, 1, 3, 4, 1, 2, 4, 1, 2, 3], dtype=np.int8)
    assert not s.is_valid(empty[None], rows_ok_boxes_bad[None])[0]
    incomplete = sol.copy()
    incomplete[5] = 0
    assert not s.is_valid(empty[None], incomplete[None])[0]


@pytest.mark.parametrize("box", [(2, 2), (2, 3), (3, 3)])
def test_every_augmentation_keeps_a_valid_pair_and_inverts(box):
    s = Sudoku(*box)
    rng = np.random.default_rng(7)
    puzzle, solution = s.generate(rng, givens=s.cells // 2)
    n = 300
    augs = s.random_augs(rng, n)
    P, Q = np.tile(puzzle, (n, 1)), np.tile(solution, (n, 1))
    p, q = s.apply_augs(P, augs), s.apply_augs(Q, augs)
    assert s.is_valid(p, q).all()
    counts, sols, _ = s.solve_many(p)
    assert (counts == 1).all() and np.array_equal(sols, q)  # still unique, and the label is the solution
    assert np.array_equal(s.invert_augs(p, augs), P) and np.array_equal(s.invert_augs(q, augs), Q)
    # Every kind of transformation occurs: digit relabelling, row moves, and transposes (square boxes only).
    rows_of = augs.cells.reshape(n, s.N, s.N) // s.N
    transposed = ~(rows_of == rows_of[:, :, :1]).all(axis=(1, 2))
    assert transposed.any() == (box[0] == box[1])
    assert len({x.tobytes() for x in p}) > n * 0.9
    assert (augs.digit_map[:, 1:] != np.arange(1, s.N + 1)).any(1).mean() > 0.5


def test_render_shows_boxes():
    s = Sudoku(2, 3)
    text = s.render(np.arange(36) % 7)
    assert text.count("\n") == 7 and "|" in text and "+" in text


@pytest.mark.parametrize("text,msg", [
    ("1" * 35, "35 cells, expected 36"),
    ("x" + "." * 35, "position 1 (row 1, column 1): 'x' is not a digit 1-6"),
    ("7" + "." * 35, "'7' is not a digit 1-6"),
    ("1..1" + "." * 32, "digit 1 appears twice in row 1 (positions 1 and 4)"),
])
def test_parse_errors_name_the_problem(text, msg):
    with pytest.raises(RecursaError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        SudokuTask(2, 3).parse(text)


def test_unsolvable_and_multi_solution_puzzles_are_refused():
    t = SudokuTask(2, 2)
    # Givens do not repeat, but no digit fits cell (1, 4): its row has 1,2 and its column 3,4.
    unsolvable = "12.." "...." "...3" "...4"
    assert t.sudoku.givens_conflict(t.sudoku.parse(unsolvable, check_givens=False)) is None
    with pytest.raises(RecursaError, match="no solution"):
        t.parse(unsolvable)
    with pytest.raises(RecursaError, match="more than one solution"):
        t.parse("." * 16)
    assert t.parse("." * 16, require_unique=False).shape == (16,)


@pytest.mark.parametrize("box", [(2, 2), (2, 3), (3, 3)])
def test_batched_solver_agrees_with_the_search_solver(box):
    """solve_many (vectorised propagation + branching) against the plain depth-first solver on
    unique, multi-solution, unsolvable and contradictory puzzles."""
    s = Sudoku(*box)
    rng = np.random.default_rng(3)
    grids = []
    for k in range(30):
        p, sol = s.generate(rng, givens=0 if k % 2 else s.cells // 3)
        grids.append(p)
        loose = p.copy()
        loose[np.flatnonzero(p)[: 1 + k % 4]] = 0  # fewer givens: often several solutions
        grids.append(loose)
        wrong = p.copy()  # a blank filled with a digit that has no place there: no solution
        i = int(np.flatnonzero(p == 0)[0])
        wrong[i] = sol[i] % s.N + 1
        grids.append(wrong)
    clash = np.zeros(s.cells, np.int8)
    clash[[0, 1]] = 1  # the same digit twice in a row
    grids.append(clash)
    grids.append(np.zeros(s.cells, np.int8))
    grids = np.stack(grids)
    counts, sols, guesses = s.solve_many(grids, limit=2, chunk=7)
    for g, c, x in zip(grids, counts, sols):
        n, ref = s.solve(g, limit=2)
        assert c == n
        if n:
            assert s.is_valid(g[None], x[None])[0]
        if n == 1:
            assert np.array_equal(x, ref)
        if n == 0:
            assert not x.any()
    assert set(counts.tolist()) == {0, 1, 2} and (guesses >= 0).all()


def test_batched_solver_on_real_hard_puzzles():
    s = Sudoku(3, 3)
    for name, expect in [("puzzles5_forum_hardest_1905_11+.txt", 1), ("puzzles2_17_clue.txt", 1),
                         ("puzzles7_serg_benchmark.txt", 2)]:
        grids = np.stack([s.parse(x, name) for x in _real_puzzles(name, 40)])
        counts, sols, guesses = s.solve_many(grids)
        assert (counts == expect).all(), name
        assert s.is_valid(grids, sols).all()
        if expect == 1:
            assert guesses.max() > 0  # hard puzzles need search beyond singles
