"""Hierarchical Reasoning Model (HRM, arXiv 2506.21734), following the official
``HierarchicalReasoningModel_ACTV1`` inner step.

Two networks at two speeds: a fast low-level state z_L updated by ``L_level`` and a slow
high-level state z_H updated by ``H_level``. Per supervision step, H_cycles x L_cycles updates:

    for i in 1..H_cycles:
        for j in 1..L_cycles:  z_L <- L(z_L, z_H + x)
        z_H <- H(z_H, z_L)

all without gradient except the very last L update and the very last H update (the 1-step
gradient approximation). Heads read z_H as in TRM; the puzzle prefix is ceil(ndim / D) = 1
position. Module names equal the official ones.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from .base import DataSpec, TwoStateModel
from .layers import ReasoningModule


class HRM(TwoStateModel):
    fixed_prefix = True

    def __init__(self, cfg: ModelConfig, spec: DataSpec, generator: torch.Generator | None = None):
        super().__init__(cfg, spec, generator)
        self.H_level = ReasoningModule(self.make_blocks(cfg.H_layers, generator))
        self.L_level = ReasoningModule(self.make_blocks(cfg.L_layers, generator))

    def calls_per_step(self) -> int:
        """H_cycles x (L_cycles calls of the L module + 1 of the H module)."""
        return self.H_cycles * (self.L_cycles + 1)

    def forward(self, state, batch):
        rope = self.rotary_emb
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"])
        z_H, z_L = state
        with torch.no_grad():
            for i in range(self.H_cycles):
                last_cycle = i == self.H_cycles - 1
                for j in range(self.L_cycles):
                    if not (last_cycle and j == self.L_cycles - 1):
                        z_L = self.L_level(z_L, z_H + x, rope)
                if not last_cycle:
                    z_H = self.H_level(z_H, z_L, rope)
        # 1-step gradient: only the final L and H updates are differentiated.
        z_L = self.L_level(z_L, z_H + x, rope)
        z_H = self.H_level(z_H, z_L, rope)
        logits, q_halt, q_continue = self.heads(z_H)
        return (z_H.detach(), z_L.detach()), logits, q_halt, q_continue
