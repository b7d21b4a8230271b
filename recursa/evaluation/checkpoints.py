"""Evaluating saved checkpoints on a dataset split, as ``recursa eval`` does: which checkpoints
(one, several, every checkpoint of a run), whether each can read the split, one evaluation each
with its halting setting resolved from the checkpoint, and, for families whose scorer pools
checkpoints (ARC's votes), the pooled score across them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..data.format import load_split
from ..errors import RecursaError
from ..inference import checkpoint
from ..inference.checkpoint import Loaded, load_checkpoint
from ..inference.engine import Protocol
from ..tasks import read_task_info
from . import halting
from .evaluate import evaluate


def checkpoint_list(ckpt: str | None, checkpoints: str | None, all_checkpoints: bool = False) -> list[Path]:
    """The checkpoints named by CKPT or --checkpoints A,B,... (with ``all_checkpoints``: every
    checkpoint of those run directories), in order, each once."""
    if (ckpt is None) == (checkpoints is None):
        raise RecursaError("name the checkpoint: either CKPT or --checkpoints A,B,... (not both)")
    names = [ckpt] if ckpt is not None else [x.strip() for x in checkpoints.split(",")]
    if any(not n for n in names):
        raise RecursaError(f"--checkpoints {checkpoints!r}: an empty name (expected A,B,...)")
    out: list[Path] = []
    for name in names:
        path = Path(name)
        steps = checkpoint.step_dirs(path / "checkpoints") if all_checkpoints else []
        if all_checkpoints and not steps and not (path / "config.json").is_file():
            raise RecursaError(f"{path}: --all-checkpoints needs run directories; no checkpoints/ found there")
        for ckpt_dir in steps or [checkpoint.resolve(path)]:
            if ckpt_dir.resolve() not in [c.resolve() for c in out]:
                out.append(ckpt_dir)
    return out


def check_fit(loaded: Loaded, split, data, split_name, data_task: dict | None) -> None:
    """A one-line error when the checkpoint cannot read ``data/split_name`` (vocabulary, length,
    puzzle identifiers) or was trained on another task than the dataset's ``task.json`` says."""
    m, spec = split.meta, loaded.spec
    if (m["vocab_size"], m["seq_len"]) != (spec.vocab_size, spec.seq_len):
        raise RecursaError(f"{data}/{split_name}: vocab_size {m['vocab_size']} / seq_len {m['seq_len']} do not match "
                           f"the checkpoint's {spec.vocab_size} / {spec.seq_len} ({loaded.path})")
    if m["num_puzzle_identifiers"] > spec.num_puzzle_identifiers:
        raise RecursaError(f"{data}/{split_name}: {m['num_puzzle_identifiers']} puzzle identifiers, the checkpoint "
                           f"{loaded.path} has embeddings for {spec.num_puzzle_identifiers}")
    mine = loaded.meta.get("task") or {}
    if data_task and mine and (data_task["task"], data_task.get("params", {})) != (mine["task"], mine.get("params", {})):
        raise RecursaError(f"{data}/task.json: the dataset is {data_task['task']} {data_task.get('params', {})}, "
                           f"the checkpoint {loaded.path} was trained on {mine['task']} {mine.get('params', {})}")


class Tee:
    """Feeds one evaluation's rows to a checkpoint's own scorer and to the pooled one."""

    def __init__(self, own, pool):
        self.own, self.pool, self.key = own, pool, own.key

    def update(self, *a) -> None:
        self.own.update(*a)
        self.pool.update(*a)

    def result(self) -> dict:
        return self.own.result()


@dataclass
class Evaluated:
    loaded: Loaded
    res: dict
    scorer: object | None  # the family's scorer of this checkpoint (None: the core metrics only)


@dataclass
class Depth:
    """How deep every checkpoint thinks: ``steps`` supervision steps (0: as trained), or the cap
    of adaptive halting at ``threshold`` (None: the checkpoint's calibrated one) on ``signal``."""

    steps: int = 0
    adaptive: bool = False
    threshold: float | None = None
    signal: str | None = None


class CheckpointEvaluation:
    """Iterate for one :class:`Evaluated` per checkpoint; afterwards ``pooled`` is the pooled
    scorer (or None) and ``last_scorer`` the last checkpoint's."""

    def __init__(self, paths: list[Path], data, split_name: str, *, device, dtype: str | None = None,
                 depth: Depth = Depth(), width: dict | None = None, batch_size: int = 256, limit: int = 0,
                 curve: bool = False, per_puzzle: bool = False, submission: bool = False):
        self.paths, self.data, self.split_name = paths, data, split_name
        self.device, self.dtype, self.depth, self.width = device, dtype, depth, width or {}
        self.options = dict(batch_size=batch_size, limit=limit, curve=curve, per_puzzle=per_puzzle)
        self.submission = submission
        self.split = load_split(data, split_name)
        self.data_task = read_task_info(data)
        self.pooled = self.last_scorer = None

    def __iter__(self) -> Iterator[Evaluated]:
        first = None
        for path in self.paths:
            loaded = load_checkpoint(path, self.device, self.dtype)
            check_fit(loaded, self.split, self.data, self.split_name, self.data_task)
            kind = (loaded.spec, loaded.meta.get("task"))
            if first is None:
                first = (kind, loaded.path)
            elif kind != first[0]:
                raise RecursaError(f"{loaded.path}: not the same task and data spec as {first[1]}; "
                                   "--checkpoints takes checkpoints of one model")
            scorer = self._scorer(loaded)
            yield Evaluated(loaded, self._evaluate(loaded, scorer), scorer)
            self.last_scorer = scorer

    def _scorer(self, loaded):
        scorer = loaded.task.scorer(self.data, self.split) if loaded.task is not None else None
        if self.submission and not getattr(scorer, "writes_submission", False):
            raise RecursaError("--submission is for ARC datasets (built with `recursa build arc`)")
        return scorer

    def _evaluate(self, loaded: Loaded, scorer) -> dict:
        feed = scorer
        if scorer is not None and scorer.pools_checkpoints and len(self.paths) > 1:
            self.pooled = self.pooled or loaded.task.scorer(self.data, self.split)
            feed = Tee(scorer, self.pooled)  # this checkpoint's own votes, and the pool's
        d = self.depth
        adaptive, threshold, signal, why = halting.adaptive_setting(loaded.meta, d.adaptive, d.threshold,
                                                                    str(loaded.path / "config.json"), d.signal)
        protocol = Protocol.as_trained(loaded.model, d.steps, adaptive=adaptive, halt_threshold=threshold,
                                       halt_signal=signal, **self.width)
        t0 = time.perf_counter()
        res = evaluate(loaded.model, self.split, loaded.task, device=self.device, scorer=feed, protocol=protocol,
                       **self.options)
        res["seconds"] = round(time.perf_counter() - t0, 3)
        res["puzzles_per_s"] = round(res["n"] / max(res["seconds"], 1e-9), 2)
        res["trained_steps"] = loaded.cfg.model.halt_max_steps
        if why is not None:
            res["protocol"]["halt_threshold_source"] = why
        return res
