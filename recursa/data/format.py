"""The official puzzle-dataset layout, written atomically and validated on load.

    OUT/
      identifiers.json          # puzzle identifier id -> name (id 0 = "<blank>")
      task.json                 # recursa only: task name + parameters + build arguments + seed
      train/ and test/
        dataset.json            # metadata (see REQUIRED_META)
        all__inputs.npy         # (E, seq_len) tokens (uint8 when the vocabulary fits, as official)
        all__labels.npy         # (E, seq_len) tokens; ignore_label_id marks unlabelled
        all__puzzle_identifiers.npy   # (P,) int32, one per puzzle
        all__puzzle_indices.npy       # (P+1,) example offsets per puzzle (CSR)
        all__group_indices.npy        # (G+1,) puzzle offsets per group (original + augmentations)
        all__ratings.npy        # optional, recursa only: (P,) float32 difficulty per puzzle

The same directory is readable by the official training code (``sets = ["all"]``), which ignores
the optional files.
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import storage
from ..errors import RecursaError

FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
#: Label value of positions that carry no loss and no score (batches in memory; on disk the
#: official builders write 0 there, which the sampler maps to this).
IGNORE_LABEL_ID = -100
EXTRAS = ("ratings",)  # optional per-puzzle arrays
REQUIRED_META = ("pad_id", "ignore_label_id", "blank_identifier_id", "vocab_size", "seq_len",
                 "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples", "sets")


@dataclass
class Split:
    """Arrays of one split (``inputs``/``labels`` may be memory-mapped)."""

    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray
    meta: dict
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # optional per-puzzle arrays (EXTRAS)

    @property
    def num_examples(self) -> int:
        return len(self.inputs)

    @property
    def num_groups(self) -> int:
        return len(self.group_indices) - 1

    def example_identifiers(self, idx: np.ndarray) -> np.ndarray:
        """Puzzle identifier of each example index."""
        puzzle = np.searchsorted(self.puzzle_indices, idx, side="right") - 1
        return self.puzzle_identifiers[puzzle]


def make_split(inputs: np.ndarray, labels: np.ndarray, group_sizes: np.ndarray | None = None,
               puzzle_identifiers: np.ndarray | None = None, *, vocab_size: int, num_identifiers: int = 1,
               pad_id: int = 0, ignore_label_id: int | None = 0) -> Split:
    """A split in which every puzzle has exactly one example (Sudoku-like tasks).

    ``group_sizes[g]`` puzzles form group g (an original and its augmentations); by default every
    puzzle is its own group. ``puzzle_identifiers`` defaults to 0 (one shared puzzle embedding).
    """
    n = len(inputs)
    if group_sizes is None:
        group_sizes = np.ones(n, dtype=np.int64)
    if puzzle_identifiers is None:
        puzzle_identifiers = np.zeros(n, dtype=np.int32)
    group_indices = np.concatenate([[0], np.cumsum(group_sizes)]).astype(np.int32)
    assert group_indices[-1] == n, "group sizes must add up to the number of puzzles"
    meta = {
        "pad_id": pad_id, "ignore_label_id": ignore_label_id, "blank_identifier_id": 0,
        "vocab_size": int(vocab_size), "seq_len": int(inputs.shape[1]),
        "num_puzzle_identifiers": int(num_identifiers), "total_groups": int(len(group_sizes)),
        "mean_puzzle_examples": 1.0, "total_puzzles": int(n), "sets": ["all"],
    }
    dtype = np.uint8 if vocab_size <= 256 else np.int32
    return Split(np.ascontiguousarray(inputs, dtype=dtype), np.ascontiguousarray(labels, dtype=dtype),
                 np.asarray(puzzle_identifiers, dtype=np.int32), np.arange(n + 1, dtype=np.int32),
                 group_indices, meta)


#: The `recursa build ...` command being run (set by the CLI around a build; None otherwise): the
#: dataset's task.json records it as ``command``, for result records (recursa/tools/results.py).
BUILD_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar("BUILD_COMMAND", default=None)


class DatasetWriter:
    """``with DatasetWriter(out, overwrite) as tmp:`` write everything under ``tmp`` (a staging
    sibling directory); on success it takes the place of ``out`` atomically (see
    :mod:`recursa.storage`), on any error it is removed, so a failed or interrupted build never
    leaves a half-written dataset and never loses the previous one.

    An existing ``out`` is checked *before* any work: it is replaced only when it is empty, or a
    dataset and ``overwrite`` is true; anything else is refused untouched."""

    def __init__(self, out: str | Path, overwrite: bool = False):
        self.out = Path(out)
        self.overwrite = overwrite

    def __enter__(self) -> Path:
        storage.check_out(self.out, "dataset", self.overwrite)
        self.tmp = storage.staging_dir(self.out)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)  # staging dirs are private; the dataset should not be
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if issubclass(exc_type, OSError):  # disk full, read-only...: one line naming the dataset
                raise storage.write_failure(self.out, "dataset", exc) from exc
            return
        try:
            command, info = BUILD_COMMAND.get(), self.tmp / "task.json"
            if command is not None and info.is_file():  # inside the staging directory: swapped in with the rest
                info.write_text(json.dumps({**json.loads(info.read_text()), "command": command}, indent=1))
            storage.check_out(self.out, "dataset", self.overwrite)  # still true after the build?
            storage.replace_dir(self.tmp, self.out)
        except BaseException as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if isinstance(e, OSError):
                raise storage.write_failure(self.out, "dataset", e) from e
            raise


def write_dataset(out: str | Path, splits: dict[str, Split], identifiers: list[str], task_info: dict,
                  files: dict[str, str] | None = None, overwrite: bool = False) -> Path:
    """Write a dataset directory atomically (see :class:`DatasetWriter`; an existing dataset at
    ``out`` is replaced only with ``overwrite``). ``files`` are extra text files (name -> content)
    written at the top level."""
    with DatasetWriter(out, overwrite) as tmp:
        for name, split in splits.items():
            d = tmp / name
            d.mkdir()
            for name_ in FIELDS:
                np.save(d / f"all__{name_}.npy", getattr(split, name_))
            for name_, arr in split.extras.items():
                if name_ not in EXTRAS or len(arr) != len(split.puzzle_identifiers):
                    raise ValueError(f"extra array {name_!r}: unknown or not one value per puzzle")
                np.save(d / f"all__{name_}.npy", arr)
            (d / "dataset.json").write_text(json.dumps(split.meta, indent=1))
        (tmp / "identifiers.json").write_text(json.dumps(identifiers))
        (tmp / "task.json").write_text(json.dumps(task_info, indent=1))
        for name_, text in (files or {}).items():
            (tmp / name_).write_text(text)
    return Path(out)


def read_task_json(root: str | Path) -> dict:
    """The ``task.json`` of a recursa-built dataset ({} for a dataset built elsewhere), its shape
    checked; :func:`recursa.tasks.read_task_info` also checks it names a task that builds."""
    path = Path(root) / "task.json"
    if not path.exists() and not path.is_symlink():
        return {}
    info = storage.read_json(path, expect=dict)
    task = info.get("task")
    if not isinstance(task, str) or not task:
        raise RecursaError(f"{path}: 'task' must be a task name (a string such as \"sudoku\"), got {task!r}")
    if "params" in info and not isinstance(info["params"], dict):
        raise RecursaError(f"{path}: 'params' must be a JSON object of task parameters, got {info['params']!r}")
    buckets = info.get("rating_buckets")
    if buckets is not None:
        if (not isinstance(buckets, list) or not buckets or not all(_is_number(b) for b in buckets)
                or any(b <= a for a, b in zip(buckets, buckets[1:]))):
            raise RecursaError(f"{path}: 'rating_buckets' must be a list of increasing numbers, got {buckets!r}")
    return info


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_SET_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _check_meta(meta: dict, path: Path) -> None:
    """Types and ranges of a dataset.json (after the required keys were found); errors name the key."""
    def bad(key, what):
        raise RecursaError(f"{path}: {key!r} must be {what}, got {meta[key]!r}")

    for key in ("vocab_size", "seq_len", "num_puzzle_identifiers"):
        if not _is_int(meta[key]) or meta[key] < 1:
            bad(key, "an integer >= 1")
    for key in ("total_groups", "total_puzzles"):
        if key in meta and (not _is_int(meta[key]) or meta[key] < 0):
            bad(key, "an integer >= 0")
    for key in ("pad_id", "blank_identifier_id"):
        if not _is_int(meta[key]):
            bad(key, "an integer")
    if meta["ignore_label_id"] is not None and not _is_int(meta["ignore_label_id"]):
        bad("ignore_label_id", "an integer or null")
    if not _is_number(meta["mean_puzzle_examples"]) or meta["mean_puzzle_examples"] < 0:
        bad("mean_puzzle_examples", "a finite number >= 0")
    sets = meta["sets"]
    if not isinstance(sets, list) or not sets:
        bad("sets", "a non-empty list of set names")
    for name in sets:
        if not isinstance(name, str) or not _SET_NAME.match(name) or ".." in name:
            raise RecursaError(f"{path}: 'sets': {name!r} is not a set name (letters, digits, '_', '-', '.'; "
                               "no '..')")
    if len(set(sets)) != len(sets):
        bad("sets", "a list without repeats")


def _check_array(arr: np.ndarray, name: str, path: Path, seq_len: int) -> None:
    """dtype and number of dimensions of one ``SET__NAME.npy``."""
    if name in EXTRAS:
        if arr.dtype.kind not in "iuf":
            raise RecursaError(f"{path}: dtype {arr.dtype}, expected numbers")
    elif arr.dtype.kind not in "iu":
        raise RecursaError(f"{path}: dtype {arr.dtype}, expected integers")
    if name in ("inputs", "labels"):
        if arr.ndim != 2 or arr.shape[1] != seq_len:
            raise RecursaError(f"{path}: shape {arr.shape}, expected (N, seq_len={seq_len})")
    elif arr.ndim != 1:
        raise RecursaError(f"{path}: shape {arr.shape}, expected a 1-D array")


def _check_set(arrays: dict[str, np.ndarray], d: Path, set_name: str) -> None:
    """The offsets of one set are consistent with its own arrays (before sets are concatenated)."""
    n, n_labels, P = len(arrays["inputs"]), len(arrays["labels"]), len(arrays["puzzle_identifiers"])
    if n_labels != n:
        raise RecursaError(f"{d}: {n} inputs but {n_labels} labels in set {set_name!r}")
    pi, gi = arrays["puzzle_indices"], arrays["group_indices"]
    if len(pi) != P + 1 or pi[0] != 0 or pi[-1] != n:
        raise RecursaError(f"{d}/{set_name}__puzzle_indices.npy: expected {P + 1} offsets from 0 to {n}")
    if len(gi) < 1 or gi[0] != 0 or gi[-1] != P:
        raise RecursaError(f"{d}/{set_name}__group_indices.npy: expected increasing offsets from 0 to {P} puzzles")


def check_task_matches(task, meta: dict, root: str | Path, split: str = "train") -> None:
    """Raise when a task (from ``ROOT/task.json``) disagrees with ``ROOT/SPLIT/dataset.json`` on
    ``vocab_size`` or ``seq_len``, e.g. a task.json saying 9x9 Sudoku on a 4x4 dataset."""
    root = Path(root)
    mine = (task.vocab_size, task.seq_len)
    theirs = (meta["vocab_size"], meta["seq_len"])
    if mine != theirs:
        name = task.describe() if hasattr(task, "describe") else getattr(task, "name", "task")
        raise RecursaError(f"{root / 'task.json'}: the task ({name}) has vocab_size {mine[0]} / seq_len {mine[1]}, "
                           f"but {root / split / 'dataset.json'} says {theirs[0]} / {theirs[1]}")


def load_split(root: str | Path, split: str, mmap: bool = True) -> Split:
    """Load and validate one split; every inconsistency is a one-line error naming the file."""
    root = Path(root)
    d = root / split
    if not root.is_dir():
        if root.exists():
            raise RecursaError(f"{root}: not a dataset directory (it is a file)")
        raise RecursaError(f"{root}: dataset directory not found")
    meta_path = d / "dataset.json"
    if not meta_path.exists():
        raise RecursaError(f"{meta_path}: missing (expected a dataset with train/ and test/ splits, e.g. from `recursa build`)")
    meta = storage.read_json(meta_path, expect=dict)
    for key in REQUIRED_META:
        if key not in meta:
            raise RecursaError(f"{meta_path}: missing key '{key}'")
    _check_meta(meta, meta_path)
    sets = meta["sets"]
    arrays: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}
    extras: dict[str, list[np.ndarray]] = {f: [] for f in EXTRAS}
    for set_name in sets:
        for name in FIELDS + EXTRAS:
            path = d / f"{set_name}__{name}.npy"
            if not path.is_file():
                if name in EXTRAS:
                    continue
                raise RecursaError(f"{path}: missing")
            try:
                mode = "r" if (mmap and name in ("inputs", "labels")) else None
                arr = np.load(path, mmap_mode=mode, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise RecursaError(f"{path}: unreadable .npy ({e})") from None
            _check_array(arr, name, path, meta["seq_len"])
            (extras if name in EXTRAS else arrays)[name].append(arr)
        _check_set({f: arrays[f][-1] for f in FIELDS}, d, set_name)
    prefix = sets[0] if len(sets) == 1 else "{" + ",".join(sets) + "}"
    s = Split(**_merge_sets(arrays), meta=meta)
    _validate(s, d, prefix)
    if len(sets) == 1:  # HRM's builders sum these over sets; one set must agree exactly
        P, G = len(s.puzzle_identifiers), s.num_groups
        if meta.get("total_puzzles", P) != P:
            raise RecursaError(f"{meta_path}: 'total_puzzles' is {meta['total_puzzles']}, but "
                               f"{d}/{prefix}__puzzle_identifiers.npy holds {P} puzzles")
        if meta["total_groups"] != G:
            raise RecursaError(f"{meta_path}: 'total_groups' is {meta['total_groups']}, but "
                               f"{d}/{prefix}__group_indices.npy holds {G} groups")
    for name, parts in extras.items():
        if len(parts) == len(sets):  # present for every set
            arr = np.concatenate(parts) if len(parts) > 1 else parts[0]
            if arr.shape != s.puzzle_identifiers.shape:
                raise RecursaError(f"{d}/{prefix}__{name}.npy: shape {arr.shape}, expected one value per puzzle "
                                   f"({len(s.puzzle_identifiers)},)")
            s.extras[name] = arr
    return s


def _merge_sets(arrays: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """One split's arrays from its sets' (several sets: concatenated, the CSR offsets shifted)."""
    if len(arrays["inputs"]) == 1:
        return {f: arrays[f][0] for f in FIELDS}
    merged = {f: np.concatenate(arrays[f]) for f in ("inputs", "labels", "puzzle_identifiers")}
    pi, gi, e_off, p_off = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], 0, 0
    for p, g in zip(arrays["puzzle_indices"], arrays["group_indices"]):
        pi.append(p[1:].astype(np.int64) + e_off)
        gi.append(g[1:].astype(np.int64) + p_off)
        e_off += int(p[-1])
        p_off += int(g[-1])
    merged["puzzle_indices"], merged["group_indices"] = np.concatenate(pi), np.concatenate(gi)
    return merged


def _validate(s: Split, d: Path, prefix: str = "all") -> None:
    """Consistency of a split's arrays with each other and with its dataset.json (``prefix``: the
    set name(s) of the files, for messages)."""
    m = s.meta
    L, V = m["seq_len"], m["vocab_size"]
    for name in ("inputs", "labels"):
        a = getattr(s, name)
        if a.ndim != 2 or a.shape[1] != L:
            raise RecursaError(f"{d}/{prefix}__{name}.npy: shape {a.shape}, expected (N, seq_len={L})")
    if len(s.labels) != len(s.inputs):
        raise RecursaError(f"{d}: {len(s.inputs)} inputs but {len(s.labels)} labels")
    P = len(s.puzzle_identifiers)
    pi = np.asarray(s.puzzle_indices).astype(np.int64, copy=False)  # signed: a decrease must show as < 0
    gi = np.asarray(s.group_indices).astype(np.int64, copy=False)
    if len(pi) != P + 1 or pi[0] != 0 or pi[-1] != len(s.inputs):
        raise RecursaError(f"{d}/{prefix}__puzzle_indices.npy: expected {P + 1} offsets from 0 to {len(s.inputs)}")
    if np.any(np.diff(pi) < 0):
        raise RecursaError(f"{d}/{prefix}__puzzle_indices.npy: offsets are not increasing")
    if len(gi) < 2 or gi[0] != 0 or gi[-1] != P or np.any(np.diff(gi) <= 0):
        raise RecursaError(f"{d}/{prefix}__group_indices.npy: expected increasing offsets from 0 to {P} puzzles")
    if P and (s.puzzle_identifiers.min() < 0 or s.puzzle_identifiers.max() >= m["num_puzzle_identifiers"]):
        raise RecursaError(f"{d}/{prefix}__puzzle_identifiers.npy: ids outside 0..{m['num_puzzle_identifiers'] - 1}")
    if len(s.inputs):
        lo, hi = int(s.inputs.min()), int(s.inputs.max())
        if lo < 0 or hi >= V:
            raise RecursaError(f"{d}/{prefix}__inputs.npy: token ids {lo}..{hi} outside the vocabulary 0..{V - 1}")
        ignore = m["ignore_label_id"]
        lab = np.asarray(s.labels)
        lab = lab[lab != ignore] if ignore is not None else lab
        if lab.size and (lab.min() < 0 or lab.max() >= V):
            raise RecursaError(f"{d}/{prefix}__labels.npy: label ids {lab.min()}..{lab.max()} outside the vocabulary 0..{V - 1}")


def resolve_eval_split(root: str | Path, choice: str = "auto") -> str:
    """The split that choices made during and after training read (``train.eval_split``): "auto" =
    "val" when ``root`` has a val/ split, else "test"; "val" without one is an error."""
    has_val = (Path(root) / "val" / "dataset.json").is_file()
    if choice == "auto":
        return "val" if has_val else "test"
    if choice == "val" and not has_val:
        raise RecursaError(f"{Path(root) / 'val'}: no validation split (train.eval_split = \"val\"); build the dataset "
                           "with --num-val N, or set train.eval_split = \"auto\" to evaluate on test")
    if choice not in ("val", "test"):
        raise RecursaError(f"eval split {choice!r}: expected auto, val or test")
    return choice
