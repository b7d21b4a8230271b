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

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RecursaError

FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
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


class DatasetWriter:
    """``with DatasetWriter(out) as tmp:`` write everything under ``tmp`` (a temporary sibling
    directory); on success it replaces ``out`` in one rename, on any error it is removed, so a
    failed or interrupted build never leaves a half-written dataset."""

    def __init__(self, out: str | Path):
        self.out = Path(out)

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset should not be
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            if self.out.exists():
                old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
                self.out.rename(old)
                self.tmp.rename(self.out)
                shutil.rmtree(old)
            else:
                self.tmp.rename(self.out)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise


def write_dataset(out: str | Path, splits: dict[str, Split], identifiers: list[str], task_info: dict,
                  files: dict[str, str] | None = None) -> Path:
    """Write a dataset directory atomically (see :class:`DatasetWriter`; an existing ``out`` is
    replaced). ``files`` are extra text files (name -> content) written at the top level."""
    with DatasetWriter(out) as tmp:
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


def read_task_info(root: str | Path) -> dict:
    """The ``task.json`` of a recursa-built dataset ({} for a dataset built elsewhere)."""
    path = Path(root) / "task.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecursaError(f"{path}: invalid JSON: {e}") from None


def load_split(root: str | Path, split: str, mmap: bool = True) -> Split:
    """Load and validate one split; every inconsistency is a one-line error naming the file."""
    root = Path(root)
    d = root / split
    if not root.is_dir():
        raise RecursaError(f"{root}: dataset directory not found")
    meta_path = d / "dataset.json"
    if not meta_path.is_file():
        raise RecursaError(f"{meta_path}: missing (expected a dataset with train/ and test/ splits, e.g. from `recursa build`)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise RecursaError(f"{meta_path}: invalid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise RecursaError(f"{meta_path}: expected a JSON object")
    for key in REQUIRED_META:
        if key not in meta:
            raise RecursaError(f"{meta_path}: missing key '{key}'")
    sets = meta["sets"]
    if not isinstance(sets, list) or not sets:
        raise RecursaError(f"{meta_path}: 'sets' must be a non-empty list")
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
            (extras if name in EXTRAS else arrays)[name].append(arr)
    if len(sets) == 1:
        merged = {f: arrays[f][0] for f in FIELDS}
    else:  # several sets: concatenate, shifting the CSR offsets
        merged = {f: np.concatenate(arrays[f]) for f in ("inputs", "labels", "puzzle_identifiers")}
        pi, gi, e_off, p_off = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], 0, 0
        for p, g in zip(arrays["puzzle_indices"], arrays["group_indices"]):
            pi.append(p[1:] + e_off)
            gi.append(g[1:] + p_off)
            e_off += int(p[-1])
            p_off += int(g[-1])
        merged["puzzle_indices"], merged["group_indices"] = np.concatenate(pi), np.concatenate(gi)
    s = Split(**merged, meta=meta)
    _validate(s, d)
    for name, parts in extras.items():
        if len(parts) == len(sets):  # present for every set
            arr = np.concatenate(parts) if len(parts) > 1 else parts[0]
            if arr.shape != s.puzzle_identifiers.shape:
                raise RecursaError(f"{d}/all__{name}.npy: shape {arr.shape}, expected one value per puzzle "
                                   f"({len(s.puzzle_identifiers)},)")
            s.extras[name] = arr
    return s


def _validate(s: Split, d: Path) -> None:
    m = s.meta
    L, V = m["seq_len"], m["vocab_size"]
    for name in ("inputs", "labels"):
        a = getattr(s, name)
        if a.ndim != 2 or a.shape[1] != L:
            raise RecursaError(f"{d}/all__{name}.npy: shape {a.shape}, expected (N, seq_len={L})")
    if len(s.labels) != len(s.inputs):
        raise RecursaError(f"{d}: {len(s.inputs)} inputs but {len(s.labels)} labels")
    P = len(s.puzzle_identifiers)
    if len(s.puzzle_indices) != P + 1 or s.puzzle_indices[0] != 0 or s.puzzle_indices[-1] != len(s.inputs):
        raise RecursaError(f"{d}/all__puzzle_indices.npy: expected {P + 1} offsets from 0 to {len(s.inputs)}")
    if np.any(np.diff(s.puzzle_indices) < 0):
        raise RecursaError(f"{d}/all__puzzle_indices.npy: offsets are not increasing")
    if len(s.group_indices) < 2 or s.group_indices[0] != 0 or s.group_indices[-1] != P or np.any(np.diff(s.group_indices) <= 0):
        raise RecursaError(f"{d}/all__group_indices.npy: expected increasing offsets from 0 to {P} puzzles")
    if P and (s.puzzle_identifiers.min() < 0 or s.puzzle_identifiers.max() >= m["num_puzzle_identifiers"]):
        raise RecursaError(f"{d}/all__puzzle_identifiers.npy: ids outside 0..{m['num_puzzle_identifiers'] - 1}")
    if len(s.inputs):
        lo, hi = int(s.inputs.min()), int(s.inputs.max())
        if lo < 0 or hi >= V:
            raise RecursaError(f"{d}/all__inputs.npy: token ids {lo}..{hi} outside the vocabulary 0..{V - 1}")
        ignore = m["ignore_label_id"]
        lab = np.asarray(s.labels)
        lab = lab[lab != ignore] if ignore is not None else lab
        if lab.size and (lab.min() < 0 or lab.max() >= V):
            raise RecursaError(f"{d}/all__labels.npy: label ids {lab.min()}..{lab.max()} outside the vocabulary 0..{V - 1}")
