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
        """One step for all parameters of a group at once (``torch._foreach_*``: a few kernels
        instead of seven per tensor; the same arithmetic, bit for bit, as a per-tensor loop)."""
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            b1, b2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
            t = self.state[params[0]]["step"].item()  # a CPU tensor: no device sync
            grads = [p.grad for p in params]
            ms = [self.state[p]["exp_avg"] for p in params]
            vs = [self.state[p]["exp_avg_sq"] for p in params]
            torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_lerp_(ms, grads, 1 - b1)
            torch._foreach_lerp_(vs, torch._foreach_mul(grads, grads), 1 - b2)
            m_hat = torch._foreach_div(ms, 1 - b1 ** t)
            v_hat = torch._foreach_div(torch._foreach_sqrt(vs), math.sqrt(1 - b2 ** t))
            updates = [torch.atan2(m, v) for m, v in zip(m_hat, v_hat)]
            torch._foreach_add_(params, updates, alpha=-lr)


# Per-iteration (a, b, c) of the quintic Newton-Schulz map X <- aX + (bA + cA^2)X, A = XX^T, as URM's
# muon.py uses them (iterations past the table repeat its last row); facts of URM's recipe.
NS_COEFFS = ((7.2086, -15.5131, 9.0178), (3.9623, -2.5813, 0.4542), (3.9466, -2.5765, 0.4544),
             (3.8991, -2.5671, 0.4566), (3.7186, -2.5308, 0.4653), (3.1390, -2.3073, 0.4733),
             (2.1715, -1.5246, 0.3885), (1.8648, -1.2224, 0.3577))


def orthogonalize(g: torch.Tensor, steps: int) -> torch.Tensor:
    """Approximately U V^T of g = U S V^T (singular values pushed towards ~1) by ``steps`` quintic
    Newton-Schulz iterations in float32, on the wide orientation of the matrix."""
    x = g.float()
    wide = x.shape[-2] <= x.shape[-1]
    if not wide:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp_min(1e-7)
    for i in range(steps):
        a, b, c = NS_COEFFS[min(i, len(NS_COEFFS) - 1)]
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.mT


class Muon(torch.optim.Optimizer):
    """Muon as URM's ARC-AGI-2 recipe runs it (``UbiquantAI/URM`` ``use_muon=True``): every 2-D
    weight (embeddings and heads included, as URM's code does) takes a Nesterov-momentum step whose
    direction is orthogonalised (:func:`orthogonalize`; the momentum input rounded to bfloat16 as
    URM's), scaled Moonlight-style to an AdamW-like RMS: lr * sqrt(max(rows, cols)) * ``rms``; every
    other tensor (biases, convolution kernels) takes an AdamW step (betas ``adamw_betas``, eps added
    to sqrt(v)). Both with decoupled weight decay p <- p * (1 - lr * wd)."""

    def __init__(self, params, lr: float = 1e-4, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, rms: float = 0.2,
                 adamw_betas: tuple[float, float] = (0.9, 0.95), adamw_eps: float = 1e-8):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_steps=ns_steps, rms=rms, adamw_betas=adamw_betas, adamw_eps=adamw_eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                if p.ndim == 2:
                    if not state:
                        state["momentum_buffer"] = torch.zeros_like(g)
                    buf = state["momentum_buffer"]
                    buf.mul_(group["momentum"]).add_(g)
                    u = g.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                    update = orthogonalize(u.to(torch.bfloat16), group["ns_steps"]).to(p.dtype)
                    p.mul_(1 - lr * wd)
                    p.add_(update, alpha=-lr * math.sqrt(max(p.shape)) * group["rms"])
                else:
                    if not state:
                        state["step"] = torch.zeros((), dtype=torch.float32)
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    state["step"] += 1
                    t = state["step"].item()
                    b1, b2 = group["adamw_betas"]
                    state["exp_avg"].lerp_(g, 1 - b1)
                    state["exp_avg_sq"].lerp_(g * g, 1 - b2)
                    direction = state["exp_avg"] / (state["exp_avg_sq"].sqrt() + group["adamw_eps"])
                    p.mul_(1 - lr * wd)
                    p.add_(direction, alpha=-lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t))


