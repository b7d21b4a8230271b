"""Losses against float64 references written out independently."""

import numpy as np
import torch

from recursa.training.losses import (
    IGNORE_LABEL_ID,
    act_loss,
    softmax_cross_entropy,
    stablemax_cross_entropy,
)


def _stablemax_reference(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.zeros(labels.shape)
    for idx in np.ndindex(labels.shape):
        if labels[idx] == IGNORE_LABEL_ID:
            continue
        x = logits[idx].astype(np.float64)
        s = np.array([v + 1 if v >= 0 else 1 / (1 - v) for v in x])
        out[idx] = -np.log(s[labels[idx]] / s.sum())
    return out


def test_stablemax_cross_entropy_matches_float64_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 5, generator=g) * 4
    labels = torch.randint(0, 5, (3, 7), generator=g)
    labels[1, 2:] = IGNORE_LABEL_ID
    got = stablemax_cross_entropy(logits, labels, labels != IGNORE_LABEL_ID)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), _stablemax_reference(logits.numpy(), labels.numpy()), rtol=1e-6, atol=1e-7)


def test_softmax_cross_entropy_matches_reference():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, generator=g)
    labels = torch.randint(0, 6, (2, 4), generator=g)
    labels[0, 0] = IGNORE_LABEL_ID
    got = softmax_cross_entropy(logits, labels, labels != IGNORE_LABEL_ID).numpy()
    x = logits.double().numpy()
    ref = -(x - np.log(np.exp(x).sum(-1, keepdims=True)))
    ref = np.take_along_axis(ref, np.where(labels.numpy() < 0, 0, labels.numpy())[..., None], -1)[..., 0]
    ref[0, 0] = 0
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_act_loss_per_sequence_normalisation_and_halt_target():
    labels = torch.tensor([[1, 2, IGNORE_LABEL_ID, IGNORE_LABEL_ID], [0, 1, 2, 0]])
    logits = torch.full((2, 4, 3), -1.0)
    logits[0, 0, 1] = logits[0, 1, 2] = 3.0  # row 0 fully right
    logits[1, :, 0] = 3.0  # row 1: 2 of 4 right
    q_halt = torch.tensor([0.5, -0.5])
    out = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": torch.zeros(2)}
    halted = torch.tensor([True, True])
    loss, m = act_loss(out, labels, halted, torch.tensor([2, 3]))
    mask = labels != IGNORE_LABEL_ID
    per_tok = stablemax_cross_entropy(logits, labels, mask)
    lm = (per_tok.sum(-1) / mask.sum(-1)).sum()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(q_halt, torch.tensor([1.0, 0.0]), reduction="sum")
    assert torch.allclose(loss, lm + 0.5 * bce)
    assert m["count"] == 2 and m["exact_accuracy"] == 1 and m["q_halt_accuracy"] == 2
    assert abs(m["accuracy"].item() - 1.5) < 1e-6 and m["steps"] == 5
    # Rows that did not halt are not counted in the metrics (but are in the loss).
    _, m2 = act_loss(out, labels, torch.tensor([False, True]), torch.tensor([2, 3]))
    assert m2["count"] == 1 and m2["exact_accuracy"] == 0
