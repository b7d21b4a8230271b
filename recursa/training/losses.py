"""Losses of the official ``ACTLossHead``: stablemax (or softmax) cross-entropy + halting BCE.

- token loss, per sequence: sum of the CE over labelled tokens / their count, summed over rows;
- halting loss: BCE-with-logits of q_halt against "the whole sequence is right", summed;
- with Q-learning halting, a continue loss: BCE of q_continue against the ACT wrapper's target;
- total = lm + 0.5 * (halt + continue). The trainer back-propagates total / batch_size.

Stablemax replaces exp by s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0); it is computed in float64
as in the official code, which keeps it from saturating on the tiny-data regimes of these models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.format import IGNORE_LABEL_ID


def _stablemax_s(x: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    return torch.where(x < 0, 1 / (1 - x + eps), x + 1)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    s = _stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token stablemax CE in float64; 0 where ``mask`` is false."""
    logp = log_stablemax(logits.to(torch.float64))
    picked = logp.gather(-1, torch.where(mask, labels, 0).long().unsqueeze(-1)).squeeze(-1)
    return -torch.where(mask, picked, 0)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token softmax CE in float32; 0 where ``mask`` is false."""
    ce = F.cross_entropy(logits.float().flatten(0, -2), torch.where(mask, labels, 0).long().flatten(),
                         reduction="none").view(labels.shape)
    return torch.where(mask, ce, 0)


LOSSES = {"stablemax": stablemax_cross_entropy, "softmax": softmax_cross_entropy}


def act_loss(outputs: dict[str, torch.Tensor], labels: torch.Tensor, halted: torch.Tensor,
             steps: torch.Tensor, loss_type: str = "stablemax", token_weights: torch.Tensor | None = None,
             halt_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and summed metric tensors (on device; no host sync). ``token_weights`` /
    ``halt_weights`` (B,) weigh each row's token loss / halting losses (None: 1 for every row).

    Metrics count only rows that halted at this step (their puzzle is finished), as in the
    official code: ``count``, ``accuracy`` (sum of per-row token accuracy), ``exact_accuracy``,
    ``q_halt_accuracy``, ``steps``; plus the (summed) ``lm_loss`` and ``q_halt_loss``.
    """
    logits, q_halt = outputs["logits"], outputs["q_halt_logits"]
    mask = labels != IGNORE_LABEL_ID
    counts = mask.sum(-1)
    divisor = counts.clamp_min(1).unsqueeze(-1)
    with torch.no_grad():
        correct = mask & (logits.argmax(-1) == labels)
        seq_correct = correct.sum(-1) == counts
        valid = halted & (counts > 0)
        metrics = {
            "count": valid.sum(),
            "accuracy": torch.where(valid, (correct.float() / divisor).sum(-1), 0).sum(),
            "exact_accuracy": (valid & seq_correct).sum(),
            "q_halt_accuracy": (valid & ((q_halt >= 0) == seq_correct)).sum(),
            "steps": torch.where(valid, steps, 0).sum(),
        }
    if token_weights is None:
        lm_loss = (LOSSES[loss_type](logits, labels, mask) / divisor).sum()
    else:
        lm_loss = ((LOSSES[loss_type](logits, labels, mask) / divisor).sum(-1) * token_weights).sum()
    if halt_weights is None:
        q_halt_loss = F.binary_cross_entropy_with_logits(q_halt, seq_correct.to(q_halt.dtype), reduction="sum")
    else:
        q_halt_loss = (F.binary_cross_entropy_with_logits(q_halt, seq_correct.to(q_halt.dtype), reduction="none")
                       * halt_weights).sum()
    metrics["lm_loss"] = lm_loss.detach()
    metrics["q_halt_loss"] = q_halt_loss.detach()
    total = lm_loss + 0.5 * q_halt_loss
    if "target_q_continue" in outputs:  # Q-learning halting (HRM)
        q_continue_loss = F.binary_cross_entropy_with_logits(outputs["q_continue_logits"], outputs["target_q_continue"],
                                                             reduction="none" if halt_weights is not None else "sum")
        if halt_weights is not None:
            q_continue_loss = (q_continue_loss * halt_weights).sum()
        metrics["q_continue_loss"] = q_continue_loss.detach()
        total = total + 0.5 * q_continue_loss
    return total, metrics
