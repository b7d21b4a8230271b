"""The datasets a training run reads, opened and checked before any training: the training split,
the test split, the evaluation split (val/ when the dataset has one), the task and the data spec.
Every file evaluation will need is checked now, not after hours of training."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import TrainConfig
from ..data.format import Split, check_task_matches, load_split, resolve_eval_split
from ..device import to_device
from ..errors import RecursaError
from ..models import DataSpec
from ..tasks import Task, load_task, read_task_info
from .methods import UNBOUNDED

# Metrics every evaluation has (train.keep_best may also name a family's, e.g. ARC pass@2).
CORE_METRICS = ("exact_accuracy", "token_accuracy", "valid_rate")


@dataclass
class TrainData:
    train: Split
    test: Split | None  # None when the run never evaluates (train.eval_interval < 0)
    eval_name: str | None  # "val" or "test": evaluations during training and keep_best read it
    eval: Split | None
    task_info: dict | None  # {"task", "params"} from task.json, as the checkpoint records it
    task: Task | None
    spec: DataSpec


def open_data(t: TrainConfig) -> TrainData:
    if not t.data:
        raise RecursaError("train.data is not set (a dataset directory, e.g. from `recursa build`)")
    train = load_split(t.data, "train")
    test = load_split(t.data, "test") if t.eval_interval >= 0 else None
    eval_name = resolve_eval_split(t.data, t.eval_split) if t.eval_interval >= 0 else None
    eval_data = test if eval_name in (None, "test") else load_split(t.data, eval_name)
    info = read_task_info(t.data)
    task_info = {"task": info["task"], "params": info.get("params", {})} if info else None
    task = load_task(task_info) if task_info else None
    m = train.meta
    if task is not None:
        check_task_matches(task, m, t.data)
        if test is not None:
            check_task_matches(task, test.meta, t.data, "test")
        if eval_name == "val":
            check_task_matches(task, eval_data.meta, t.data, "val")
    spec = DataSpec(vocab_size=int(m["vocab_size"]), seq_len=int(m["seq_len"]),
                    num_puzzle_identifiers=int(m["num_puzzle_identifiers"]), grid=task.grid if task is not None else None,
                    groups=task.groups if task is not None else None)
    for name, split in (("test", test), (eval_name, eval_data)):
        if split is None:
            continue
        sm = split.meta
        if (sm["vocab_size"], sm["seq_len"]) != (spec.vocab_size, spec.seq_len):
            raise RecursaError(f"{t.data}: train and {name} splits disagree on vocab_size/seq_len")
        if task is not None:
            task.scorer(t.data, split)  # the files evaluation needs, checked now, not after training
    if t.keep_best:
        if t.eval_interval < 0:
            raise RecursaError(f"train.keep_best = {t.keep_best!r} needs evaluation (train.eval_interval >= 0)")
        if t.keep_best not in CORE_METRICS and (task is None or task.scorer(t.data, eval_data) is None):
            raise RecursaError(f"train.keep_best = {t.keep_best!r}: not a metric of this dataset (choose from "
                               f"{', '.join(CORE_METRICS)})")
    return TrainData(train, test, eval_name, eval_data, task_info, task, spec)


def no_val_note(t: TrainConfig) -> str:
    return (f"note: {t.data} has no val/ split, so evaluations during training"
            f"{' and keep_best' if t.keep_best else ''} read the test split (choices made with them have "
            "seen it); `recursa build ... --num-val N` adds one")


def blank_batch(rows: int, seq_len: int, device) -> dict[str, torch.Tensor]:
    """A batch of zeros (the carry of a rank that has none)."""
    return {"inputs": torch.zeros(rows, seq_len, dtype=torch.int32, device=device),
            "labels": torch.zeros(rows, seq_len, dtype=torch.int32, device=device),
            "puzzle_identifiers": torch.zeros(rows, dtype=torch.int32, device=device)}


def total_steps(t: TrainConfig, train: Split) -> int:
    """The run's length in optimiser steps: train.steps, or train.epochs over the training split,
    or (a time budget only) :data:`UNBOUNDED`."""
    if t.steps:
        return t.steps
    if t.epochs:
        mean_ex = float(train.meta["mean_puzzle_examples"])
        return max(1, int(t.epochs * train.num_groups * mean_ex / t.batch_size))
    if t.max_time_s:
        return UNBOUNDED
    raise RecursaError("set train.steps, train.epochs or train.max_time_s")


class Batches:
    """The training batches: the sampler's next global batch, this rank's rows of it, on the
    device. With ``prefetch`` (GPUs) the batch after is already being copied (pinned,
    non-blocking) while a step runs; a checkpoint then records the sampler as it was before that
    draw (:meth:`sampler_state`), so a resumed run draws it again."""

    def __init__(self, sampler, rows: slice | None, device, prefetch: bool):
        self.sampler, self.rows, self.device, self.prefetch = sampler, rows, device, prefetch
        self._pending = self._state_before_pending = None

    def _load(self) -> dict:
        batch = self.sampler.next_batch()
        if self.rows is not None:  # every rank draws the global batch; this rank trains on its rows
            batch = {k: v[self.rows] for k, v in batch.items()}
        return to_device(batch, self.device, non_blocking=self.prefetch)

    def next(self) -> dict:
        if self._pending is not None:
            batch, self._pending = self._pending, None
        else:
            batch = self._load()
        if self.prefetch:
            self._state_before_pending = self.sampler.state_dict()
            self._pending = self._load()
        return batch

    def sampler_state(self) -> dict:
        return self._state_before_pending if self._pending is not None else self.sampler.state_dict()
