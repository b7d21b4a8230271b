"""Exponential moving average of the trainable weights (official: mu = 0.999, params only, so
the puzzle-embedding table and the init vectors are not averaged)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, rate: float = 0.999):
        self.rate = rate
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module):
        params = [p for n, p in model.named_parameters() if n in self.shadow]
        shadows = [self.shadow[n] for n, _ in model.named_parameters() if n in self.shadow]
        torch._foreach_lerp_(shadows, params, 1.0 - self.rate)

    def copy_to(self, model: nn.Module):
        """Load the averaged weights into ``model`` (in place)."""
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in self.shadow:
                    p.copy_(self.shadow[n])

    def averaged(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` holding the averaged weights (buffers copied as they are)."""
        m = copy.deepcopy(model)
        self.copy_to(m)
        return m
