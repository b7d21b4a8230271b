"""Model registry: ``build_model(cfg, spec)`` returns the ACT-wrapped model for ``cfg.arch``."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from .act import ACT, Carry
from .hrm import HRM
from .trm import TRM, Baseline, DataSpec

MODELS = {"trm": TRM, "hrm": HRM, "baseline": Baseline}


def build_model(cfg: ModelConfig, spec: DataSpec, seed: int = 0) -> ACT:
    """Build the model named by ``cfg.arch`` with weights drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    inner = MODELS[cfg.arch](cfg, spec, generator)
    max_steps = 1 if cfg.arch == "baseline" else cfg.halt_max_steps
    return ACT(inner, max_steps, cfg.halt_exploration_prob, q_continue=cfg.q_continue)


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters (the puzzle-embedding table is a buffer and is not counted, as in the papers)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["ACT", "Carry", "TRM", "HRM", "Baseline", "DataSpec", "MODELS", "build_model", "count_parameters"]
