"""Model registry: ``build_model(cfg, spec)`` returns the ACT-wrapped model for ``cfg.arch``."""

from __future__ import annotations

import torch

from ..config import ModelConfig
from .act import ACT, Carry
from .base import DataSpec
from .hrm import HRM
from .trm import TRM, URM, Baseline, MultiLatentTRM, SingleLatentTRM

MODELS = {"trm": TRM, "hrm": HRM, "baseline": Baseline, "urm": URM}


def build_model(cfg: ModelConfig, spec: DataSpec, seed: int = 0) -> ACT:
    """Build the model named by ``cfg.arch`` with weights drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    cls = SingleLatentTRM if cfg.single_latent else MultiLatentTRM if cfg.latents > 1 else MODELS[cfg.arch]
    inner = cls(cfg, spec, generator)
    return ACT(inner, cfg.halt_max_steps, cfg.halt_exploration_prob, q_continue=cfg.q_continue,
               halt_compare=cfg.q_continue or cls.halts_on_compare, early_halt=cfg.early_halt)


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters (the puzzle-embedding table is a buffer and is not counted, as in the papers)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["ACT", "Carry", "TRM", "SingleLatentTRM", "MultiLatentTRM", "URM", "HRM", "Baseline", "DataSpec", "MODELS", "build_model", "count_parameters"]
