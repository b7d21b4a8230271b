"""Optimisers and the learning-rate schedule, in plain PyTorch (any device).

- :class:`AdamATan2`: the official optimiser (Everett et al.), no epsilon, a = b = 1:
  theta <- theta (1 - lr wd); m <- lerp(m, g, 1-b1); v <- lerp(v, g^2, 1-b2);
  theta <- theta - lr * atan2(m / (1-b1^t), sqrt(v) / sqrt(1-b2^t)).
- :class:`SignSGDSparse`: sign-SGD with decoupled weight decay for the puzzle-embedding table,
  applied to the rows present in the batch only.
- :func:`lr_at`: linear warm-up then cosine to ``lr_min_ratio`` (1.0 = constant).
"""

from __future__ import annotations

import math

import torch

from ..models.layers import PuzzleEmbedding


class AdamATan2(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"].item()  # a CPU tensor: no device sync
                m, v = state["exp_avg"], state["exp_avg_sq"]
                g = p.grad
                p.mul_(1 - lr * wd)
                m.lerp_(g, 1 - b1)
                v.lerp_(g.square(), 1 - b2)
                update = torch.atan2(m / (1 - b1 ** t), v.sqrt() / math.sqrt(1 - b2 ** t))
                p.add_(update, alpha=-lr)


class SignSGDSparse:
    """Sign-SGD with decoupled weight decay on the touched rows of a :class:`PuzzleEmbedding`."""

    def __init__(self, emb: PuzzleEmbedding, lr: float, weight_decay: float):
        self.emb, self.lr, self.weight_decay = emb, lr, weight_decay

    @torch.no_grad()
    def step(self):
        local, ids = self.emb.local_weights, self.emb.local_ids
        if local is None or local.grad is None:
            return
        uniq, inv = ids.unique(return_inverse=True)
        grad = torch.zeros(len(uniq), local.shape[1], dtype=local.grad.dtype, device=local.device)
        grad.index_add_(0, inv, local.grad)
        rows = self.emb.weights[uniq]
        rows.mul_(1.0 - self.lr * self.weight_decay).add_(torch.sign(grad), alpha=-self.lr)
        self.emb.weights[uniq] = rows

    def zero_grad(self):
        self.emb.local_weights = None
        self.emb.local_ids = None


def lr_at(step: int, base_lr: float, warmup: int, total: int, min_ratio: float) -> float:
    """LR at optimizer step ``step`` (1-based, as the official loop counts)."""
    if step < warmup:
        return base_lr * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(progress, 1.0)
    return base_lr * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))))
