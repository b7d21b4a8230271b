"""Inference engine, independent of the trainer: load a checkpoint and run the recursion.

``load_checkpoint`` rebuilds the model from the checkpoint's own config (no code is executed on
load: safetensors + JSON) and ``refine`` yields the model's answer after every supervision step,
which is what ``eval``, ``solve`` and the demo display.
"""

from __future__ import annotations

import dataclasses

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
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


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; a device this
    torch or machine does not have is a one-line error, not a torch traceback."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    where = f"train.device / --device {name!r}"
    version = torch.__version__.split("+")[0]
    if name == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::([0-9]{1,4}))?", name) if isinstance(name, str) else None
    if m:
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda} build, but no GPU is visible" if torch.version.cuda else "CPU build"
            raise RecursaError(f"{where}: this torch has no usable CUDA device (torch {version}, {build}); "
                               "use cpu or auto")
        count = torch.cuda.device_count()
        if m.group(1) is not None and int(m.group(1)) >= count:
            raise RecursaError(f"{where}: there {'is' if count == 1 else 'are'} only {count} CUDA device"
                               f"{'' if count == 1 else 's'} (cuda:0..cuda:{count - 1})")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise RecursaError(f"{where}: this torch has no usable MPS device (torch {version}); use cpu or auto")
        return torch.device("mps")
    raise RecursaError(f"{where}: unknown device (choose from auto, cpu, cuda, cuda:N, mps)")


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


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in batch.items()}


@torch.inference_mode()
def refine(model: ACT, batch: dict[str, torch.Tensor], steps: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Run ``steps`` supervision steps (default: the trained ``halt_max_steps``) on a fresh carry;
    yield after each the predicted tokens, the halting logit and the logits."""
    model.eval()
    steps = steps or model.halt_max_steps
    trained_max = model.halt_max_steps
    model.halt_max_steps = max(steps, trained_max)  # allow thinking longer than trained
    try:
        carry = model.initial_carry(batch)
        for _ in range(steps):
            carry, out = model(carry, batch)
            yield {"preds": out["logits"].argmax(-1), "q_halt": out["q_halt_logits"], "logits": out["logits"]}
    finally:
        model.halt_max_steps = trained_max
