"""Maze builder, checker, augmentation and CSV import."""

import csv

import numpy as np
import pytest

from recursa.cli import main
from recursa.data.format import load_split
from recursa.tasks.grid import DIHEDRAL_INVERSE, dihedral
from recursa.tasks.maze import (
    GOAL,
    OPEN,
    PATH,
    START,
    WALL,
    MazeTask,
    build_maze,
    generate_mazes,
    nearest_shortest_paths,
    mark_shortest_paths,
    shortest_lengths,
    valid_shortest_paths,
)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mazes():
    return generate_mazes(np.random.default_rng(0), 60, size=14, min_path=24, loop_prob=0.1)


def test_generated_mazes_are_hard_and_labelled_with_shortest_paths(mazes):
    q, a = mazes
    assert q.shape == (60, 14, 14) and q.dtype == np.uint8
    assert ((q == START).sum((1, 2)) == 1).all() and ((q == GOAL).sum((1, 2)) == 1).all() and not (q == PATH).any()
    assert (shortest_lengths(q) >= 24).all()
    assert valid_shortest_paths(q, a).all()
    # Loops make some mazes have several shortest paths: another one is also accepted.
    other = mark_shortest_paths(q, np.random.default_rng(9))
    differs = (other != a).any((1, 2))
    assert differs.any() and valid_shortest_paths(q, other).all()


