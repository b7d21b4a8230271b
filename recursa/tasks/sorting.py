"""Sorting: a list of N values -> the same values in non-decreasing order.

A task whose difficulty grows with N. Note that a non-recursive network with a global token mixer
learns it in one pass, so it does not show a recursion benefit; it is here as a second, simple
family (and a sanity check of the pipeline). Tokens: 0 = PAD, value v in 1..V is token v.
"""

from __future__ import annotations

import re

import numpy as np

from ..data.format import make_split, write_dataset
from ..errors import RecursaError
from .base import BuildCommand, TaskBase, check_counts, check_memory, count_arg

MAX_LENGTH = 65536  # values per list (the sequence length)
MAX_VALUE = 1 << 20  # largest value; tokens are int32 on disk
MAX_VAL_ROUNDS = 50  # rounds of draws for held-out validation lists before giving up


class SortingTask(TaskBase):
    name = "sorting"

    def __init__(self, length: int = 8, max_value: int = 9):
        if length < 2 or max_value < 2:
            raise RecursaError(f"sorting: length ({length}) and max value ({max_value}) must be >= 2")
        if length > MAX_LENGTH or max_value > MAX_VALUE:
            raise RecursaError(f"sorting: length ({length}) must be <= {MAX_LENGTH} and max value ({max_value}) "
                               f"<= {MAX_VALUE} (the vocabulary is max value + 1 tokens)")
        self.length, self.max_value = length, max_value
        self.vocab_size = max_value + 1
        self.seq_len = length

    def params(self) -> dict:
        return {"length": self.length, "max_value": self.max_value}

    def describe(self) -> str:
        return f"sorting {self.length} values in 1..{self.max_value}"

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        items = [t for t in re.split(r"[\s,]+", text.strip()) if t]
        if len(items) != self.length:
            raise RecursaError(f"{where}: {len(items)} values, expected {self.length}")
        out = np.zeros(self.length, dtype=np.int32)
        max_digits = len(str(self.max_value)) + 2  # a few leading zeros are fine; int("9" * 5000) is not
        for i, t in enumerate(items):
            # ASCII digits only: '²'.isdigit() is True but int('²') fails
            if not (t.isascii() and t.isdigit()) or len(t) > max_digits or not 1 <= int(t) <= self.max_value:
                shown = repr(t) if len(t) <= 20 else f"{t[:12]!r}... ({len(t)} characters)"
                raise RecursaError(f"{where}: position {i + 1}: {shown} is not an integer in 1..{self.max_value}")
            out[i] = int(t)
        return out

    def check(self, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        inputs, preds = np.atleast_2d(inputs), np.atleast_2d(preds)
        return (np.sort(inputs, axis=-1) == preds).all(-1)

    def render(self, tokens: np.ndarray) -> str:
        return " ".join(str(int(v)) if v else "_" for v in np.asarray(tokens))

    def reference(self, inputs: np.ndarray) -> np.ndarray:
        return np.sort(inputs)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(1, self.max_value + 1, size=(n, self.length)).astype(np.int32)
        return x, np.sort(x, axis=-1)


def build_sorting(out, *, length: int = 8, max_value: int = 9, num_train: int = 10000, num_test: int = 1000,
                  num_aug: int = 0, seed: int = 0, overwrite: bool = False, num_val: int = 0, log=print):
    """Random lists; each training list has ``num_aug`` extra shuffled copies in its group.
    ``num_val`` > 0 adds a ``val/`` split from its own random stream whose lists are no
    rearrangement of a training or test list (their sorted answers differ from all of those); train
    and test are the same as without it."""
    task = SortingTask(length, max_value)
    if num_val < 0:
        raise RecursaError(f"--num-val {num_val}: must be >= 0")
    if num_train < 1 or num_aug < 0:
        raise RecursaError(f"--num-train {num_train} / --num-aug {num_aug}: need at least one training list "
                           "and --num-aug >= 0")
    if num_test < 1:
        raise RecursaError(f"--num-test {num_test}: a dataset needs at least one test list")
    # int64 draws, then an int32 copy per view and the sorted labels: ~16 bytes a value at least
    check_memory((num_train * (num_aug + 1) + num_test) * length * 16,
                 f"--num-train {num_train} x (--num-aug {num_aug} + 1) lists of {length} values")
    rng = np.random.default_rng([seed, 0])
    x, y = task.sample(rng, num_train + num_test)
    train_x, train_y, test_x, test_y = x[:num_train], y[:num_train], x[num_train:], y[num_train:]
    if num_aug:
        views = [train_x] + [rng.permuted(train_x, axis=1) for _ in range(num_aug)]
        train_x = np.stack(views, axis=1).reshape(-1, length)  # group-major: original, aug1, ...
        train_y = np.repeat(train_y, num_aug + 1, axis=0)
    sizes = np.full(num_train, num_aug + 1)
    splits = {
        "train": make_split(train_x, train_y, sizes, vocab_size=task.vocab_size, ignore_label_id=None),
        "test": make_split(test_x, test_y, vocab_size=task.vocab_size, ignore_label_id=None),
    }
    build_args = {"num_train": num_train, "num_test": num_test, "num_aug": num_aug}
    if num_val:
        val_x, val_y = _held_out_lists(task, np.random.default_rng([seed, 1]), num_val, (train_y, test_y))
        splits["val"] = make_split(val_x, val_y, vocab_size=task.vocab_size, ignore_label_id=None)
        build_args["num_val"] = num_val
    info = {"format_version": 1, "task": task.name, "params": task.params(), "seed": seed, "build_args": build_args}
    write_dataset(out, splits, ["<blank>"], info, overwrite=overwrite)
    val = f", {num_val} validation examples" if num_val else ""
    log(f"wrote {out}: {len(train_x)} training examples in {num_train} groups, {num_test} test examples{val} "
        f"({task.describe()})")
    return task


def _held_out_lists(task: SortingTask, rng: np.random.Generator, n: int, others) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random lists, distinct as multisets, none a rearrangement of a list whose sorted form is
    in ``others`` (arrays of sorted lists)."""
    seen = {row.tobytes() for arr in others for row in np.ascontiguousarray(arr)}
    xs, ys = [], []
    for _ in range(MAX_VAL_ROUNDS):
        x, y = task.sample(rng, max(2 * (n - len(xs)), 64))
        for xi, yi in zip(x, y):
            key = yi.tobytes()
            if key not in seen:
                seen.add(key)
                xs.append(xi)
                ys.append(yi)
                if len(xs) == n:
                    return np.stack(xs), np.stack(ys)
    raise RecursaError(f"--num-val {n}: found only {len(xs)} lists of {task.length} values in 1..{task.max_value} "
                       "that rearrange no training or test list; ask for fewer, or a longer --length / larger "
                       "--max-value")


# ---------------------------------------------------------------------- `recursa build sorting`
def _build_arguments(p) -> None:
    p.add_argument("--length", type=count_arg, default=8, help="values per list, N (default 8)")
    p.add_argument("--max-value", type=count_arg, default=9, help="values are drawn from 1..max (default 9)")
    p.add_argument("--num-train", type=count_arg, default=10000, help="training lists (default 10000)")
    p.add_argument("--num-test", type=count_arg, default=1000, help="test lists (default 1000)")
    p.add_argument("--num-aug", type=count_arg, default=0, help="shuffled copies per training list (default 0)")
    p.add_argument("--num-val", type=count_arg, default=0, help="validation lists (val/), none a rearrangement of a "
                   "training or test list (default 0)")
    p.add_argument("--seed", type=count_arg, default=0, help="random seed (default 0)")


def _build_from_args(args):
    check_counts(args)
    build_sorting(args.out, overwrite=args.overwrite, length=args.length, max_value=args.max_value,
                  num_train=args.num_train, num_test=args.num_test, num_aug=args.num_aug, seed=args.seed,
                  num_val=args.num_val)


BUILD = BuildCommand(
    "sorting", "sort a list of values",
    "Random lists of --length values in 1..--max-value; the label is the sorted list. "
    "Training groups hold each list plus --num-aug shuffled copies.",
    _build_arguments, _build_from_args, builder=build_sorting)

#: This family's token-space task (``recursa.tasks.TASKS[SortingTask.name]``).
TASK = SortingTask
