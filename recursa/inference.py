"""Inference engine, independent of the trainer: load a checkpoint and run the recursion.

``load_checkpoint`` rebuilds the model from the checkpoint's own config (no code is executed on
load: safetensors + JSON) and ``refine`` yields the model's answer after every supervision step,
which is what ``eval``, ``solve`` and the demo display.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from . import config as config_mod
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


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    ckpt = checkpoint.resolve(path)
    meta = checkpoint.read_meta(ckpt)
    try:
        cfg = config_mod.from_dict(meta["config"])
        spec = DataSpec(**meta["spec"])
    except (TypeError, config_mod.RecursaError) as e:
        raise config_mod.RecursaError(f"{ckpt / 'config.json'}: {e}") from None
    model = build_model(cfg.model, spec)
    checkpoint.load_weights_into(model, checkpoint.load_tensors(ckpt / "model.safetensors"), ckpt / "model.safetensors")
    model.to(device).eval()
    task = load_task(meta["task"]) if meta.get("task") else None
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