def test_checker_rejects_wrong_paths(mazes):
    q, a = mazes
    i = 0
    good = a[i]
    cases = {}
    broken = good.copy()  # a gap in the path
    cells = np.argwhere(good == PATH)
    broken[tuple(cells[len(cells) // 2])] = OPEN
    cases["gap"] = broken
    extra = good.copy()  # a correct path plus a stray path cell
    free = np.argwhere(q[i] == OPEN)
    stray = next(tuple(c) for c in free if good[tuple(c)] == OPEN)
    extra[stray] = PATH
    cases["stray"] = extra
    wall = good.copy()  # a wall erased
    wall[tuple(np.argwhere(q[i] == WALL)[0])] = OPEN
    cases["wall"] = wall
    through = good.copy()  # the path drawn through a wall
    through[tuple(np.argwhere(q[i] == WALL)[0])] = PATH
    cases["through_wall"] = through
    moved = good.copy()  # G overwritten
    moved[moved == GOAL] = PATH
    cases["goal"] = moved
    empty = q[i].copy()
    cases["no_path"] = empty
    for name, pred in cases.items():
        assert not valid_shortest_paths(q[i:i + 1], pred[None])[0], name
    # a longer detour: a valid S-G path that is not a shortest one
    open_maze = np.full((1, 5, 5), OPEN, np.uint8)
    open_maze[0, 0, 0], open_maze[0, 0, 4] = START, GOAL
    detour = open_maze.copy()
    detour[0, 1, 0:5] = PATH
    assert shortest_lengths(open_maze)[0] == 4 and not valid_shortest_paths(open_maze, detour)[0]
    straight = open_maze.copy()
    straight[0, 0, 1:4] = PATH
    assert valid_shortest_paths(open_maze, straight)[0]


@pytest.mark.parametrize("t", range(8))
def test_dihedral_views_invert_and_keep_shortest_paths(mazes, t):
    q, a = mazes
    assert np.array_equal(dihedral(dihedral(q, t), DIHEDRAL_INVERSE[t]), q)
    assert valid_shortest_paths(dihedral(q, t), dihedral(a, t)).all()


def test_build_is_deterministic_and_augmented(tmp_path):
    kw = dict(size=12, min_path=20, num_train=12, num_test=5, aug=True, log=lambda *a: None)
    build_maze(tmp_path / "a", seed=3, **kw)
    build_maze(tmp_path / "b", seed=3, **kw)
    build_maze(tmp_path / "c", seed=4, **kw)
    assert _files(tmp_path / "a") == _files(tmp_path / "b") != _files(tmp_path / "c")
    train, test = load_split(tmp_path / "a", "train"), load_split(tmp_path / "a", "test")
    assert train.meta["vocab_size"] == 6 and train.meta["seq_len"] == 144
    assert train.num_groups == 12 and len(train.inputs) == 96 and len(test.inputs) == 5
    task = MazeTask(12)
    assert task.check(np.asarray(train.inputs), np.asarray(train.labels)).all()  # every view
    assert task.check(np.asarray(test.inputs), np.asarray(test.labels)).all()
    views = np.asarray(train.inputs).reshape(12, 8, 12, 12)
    assert all(np.array_equal(views[:, t], dihedral(views[:, 0], t)) for t in range(8))


def _write_csv(path, q, a, rows=None):
    task = MazeTask(q.shape[-1])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "question", "answer", "rating"])
        for k in range(len(q)):
            qs = task.render(q[k].reshape(-1)).replace("\n", "")
            as_ = task.render(a[k].reshape(-1)).replace("\n", "")
            if rows and k in rows:
                qs, as_ = rows[k](qs, as_)
            w.writerow(["gen", qs, as_, 0])
    return path


def test_csv_import_round_trips(tmp_path, mazes):
    q, a = mazes
    src = _write_csv(tmp_path / "train.csv", q[:40], a[:40])
    tst = _write_csv(tmp_path / "test.csv", q[40:], a[40:])
    assert main(["build", "maze", "--source", str(src), "--test-source", str(tst), "--out", str(tmp_path / "m")]) == 0
    train, test = load_split(tmp_path / "m", "train"), load_split(tmp_path / "m", "test")
    assert np.array_equal(np.asarray(train.inputs), q[:40].reshape(40, -1))
    assert np.array_equal(np.asarray(test.labels), a[40:].reshape(20, -1))


@pytest.mark.parametrize("edit,msg", [
    (lambda qs, as_: (qs.replace("G", " "), as_), "bad.csv:3: question: no G (goal) cell, expected exactly one"),
    (lambda qs, as_: (qs[:-1] + "x", as_), "bad.csv:3: question: position 196 (row 14, column 14): 'x' is not a maze cell"),
    (lambda qs, as_: (qs + " ", as_), "bad.csv:3: question has 197 cells, expected 196"),
    (lambda qs, as_: (qs, as_.replace("o", " ", 1)), "bad.csv:3: the answer is not a shortest S-G path"),
])
def test_malformed_maze_csv_names_file_and_line(tmp_path, capsys, mazes, edit, msg):
    q, a = mazes
    bad = _write_csv(tmp_path / "bad.csv", q[:3], a[:3], rows={1: edit})
    assert main(["build", "maze", "--source", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_task_parse_render_and_reference(mazes):
    q, a = mazes
    task = MazeTask(14)
    text = task.render(q[0].reshape(-1))
    assert np.array_equal(task.parse(text), q[0].reshape(-1))
    ref = task.reference(q[0].reshape(-1))
    assert task.check(q[0].reshape(1, -1), ref[None])[0]
    from recursa.errors import RecursaError
    with pytest.raises(RecursaError, match="no S"):
        task.parse(text.replace("S", " "))
    walled = q[0].copy()
    walled[walled == OPEN] = WALL
    with pytest.raises(RecursaError, match="G cannot be reached from S"):
        task.parse(task.render(walled.reshape(-1)))


def test_solve_a_maze_from_a_file(tmp_path, capsys):
    """build -> train a few steps -> solve reads a maze file and shows the steps."""
    from recursa import config
    from recursa.training.trainer import fit
    data = tmp_path / "m"
    build_maze(data, size=10, min_path=12, num_train=40, num_test=4, log=lambda *a: None)
    cfg = config.from_dict({
        "model": {"hidden_size": 16, "num_heads": 2, "L_layers": 1, "H_cycles": 1, "L_cycles": 1, "halt_max_steps": 2,
                  "mlp_t": False, "pos_encodings": "rope", "puzzle_emb_ndim": 0},
        "train": {"data": str(data), "out": str(tmp_path / "run"), "batch_size": 8, "steps": 2, "lr": 1e-3,
                  "lr_warmup_steps": 1, "eval_interval": -1, "device": "cpu", "num_threads": 1},
    })
    fit(cfg, progress=False, log=lambda *a: None)
    q = np.asarray(load_split(data, "test").inputs)
    task = MazeTask(10)
    mazes = tmp_path / "mazes.txt"
    mazes.write_text(task.render(q[0]) + "\n\n" + task.render(q[1]) + "\n")
    assert main(["solve", str(tmp_path / "run"), "--file", str(mazes)]) == 0
    out = capsys.readouterr().out
    assert "mazes.txt lines 1-10: 10x10 maze" in out and "mazes.txt lines 12-21" in out and "S" in out


def _all_shortest_paths(grid):
    """Every shortest S->G path of one maze, as lists of its open cells (brute force)."""
    from recursa.tasks.maze import bfs_distance
    d = bfs_distance((grid != WALL)[None], (grid == START)[None])[0]
    s, g = tuple(np.argwhere(grid == START)[0]), tuple(np.argwhere(grid == GOAL)[0])
    paths = []

    def walk(cell, acc):
        if cell == s:
            paths.append(acc[:-1])  # without S
            return
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            n = (cell[0] + dr, cell[1] + dc)
            if 0 <= n[0] < grid.shape[0] and 0 <= n[1] < grid.shape[1] and d[n] == d[cell] - 1:
                walk(n, acc + [n])

    walk(g, [])
    return paths


def test_nearest_shortest_path_is_the_shortest_path_of_largest_gain():
    """train.nearest_answer's choice: among all shortest paths (enumerated by brute force), the one whose
    cells' gains sum highest; a maze with one shortest path keeps it; a maze without a path keeps its labels."""
    rng = np.random.default_rng(4)
    q, a = generate_mazes(rng, 40, size=9, min_path=8, loop_prob=0.3)
    paths = [_all_shortest_paths(g) for g in q]
    assert sum(len(p) > 1 for p in paths) >= 10 and sum(len(p) == 1 for p in paths) >= 5
    for _ in range(3):
        gain = rng.normal(size=q.shape)
        out = nearest_shortest_paths(q, gain)
        assert valid_shortest_paths(q, out).all()
        for b in range(len(q)):
            best = max(sum(gain[b][c] for c in p) for p in paths[b])
            assert gain[b][out[b] == PATH].sum() == pytest.approx(best, abs=1e-9)
            if len(paths[b]) == 1:
                assert (out[b] == a[b]).all()
    # the task's method: log-probabilities whose argmax marks a (non-label) shortest path get that path back
    task = MazeTask(9)
    multi = next(b for b in range(len(q)) if len(paths[b]) > 1)
    other = q[multi].copy()
    choice = next(p for p in paths[multi] if any(a[multi][c] != PATH for c in p))
    for c in choice:
        other[c] = PATH
    assert valid_shortest_paths(q[multi][None], other[None]).all() and (other != a[multi]).any()
    logp = np.log(np.full((1, 81, 6), 0.02))
    logp[0, np.arange(81), other.reshape(-1)] = np.log(0.9)
    got = task.nearest_answers(q[multi].reshape(1, -1), a[multi].reshape(1, -1), logp)
    assert (got == other.reshape(1, -1)).all()
    # G walled off: no path, the given labels stay
    blocked = q[multi].copy()
    gr, gc = np.argwhere(blocked == GOAL)[0]
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        if 0 <= gr + dr < 9 and 0 <= gc + dc < 9:
            blocked[gr + dr, gc + dc] = WALL
    got = task.nearest_answers(blocked.reshape(1, -1), a[multi].reshape(1, -1), logp)
    assert (got == a[multi].reshape(1, -1)).all()