class SignSGDSparse:
    """Sign-SGD with decoupled weight decay on the touched rows of a :class:`PuzzleEmbedding`.

    Rows of the batch that share an identifier have their gradients summed (in batch order), then
    each touched row moves by -lr * sign(sum). No host-device sync: instead of ``unique`` (whose
    output size the host must learn), the ids are sorted and summed into B fixed slots, the unused
    slots rewriting the first touched row with its own new value. ``gather`` (data-parallel runs)
    concatenates every rank's ids and gradients in rank order first, so all ranks apply the
    one-process update."""

    def __init__(self, emb: PuzzleEmbedding, lr: float, weight_decay: float, gather=None, grad_scale: float = 1.0):
        self.emb, self.lr, self.weight_decay = emb, lr, weight_decay
        self.gather, self.grad_scale = gather, grad_scale

    @torch.no_grad()
    def step(self):
        local, ids = self.emb.local_weights, self.emb.local_ids
        if local is None or local.grad is None:
            return
        grad_rows = local.grad if self.grad_scale == 1.0 else local.grad * self.grad_scale
        ids = ids.long()
        if self.gather is not None:
            ids, grad_rows = self.gather(ids), self.gather(grad_rows)
        n = ids.shape[0]
        ids_sorted, order = torch.sort(ids, stable=True)
        first = torch.ones_like(ids_sorted, dtype=torch.bool)
        first[1:] = ids_sorted[1:] != ids_sorted[:-1]
        slot = torch.cumsum(first, 0) - 1  # the group (distinct id) of each sorted row
        grad = torch.zeros(n, local.shape[1], dtype=grad_rows.dtype, device=local.device)
        grad.index_add_(0, slot, grad_rows[order])
        uid = torch.zeros(n, dtype=ids.dtype, device=ids.device).scatter_(0, slot, ids_sorted)
        used = torch.arange(n, device=ids.device) <= slot[-1]
        uid = torch.where(used, uid, uid[0])
        rows = self.emb.weights[uid]
        rows.mul_(1.0 - self.lr * self.weight_decay).add_(torch.sign(grad), alpha=-self.lr)
        rows = torch.where(used.unsqueeze(1), rows, rows[0])
        self.emb.weights[uid] = rows

    def zero_grad(self):
        self.emb.local_weights = None
        self.emb.local_ids = None


def lr_at(step: int, base_lr: float, warmup: int, total: int, min_ratio: float,
          progress: float | None = None) -> float:
    """LR at optimizer step ``step`` (1-based, as the official loop counts). ``progress``: the
    fraction of the budget used, when the budget is not a step count (a time budget): the cosine then
    runs over the whole budget and the warm-up ramps up to it (no jump at the warm-up's end)."""
    if progress is not None:
        p = min(max(progress, 0.0), 1.0)
        ramp = min(1.0, step / max(1, warmup)) if warmup else 1.0
        return base_lr * ramp * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))))
    if step < warmup:
        return base_lr * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(progress, 1.0)
    return base_lr * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))))


def build_optimizers(model: torch.nn.Module, t, device: torch.device, world: int = 1, gather=None):
    """(the network's optimiser by ``train.optimizer``, sign-SGD for the puzzle-embedding rows or
    None) for ``model`` under the train config ``t``. ``world`` processes each divide their loss by
    their own rows, so the sparse step's gradients are scaled by 1/world to the one-process scale;
    ``gather`` concatenates every rank's rows (distributed runs)."""
    params = list(model.parameters())
    if t.optimizer == "adam_atan2":
        opt = AdamATan2(params, lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
    elif t.optimizer == "muon":
        opt = Muon(params, lr=t.lr, weight_decay=t.weight_decay, adamw_betas=(t.beta1, t.beta2))
    else:
        # fused: one kernel for all parameters (4x faster than the per-tensor-list default on a CPU)
        opt = torch.optim.AdamW(params, lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay,
                                fused=device.type in ("cpu", "cuda") or None)
    emb = getattr(model.inner, "puzzle_emb", None)
    sparse = SignSGDSparse(emb, t.puzzle_emb_lr, t.puzzle_emb_weight_decay, gather=gather,
                           grad_scale=1.0 / world) if emb is not None else None
    return opt, sparse
