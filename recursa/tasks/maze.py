"""Mazes (Maze-Hard of the HRM/TRM papers): find a shortest path from S to G on a square grid.

Tokens follow the official builder: the characters ``"# SGo"`` are ids 1..5 (wall, open, start,
goal, path), PAD = 0, vocab 6, seq_len = size * size (900 for 30x30). The input has walls, open
cells, S and G; the answer marks one shortest path with ``o`` (S and G kept).

This module owns the seeded generator (uniform spanning-tree mazes by a random walk, extra openings
for loops, S and G drawn at least ``min_path`` steps apart), the import of the benchmark's CSV layout
(``source,question,answer,rating``), the 8 dihedral augmentations (recursa/tasks/grid.py) with their inverse, the checker
(a prediction is right when it marks *a* shortest path, so mazes with several are scored fairly)
and the renderer. Everything is vectorised over mazes with numpy: breadth-first search is a
frontier dilation on (B, H, W) masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.format import make_split, write_dataset
from ..errors import RecursaError
from .base import BuildCommand, TaskBase, carve_held_out, check_memory, count_arg, read_benchmark_csv, seeded_split
from .grid import DIHEDRAL_INVERSE, dihedral, dihedral_rows

CHARSET = "# SGo"
WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5
_CHAR_ID = np.zeros(256, dtype=np.uint8)  # 0 = not a maze character
_CHAR_ID[[ord(c) for c in CHARSET]] = np.arange(1, 6)
_ID_CHAR = np.array(list("?" + CHARSET))


# ---------------------------------------------------------------------- grid helpers
def _dilate(mask: np.ndarray) -> np.ndarray:
    """4-neighbourhood dilation of (B, H, W) boolean masks (no wrap-around)."""
    out = mask.copy()
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    out[:, :, 1:] |= mask[:, :, :-1]
    out[:, :, :-1] |= mask[:, :, 1:]
    return out


def bfs_distance(passable: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Steps from the ``start`` cells through ``passable`` cells, (B, H, W) int32; -1 = unreachable."""
    dist = np.full(passable.shape, -1, dtype=np.int32)
    frontier = start & passable
    d = 0
    while frontier.any():
        dist[frontier] = d
        frontier = _dilate(frontier) & passable & (dist < 0)
        d += 1
    return dist


def shortest_lengths(grids: np.ndarray) -> np.ndarray:
    """(B,) steps of a shortest S->G path of token grids (B, H, W); -1 if G is unreachable."""
    passable = grids != WALL
    dist = bfs_distance(passable, grids == START)
    at_goal = np.where(grids == GOAL, dist, -1).reshape(len(grids), -1).max(1)
    return at_goal


