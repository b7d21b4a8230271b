"""Inference engine, independent of the trainer: load a checkpoint and run the recursion.

``load_checkpoint`` rebuilds the model from the checkpoint's own config (no code is executed on
load: safetensors + JSON). ``refine`` (in :mod:`recursa.models.act`) yields the model's answer
after every supervision step, which is what ``eval``, ``solve`` and the demo display; the device
helpers live in :mod:`recursa.device`. Both are re-exported here.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from pathlib import Path

import torch

from . import config as config_mod
from .errors import RecursaError
from .models import ACT, DataSpec, build_model
from .tasks import Task, load_task
from .training import checkpoint


@dataclass
class Loaded:
    model: ACT
    task: Task | None
    cfg: config_mod.RunConfig
    spec: DataSpec
    meta: dict
    path: Path


def _check_spec(spec, path: Path) -> DataSpec:
    """The checkpoint's data spec: an object of three positive integers."""
    if not isinstance(spec, dict):
        raise RecursaError(f"{path}: 'spec' must be an object with vocab_size, seq_len, num_puzzle_identifiers; "
                           f"got {spec!r}")
    for key in ("vocab_size", "seq_len", "num_puzzle_identifiers"):
        v = spec.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise RecursaError(f"{path}: spec.{key} must be an integer >= 1, got {v!r}")
    unknown = sorted(set(spec) - {"vocab_size", "seq_len", "num_puzzle_identifiers"})
    if unknown:
        raise RecursaError(f"{path}: spec has unknown key(s) {', '.join(map(repr, unknown))}")
    return DataSpec(**spec)


def _checkpoint_task(info, spec: DataSpec, path: Path) -> Task | None:
    """The checkpoint's task (None when it has none), which must agree with its spec."""
    if not info:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("task"), str) or not isinstance(info.get("params", {}), dict):
        raise RecursaError(f"{path}: 'task' must be an object with a task name and a 'params' object, got {info!r}")
    try:
        task = load_task(info)
    except RecursaError as e:
        raise RecursaError(f"{path}: {e}") from None
    except (ValueError, IndexError, OverflowError, MemoryError) as e:  # e.g. a float where an int belongs
        raise RecursaError(f"{path}: task {info['task']!r}: bad parameters {info.get('params')}: {e}") from None
    if (task.vocab_size, task.seq_len) != (spec.vocab_size, spec.seq_len):
        raise RecursaError(f"{path}: the task ({task.describe()}) has vocab_size {task.vocab_size} / seq_len "
                           f"{task.seq_len}, but the model's spec says {spec.vocab_size} / {spec.seq_len}")
    return task


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", dtype: str | None = None) -> Loaded:
    """Load a recursa checkpoint; ``dtype`` ("float32"/"bfloat16") computes in that dtype instead of
    the one it was trained with (weights are stored in float32 either way)."""
    ckpt = checkpoint.resolve(path)
    meta = checkpoint.read_meta(ckpt)
    try:
        if not isinstance(meta["config"], dict):
            raise RecursaError(f"'config' must be an object, got {type(meta['config']).__name__}")
        cfg = config_mod.from_dict(meta["config"])
    except (TypeError, config_mod.RecursaError) as e:
        raise config_mod.RecursaError(f"{ckpt / 'config.json'}: {e}") from None
    if dtype is not None and dtype != cfg.model.forward_dtype:
        if dtype not in ("float32", "bfloat16"):
            raise config_mod.RecursaError(f"--dtype {dtype!r}: choose float32 or bfloat16")
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, forward_dtype=dtype))
    spec = _check_spec(meta["spec"], ckpt / "config.json")
    task = _checkpoint_task(meta.get("task"), spec, ckpt / "config.json")
    model = build_model(cfg.model, spec)
    checkpoint.load_weights_into(model, checkpoint.load_tensors(ckpt / "model.safetensors", meta), ckpt / "model.safetensors")
    model.to(device).eval()
    return Loaded(model, task, cfg, spec, meta, ckpt)


