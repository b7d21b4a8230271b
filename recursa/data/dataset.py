"""Batches from a :class:`~recursa.data.format.Split`: a seeded, resumable group-aware training
sampler and a sequential evaluation iterator. No device code: batches are numpy arrays.

Training sampler (the official scheme, made deterministic): an epoch visits every group once in a
random order; for each visit it picks one puzzle of the group (the original or one of its
augmentations) and takes up to batch-fill of that puzzle's examples, without replacement. A
partial last batch is dropped. All draws come from generators seeded by (seed, epoch), and the
sampler state (epoch, position, generator state) is saved in checkpoints, so a resumed run sees
exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import numpy as np

from ..errors import RecursaError
from .format import IGNORE_LABEL_ID, Split


def collate(split: Split, idx: np.ndarray, identifiers: np.ndarray) -> dict[str, np.ndarray]:
    """Gather examples ``idx``; labels equal to the dataset's ignore id become -100."""
    labels = np.asarray(split.labels[idx], dtype=np.int64)
    ignore = split.meta["ignore_label_id"]
    if ignore is not None:
        labels[labels == ignore] = IGNORE_LABEL_ID
    return {
        "inputs": np.asarray(split.inputs[idx], dtype=np.int64),
        "labels": labels,
        "puzzle_identifiers": np.asarray(identifiers, dtype=np.int64),
    }


class TrainSampler:
    def __init__(self, split: Split, batch_size: int, seed: int):
        self.split, self.batch_size, self.seed = split, batch_size, seed
        if split.num_examples < batch_size or split.num_groups == 0:
            raise RecursaError(f"training split has {split.num_examples} examples, fewer than train.batch_size={batch_size}")
        self._start_epoch(0)

    def _start_epoch(self, epoch: int):
        self.epoch = epoch
        self.start_index = 0
        self.group_order = np.random.default_rng([self.seed, epoch, 0]).permutation(self.split.num_groups)
        self.rng = np.random.default_rng([self.seed, epoch, 1])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start_index": self.start_index, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict):
        self._start_epoch(int(state["epoch"]))
        self.start_index = int(state["start_index"])
        self.rng.bit_generator.state = state["rng"]

    def next_batch(self) -> dict[str, np.ndarray]:
        for _ in range(2):
            got = self._try_batch()
            if got is not None:
                return got
            self._start_epoch(self.epoch + 1)
        raise RecursaError(f"one epoch of the training split cannot fill a batch of {self.batch_size} examples")

    def _try_batch(self):
        s, rng = self.split, self.rng
        idx, ids, size = [], [], 0
        while self.start_index < len(self.group_order) and size < self.batch_size:
            g = self.group_order[self.start_index]
            self.start_index += 1
            puzzle = rng.integers(s.group_indices[g], s.group_indices[g + 1])
            start = int(s.puzzle_indices[puzzle])
            n = int(s.puzzle_indices[puzzle + 1]) - start
            take = min(n, self.batch_size - size)
            idx.append(start + (rng.choice(n, take, replace=False) if take < n else rng.permutation(n)))
            ids.append(np.full(take, s.puzzle_identifiers[puzzle]))
            size += take
        if size < self.batch_size:
            return None  # partial last batch of the epoch: dropped
        return collate(s, np.concatenate(idx), np.concatenate(ids))


def iter_eval(split: Split, batch_size: int, limit: int = 0):
    """Sequential batches over the first ``limit`` examples (all if 0); yields (indices, batch)."""
    n = split.num_examples if limit <= 0 else min(limit, split.num_examples)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        yield idx, collate(split, idx, split.example_identifiers(idx))