# ---------------------------------------------------------------------- task (token space)
class MazeTask(TaskBase):
    """Maze in token space for the trainer/evaluator/CLI (see module docstring)."""

    name = "maze"
    palette = {"#": "#3b3b3b", "S": "#2ca02c", "G": "#d62728", "o": "#4292c6"}
    vocab_size = len(CHARSET) + 1

    def __init__(self, size: int = 30):
        if not 4 <= size <= 64:
            raise RecursaError(f"maze size {size}: must be in 4..64")
        self.size = size
        self.seq_len = size * size
        self.grid = (size, size)

    def params(self) -> dict:
        return {"size": self.size}

    def describe(self) -> str:
        return f"{self.size}x{self.size} maze"

    def _grid(self, tokens: np.ndarray) -> np.ndarray:
        return np.asarray(tokens).reshape(-1, self.size, self.size)

    views = 8  # the dihedral transforms: a shortest path maps to a shortest path

    def view(self, tokens: np.ndarray, v: int) -> np.ndarray:
        return dihedral_rows(tokens, self.size, v)

    def unview(self, tokens: np.ndarray, v: int) -> np.ndarray:
        return dihedral_rows(tokens, self.size, DIHEDRAL_INVERSE[v])

    def parse(self, text: str, where: str = "maze") -> np.ndarray:
        """``size`` lines of ``size`` characters (or one line of size*size): '#' wall, ' ' or '.'
        open, 'S' start, 'G' goal. Exactly one S and one G, and G reachable from S."""
        n = self.size
        rows = [r.rstrip("\r") for r in text.split("\n")]
        rows = [r for r in rows if r.strip() or len(r) == n]  # a row of n spaces is an open row
        s = "".join(rows) if len(rows) > 1 else (rows[0] if rows else "")
        s = s.replace(".", " ")
        if len(s) != n * n:
            raise RecursaError(f"{where}: {len(s)} cells, expected {n * n} for a {self.describe()}")
        return validate_questions(_cell_bytes([s], n, lambda i: where), n, lambda i: where)[0]

    def split_puzzles(self, lines: list[str], path) -> list[tuple[str, str]]:
        """Mazes are blocks of rows separated by blank lines."""
        items, start = [], None
        for i, line in enumerate(lines + [""]):
            if line.strip() and start is None:
                start = i
            elif not line.strip() and start is not None:
                items.append(("\n".join(lines[start:i]), f"{path} lines {start + 1}-{i}"))
                start = None
        return items

    def puzzle_text(self, tokens: np.ndarray) -> str:
        return self.render(tokens).replace("\n", "")

    def check(self, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        return valid_shortest_paths(self._grid(inputs), self._grid(preds))

    def render(self, tokens: np.ndarray) -> str:
        g = _ID_CHAR[np.clip(self._grid(tokens)[0], 0, 5)]
        return "\n".join("".join(row) for row in g)

    answer_sets = True  # a maze may have several shortest paths: train.nearest_answer applies

    def nearest_answers(self, inputs: np.ndarray, labels: np.ndarray, logp: np.ndarray) -> np.ndarray:
        grids = self._grid(inputs)
        gain = (logp[..., PATH] - logp[..., OPEN]).reshape(grids.shape)
        # a maze without a path from S to G keeps its given labels
        return nearest_shortest_paths(grids, gain, self._grid(labels)).reshape(np.shape(labels))

    def reference(self, inputs: np.ndarray) -> np.ndarray | None:
        grids = self._grid(inputs)
        if shortest_lengths(grids)[0] < 0:
            return None
        return mark_shortest_paths(grids, np.random.default_rng(0))[0].reshape(-1)


def _cell_bytes(strings: list[str], size: int, where) -> np.ndarray:
    """Equal-length strings of size*size cells -> (B, size*size) bytes. A character beyond Latin-1
    (which no maze cell is) is an error showing that character itself, not a replacement '?'."""
    try:
        data = "".join(strings).encode("latin-1")
    except UnicodeEncodeError as e:
        i, j = divmod(e.start, size * size)
        raise RecursaError(f"{where(i)}: position {j + 1} (row {j // size + 1}, column {j % size + 1}): "
                           f"{strings[i][j]!r} is not a maze cell ('#' wall, ' ' open, 'S' start, 'G' goal)") from None
    return np.frombuffer(data, np.uint8).reshape(len(strings), size * size)


def validate_questions(raw: np.ndarray, size: int, where) -> np.ndarray:
    """Characters (B, size*size) as bytes -> token ids; every error names ``where(i)`` and the cell."""
    ids = _CHAR_ID[raw]
    for i in np.flatnonzero((ids == 0).any(1) | (ids == PATH).any(1)):
        j = int(np.flatnonzero((ids[i] == 0) | (ids[i] == PATH))[0])
        raise RecursaError(f"{where(i)}: position {j + 1} (row {j // size + 1}, column {j % size + 1}): "
                           f"{chr(raw[i, j])!r} is not a maze cell ('#' wall, ' ' open, 'S' start, 'G' goal)")
    for i in np.flatnonzero(((ids == START).sum(1) != 1) | ((ids == GOAL).sum(1) != 1)):
        for tok, name in ((START, "S (start)"), (GOAL, "G (goal)")):
            k = int((ids[i] == tok).sum())
            if k != 1:
                raise RecursaError(f"{where(i)}: {'no' if k == 0 else k} {name} cell{'s' if k > 1 else ''}, "
                                   "expected exactly one")
    lengths = shortest_lengths(ids.reshape(-1, size, size))
    for i in np.flatnonzero(lengths < 0):
        raise RecursaError(f"{where(i)}: G cannot be reached from S")
    return ids


def valid_shortest_paths(inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """(B,) bool: ``preds`` keeps every wall, S and G of ``inputs``, marks path cells only on open
    cells, and its path cells connect S to G in exactly the shortest number of steps (so they
    form a shortest path, whichever one)."""
    inputs, preds = np.asarray(inputs), np.asarray(preds)
    fixed = inputs != OPEN
    keeps = np.where(fixed, preds == inputs, (preds == OPEN) | (preds == PATH)).all(axis=(1, 2))
    path = preds == PATH
    allowed = path | (inputs == START) | (inputs == GOAL)
    reach = bfs_distance(allowed, inputs == START)
    got = np.where(inputs == GOAL, reach, -1).reshape(len(inputs), -1).max(1)
    best = shortest_lengths(inputs)
    return keeps & (best > 0) & (got == best) & (path.sum(axis=(1, 2)) == best - 1)


def mark_shortest_paths(grids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Answer grids: one shortest S->G path marked with PATH, walking back from G and taking a
    random one of the neighbours one step closer to S at each step (vectorised over mazes)."""
    B, H, W = grids.shape
    dist = bfs_distance(grids != WALL, grids == START)
    out = grids.copy()
    flat_goal = (grids == GOAL).reshape(B, -1).argmax(1)
    r, c = flat_goal // W, flat_goal % W
    d = dist[np.arange(B), r, c]
    moves = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])
    rows = np.arange(B)
    while (d > 1).any():
        act = d > 1
        order = rng.permuted(np.tile(np.arange(4), (B, 1)), axis=1)
        chosen = np.full(B, -1)
        for k in range(4):
            dr, dc = moves[order[:, k]].T
            nr, nc = r + dr, c + dc
            inside = (nr >= 0) & (nr < H) & (nc >= 0) & (nc < W)
            nd = np.where(inside, dist[rows, np.clip(nr, 0, H - 1), np.clip(nc, 0, W - 1)], -2)
            take = act & (chosen < 0) & (nd == d - 1)
            chosen = np.where(take, order[:, k], chosen)
        dr, dc = moves[np.maximum(chosen, 0)].T
        r, c = np.where(act, r + dr, r), np.where(act, c + dc, c)
        out[rows[act], r[act], c[act]] = PATH
        d = np.where(act, d - 1, d)
    return out


def nearest_shortest_paths(grids: np.ndarray, gain: np.ndarray, unreachable: np.ndarray | None = None) -> np.ndarray:
    """Answer grids (B, H, W): of all shortest S->G paths of each maze, the one with the largest
    sum of ``gain`` (B, H, W) over its cells, marked with PATH (S, G and the rest as in ``grids``).

    With gain = log p(path) - log p(open) per cell this is the shortest path whose per-token
    cross-entropy is least (the loss of every other cell is the same whichever path is chosen):
    dynamic programming over the cells of shortest paths in order of their distance from S, then a
    walk back from G through the best predecessors (ties: up, down, left, right). Mazes whose G is
    not reachable get their row of ``unreachable`` (default: the maze unchanged)."""
    grids = np.asarray(grids)
    B, H, W = grids.shape
    passable = grids != WALL
    d_s = bfs_distance(passable, grids == START)
    d_g = bfs_distance(passable, grids == GOAL)
    length = np.where(grids == GOAL, d_s, -1).reshape(B, -1).max(1)
    on = (d_s >= 0) & (d_g >= 0) & (d_s + d_g == length[:, None, None])
    gain = np.where(grids == OPEN, np.asarray(gain, dtype=np.float64), 0.0)
    best = np.where(on & (d_s == 0), 0.0, -np.inf)  # best gain of a shortest path from S to each cell
    for k in range(1, max(int(length.max()), 0) + 1):
        prev = np.where(on & (d_s == k - 1), best, -np.inf)
        pad = np.pad(prev, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
        into = np.maximum(np.maximum(pad[:, :-2, 1:-1], pad[:, 2:, 1:-1]), np.maximum(pad[:, 1:-1, :-2], pad[:, 1:-1, 2:]))
        level = on & (d_s == k)
        best = np.where(level, gain + into, best)
    out = grids.copy()
    rows = np.arange(B)
    flat_goal = (grids == GOAL).reshape(B, -1).argmax(1)
    r, c, d = flat_goal // W, flat_goal % W, length.copy()
    moves = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])
    score = np.where(on, best, -np.inf)
    while (d > 1).any():
        act = d > 1
        pick, top = np.zeros(B, dtype=np.int64), np.full(B, -np.inf)
        for k, (dr, dc) in enumerate(moves):
            nr, nc = np.clip(r + dr, 0, H - 1), np.clip(c + dc, 0, W - 1)
            inside = (r + dr == nr) & (c + dc == nc)
            cand = np.where(inside & (d_s[rows, nr, nc] == d - 1), score[rows, nr, nc], -np.inf)
            better = cand > top
            pick, top = np.where(better, k, pick), np.where(better, cand, top)
        r, c = np.where(act, r + moves[pick, 0], r), np.where(act, c + moves[pick, 1], c)
        out[rows[act], r[act], c[act]] = PATH
        d = np.where(act, d - 1, d)
    if unreachable is not None:
        out = np.where((length < 0)[:, None, None], unreachable, out)
    return out


# ---------------------------------------------------------------------- generator
def _spanning_tree_mazes(rng: np.random.Generator, n: int, size: int, loop_prob: float) -> np.ndarray:
    """n (size, size) token grids of WALL/OPEN: a uniform spanning tree of the lattice of cells at
    even coordinates (Aldous-Broder random walks, all mazes at once), plus each remaining wall
    between two lattice cells opened with probability ``loop_prob`` (loops: several routes)."""
    m = (size + 1) // 2
    visited = np.zeros((n, m, m), dtype=bool)
    horiz = np.zeros((n, m, m - 1), dtype=bool)  # passage between (i, j) and (i, j+1)
    vert = np.zeros((n, m - 1, m), dtype=bool)  # passage between (i, j) and (i+1, j)
    rows = np.arange(n)
    r, c = rng.integers(0, m, n), rng.integers(0, m, n)
    visited[rows, r, c] = True
    left = np.full(n, m * m - 1)
    moves = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])
    while (left > 0).any():
        act = left > 0
        dr, dc = moves[rng.integers(0, 4, n)].T
        nr, nc = r + dr, c + dc
        ok = act & (nr >= 0) & (nr < m) & (nc >= 0) & (nc < m)
        nr, nc = np.where(ok, nr, r), np.where(ok, nc, c)
        new = ok & ~visited[rows, nr, nc]
        # carve the wall crossed by each first entry
        h = new & (dr == 0)
        horiz[rows[h], r[h], np.minimum(c, nc)[h]] = True
        v = new & (dc == 0)
        vert[rows[v], np.minimum(r, nr)[v], c[v]] = True
        visited[rows[new], nr[new], nc[new]] = True
        left -= new
        r, c = nr, nc
    if loop_prob > 0:
        horiz |= rng.random(horiz.shape) < loop_prob
        vert |= rng.random(vert.shape) < loop_prob
    grid = np.full((n, size, size), WALL, dtype=np.uint8)
    grid[:, 0::2, 0::2][:, :m, :m] = OPEN
    grid[:, 0::2, 1::2][:, :m, :m - 1][horiz] = OPEN
    grid[:, 1::2, 0::2][:, :m - 1, :m][vert] = OPEN
    return grid


def generate_mazes(rng: np.random.Generator, n: int, size: int = 30, min_path: int = 110,
                   loop_prob: float = 0.05, max_rounds: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) token grids (n, size, size): S near the end of a long corridor (uniform
    among the cells at least 3/4 of the eccentricity away from a random open cell), G uniform
    among the cells at least ``min_path`` steps from S (mazes with none are drawn again)."""
    got_q, got_a, have = [], [], 0
    for _ in range(max_rounds):
        if have >= n:
            break
        B = max(64, int(1.5 * (n - have)))
        grids = _spanning_tree_mazes(rng, B, size, loop_prob)
        open_ = grids == OPEN
        flat_open = open_.reshape(B, -1)
        # S: uniform among the cells far from a random open cell (at least 3/4 of its eccentricity),
        # which puts S near one end of a long corridor; then G uniform among cells >= min_path from S.
        r_idx = np.where(flat_open, rng.random(flat_open.shape), -1).argmax(1)
        seed_cell = np.zeros_like(flat_open)
        seed_cell[np.arange(B), r_idx] = True
        d0 = bfs_distance(open_, seed_cell.reshape(open_.shape)).reshape(B, -1)
        far0 = d0 >= (3 * d0.max(1, keepdims=True)) // 4
        s_idx = np.where(far0, rng.random(far0.shape), -1).argmax(1)
        start = np.zeros_like(flat_open)
        start[np.arange(B), s_idx] = True
        dist = bfs_distance(open_, start.reshape(open_.shape)).reshape(B, -1)
        far = dist >= min_path
        ok = far.any(1)
        g_idx = np.where(far, rng.random(far.shape), -1).argmax(1)
        flat = grids.reshape(B, -1)
        flat[np.arange(B), s_idx] = START
        flat[np.arange(B), g_idx] = GOAL
        grids = flat.reshape(B, size, size)[ok]
        if not len(grids):
            continue
        answers = mark_shortest_paths(grids, rng)
        got_q.append(grids)
        got_a.append(answers)
        have += len(grids)
    if have < n:
        raise RecursaError(f"could not draw {n} {size}x{size} mazes with a shortest path of at least {min_path} steps; "
                           "lower --min-path or --loop-prob")
    return np.concatenate(got_q)[:n], np.concatenate(got_a)[:n]


# ---------------------------------------------------------------------- CSV import
def read_maze_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """The benchmark's CSV layout (``source,question,answer,rating``; square grids as strings of
    ``"# SGo"``) -> (questions, answers, size); every problem names the file and line."""
    path = Path(path)
    qs, as_, _, lines = read_benchmark_csv(path)
    if not qs:
        raise RecursaError(f"{path}: no mazes")
    size = int(round(len(qs[0]) ** 0.5))
    for i, (q, a) in enumerate(zip(qs, as_, strict=True)):
        for what, s in (("question", q), ("answer", a)):
            if len(s) != size * size:
                raise RecursaError(f"{path}:{lines[i]}: {what} has {len(s)} cells, expected {size * size} "
                                   f"({size}x{size}, from the first row)")
    q_ids = validate_questions(_cell_bytes(qs, size, lambda i: f"{path}:{lines[i]}: question"), size,
                               lambda i: f"{path}:{lines[i]}: question")
    a_raw = _cell_bytes(as_, size, lambda i: f"{path}:{lines[i]}: answer")
    a_ids = _CHAR_ID[a_raw]
    for i in np.flatnonzero((a_ids == 0).any(1)):
        j = int(np.flatnonzero(a_ids[i] == 0)[0])
        raise RecursaError(f"{path}:{lines[i]}: answer position {j + 1}: {chr(a_raw[i, j])!r} is not a maze cell")
    q_grid, a_grid = q_ids.reshape(-1, size, size), a_ids.reshape(-1, size, size)
    for i in np.flatnonzero(~valid_shortest_paths(q_grid, a_grid)):
        raise RecursaError(f"{path}:{lines[i]}: the answer is not a shortest S-G path of the question")
    return q_grid, a_grid, size


# ---------------------------------------------------------------------- builder
def build_maze(out, *, size: int = 30, min_path: int = 110, num_train: int = 1000, num_test: int = 1000,
               loop_prob: float = 0.05, aug: bool = False, source: str | Path | None = None,
               test_source: str | Path | None = None, test_fraction: float = 0.1, subsample_size: int = 0,
               seed: int = 0, overwrite: bool = False, num_val: int = 0, log=print) -> MazeTask:
    """Generate (or import from CSV) a maze dataset in the official layout. Training groups are a
    maze plus, with ``aug``, its 7 other dihedral views; the test set is not augmented. ``num_val``
    > 0 adds a ``val/`` split: generated mazes draw it from its own random stream, none equal to a
    training or test maze, and train and test are the same as without it; from a CSV it is carved
    out of the training mazes (``_carve_val``)."""
    rng = np.random.default_rng([seed, 20])
    if num_val < 0:
        raise RecursaError(f"--num-val {num_val}: must be >= 0")
    if source is not None:
        q, a, size = read_maze_csv(source)
        if test_source is not None:
            tq, ta, tsize = read_maze_csv(test_source)
            if tsize != size:
                raise RecursaError(f"{test_source}: {tsize}x{tsize} mazes, but {source} has {size}x{size}")
        else:
            if not 0.0 < test_fraction < 1.0:
                raise RecursaError(f"--test-fraction {test_fraction}: must be in (0, 1)")
            train_idx, test_idx = seeded_split(len(q), test_fraction, rng)
            tq, ta, q, a = q[test_idx], a[test_idx], q[train_idx], a[train_idx]
        if num_val:  # out of the training mazes, before any subsample: none equal to a test maze
            q, a, vq, va = _carve_val(np.random.default_rng([seed, 21]), num_val, q, a, tq, source)
        if subsample_size and subsample_size < len(q):
            pick = np.sort(rng.choice(len(q), subsample_size, replace=False))
            q, a = q[pick], a[pick]
    else:
        if num_train <= 0:
            raise RecursaError(f"--num-train {num_train}: must be > 0")
        if num_test <= 0:
            raise RecursaError(f"--num-test {num_test}: a dataset needs at least one test maze")
        if not 0.0 <= loop_prob <= 1.0:
            raise RecursaError(f"--loop-prob {loop_prob}: must be in [0, 1]")
        MazeTask(size)
        # Generation draws 1.5x the mazes at once, with float64 random keys and int32 distances per cell.
        check_memory(int(1.5 * (num_train + num_test)) * size * size * 32,
                     f"--num-train {num_train} + --num-test {num_test} mazes of {size}x{size}")
        qa, aa = generate_mazes(rng, num_train + num_test, size, min_path, loop_prob)
        q, a, tq, ta = qa[:num_train], aa[:num_train], qa[num_train:], aa[num_train:]
    task = MazeTask(size)
    views = 8 if aug else 1
    train_q = np.stack([dihedral(q, t) for t in range(views)], axis=1).reshape(-1, size * size)
    train_a = np.stack([dihedral(a, t) for t in range(views)], axis=1).reshape(-1, size * size)
    splits = {
        "train": make_split(train_q, train_a, np.full(len(q), views), vocab_size=task.vocab_size),
        "test": make_split(tq.reshape(len(tq), -1), ta.reshape(len(ta), -1), vocab_size=task.vocab_size),
    }
    lengths = shortest_lengths(tq)
    build_args = {"size": size, "min_path": min_path, "num_train": num_train, "num_test": num_test,
                  "loop_prob": loop_prob, "aug": aug, "subsample_size": subsample_size,
                  "source": None if source is None else str(source),
                  "test_source": None if test_source is None else str(test_source), "test_fraction": test_fraction}
    if num_val and source is None:
        vq, va = _held_out_mazes(np.random.default_rng([seed, 21]), num_val, size, min_path, loop_prob, (train_q, tq))
    if num_val:
        splits["val"] = make_split(vq.reshape(num_val, -1), va.reshape(num_val, -1), vocab_size=task.vocab_size)
        build_args["num_val"] = num_val
    info = {"format_version": 1, "task": task.name, "params": task.params(), "seed": seed, "builder": "maze",
            "build_args": build_args}
    write_dataset(out, splits, ["<blank>"], info, overwrite=overwrite)
    val = f", {num_val} validation mazes" if num_val else ""
    log(f"wrote {out}: {len(train_q)} training mazes ({len(q)} x {views} views), {len(tq)} test mazes{val}, "
        f"{size}x{size}, shortest path {lengths.min()}..{lengths.max()} steps (mean {lengths.mean():.0f})")
    return task


# ---------------------------------------------------------------------- `recursa build maze`
def _carve_val(rng, n: int, q: np.ndarray, a: np.ndarray, tq: np.ndarray, source) -> tuple:
    """``n`` of the training mazes ``q``/``a`` (seeded) as a validation split: distinct, none equal to
    a test maze; every training maze equal to one of them, or to one of their dihedral views (which
    --aug would train on), leaves training. -> (q, a, val q, val a)."""
    flat = q.reshape(len(q), -1)
    chosen = carve_held_out(rng, q, np.arange(len(q)), tq, n, source, "mazes")
    views = {m.tobytes() for t in range(8) for m in dihedral(q[chosen], t).reshape(n, -1)}
    keep = np.fromiter((m.tobytes() not in views for m in flat), dtype=bool, count=len(flat))
    if not keep.any():
        raise RecursaError(f"--num-val {n}: no training mazes of {source} would be left; ask for fewer")
    return q[keep], a[keep], q[chosen], a[chosen]


def _held_out_mazes(rng, n: int, size: int, min_path: int, loop_prob: float, others) -> tuple[np.ndarray, np.ndarray]:
    """``n`` generated mazes, none equal to a maze of ``others`` (arrays of mazes, any shape
    (k, size * size) or (k, size, size)) nor to each other."""
    seen = {m.tobytes() for arr in others for m in np.asarray(arr).reshape(len(arr), -1)}
    qs, as_ = [], []
    while len(qs) < n:
        q, a = generate_mazes(rng, n - len(qs), size, min_path, loop_prob)
        for m, sol in zip(q, a):
            key = m.reshape(-1).tobytes()
            if key not in seen:
                seen.add(key)
                qs.append(m)
                as_.append(sol)
    return np.stack(qs), np.stack(as_)


def _build_arguments(p) -> None:
    p.add_argument("--size", type=count_arg, default=30, help="grid side (default 30)")
    p.add_argument("--min-path", type=count_arg, default=110, help="keep mazes whose shortest S-G path has at least this "
                                                             "many steps (default 110, as Maze-Hard)")
    p.add_argument("--num-train", type=count_arg, default=1000, help="generated training mazes (default 1000)")
    p.add_argument("--num-test", type=count_arg, default=1000, help="generated test mazes (default 1000)")
    p.add_argument("--num-val", type=count_arg, default=0, help="validation mazes (val/), none equal to a "
                   "training or test maze: the halting threshold is calibrated on them after training (default 0)")
    p.add_argument("--loop-prob", type=float, default=0.05,
                   help="probability of opening each remaining wall between two corridor cells (default 0.05)")
    p.add_argument("--aug", action="store_true", help="add the 7 other dihedral views of each training maze")
    p.add_argument("--source", help="import mazes from the benchmark's CSV (e.g. train.csv) instead of generating")
    p.add_argument("--test-source", help="with --source: test mazes from this CSV (e.g. test.csv)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="with --source and no --test-source: seeded fraction held out for test (default 0.1)")
    p.add_argument("--subsample-size", type=count_arg, default=0, help="with --source: seeded subset of training mazes")
    p.add_argument("--seed", type=count_arg, default=0, help="random seed (default 0)")


def _build_from_args(args):
    if args.test_source and not args.source:
        raise RecursaError("--test-source needs --source")
    if args.subsample_size < 0 or args.min_path < 1:
        raise RecursaError("--subsample-size must be >= 0 and --min-path >= 1")
    build_maze(args.out, overwrite=args.overwrite, size=args.size, min_path=args.min_path, num_train=args.num_train,
               num_test=args.num_test, loop_prob=args.loop_prob, aug=args.aug, source=args.source,
               test_source=args.test_source,
               test_fraction=args.test_fraction, subsample_size=args.subsample_size, seed=args.seed,
               num_val=args.num_val)


BUILD = BuildCommand(
    "maze", "Maze-Hard: generated mazes or the benchmark's CSV",
    "Mazes whose answer is a shortest path from S to G (walls '#', open ' ', start "
    "'S', goal 'G', path 'o'; the official token ids 1-5). Generated mazes are uniform "
    "spanning-tree mazes with a few extra openings (--loop-prob), so some have several "
    "shortest paths; S and G are drawn at least --min-path steps apart. Or import the "
    "benchmark's CSV layout (source,question,answer,rating) with --source. Training "
    "groups hold each maze plus, with --aug, its 7 other rotations/reflections; the "
    "test set is not augmented. Evaluation counts a prediction right when it marks a "
    "shortest path (valid_rate) and reports exact match to the label as well.",
    _build_arguments, _build_from_args, builder=build_maze)

#: This family's token-space task (``recursa.tasks.TASKS[MazeTask.name]``).
TASK = MazeTask
