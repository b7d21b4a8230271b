"""The fused elementwise ops (recursa.models.fused) compute the reference ops' values and gradients,
alone and inside whole TRM / HRM training steps; the allocator setting; the side-by-side bench's
errors (its run against the official code needs a checkout named by RECURSA_OFFICIAL_TRM)."""

import json
import os

import pytest
import torch
import torch.nn.functional as F

from recursa import perf
from recursa.cli import main
from recursa.models import fused
from recursa.models.layers import apply_rope

from .conftest import cli_error
from .test_models import _rand_batch, _small

OFFICIAL = os.environ.get("RECURSA_OFFICIAL_TRM")
pytestmark = pytest.mark.numerics  # .ci/run also runs these under emulated instruction sets


def _close(a, b, rel=1e-5):
    scale = b.abs().max().clamp_min(1e-12)
    assert (a - b).abs().max() <= rel * scale, float((a - b).abs().max() / scale)


def _grads(fn, *xs):
    xs = [x.detach().clone().requires_grad_(True) for x in xs]
    out = fn(*xs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    (out * g).sum().backward()
    return out.detach(), [x.grad for x in xs]


@pytest.mark.parametrize("transposed", [False, True])
def test_add_rms_norm_values_and_gradients(transposed):
    gen = torch.Generator().manual_seed(0)
    h, r = torch.randn(3, 7, 24, generator=gen), 3 * torch.randn(3, 7, 24, generator=gen)
    if transposed:  # the token-mixer norm: over positions, on transposed (non-contiguous) views
        h, r = h.transpose(1, 2), r.transpose(1, 2)
    ref, ref_g = _grads(lambda a, b: fused.reference_rms_norm(a + b, 1e-5), h, r)
    got, got_g = _grads(lambda a, b: fused.add_rms_norm(a, b, 1e-5), h, r)
    _close(got, ref)
    for a, b in zip(got_g, ref_g):
        _close(a, b)
    with torch.no_grad():
        _close(fused.add_rms_norm(h, r, 1e-5), ref)
    # the check can fail: a wrong eps or axis changes the values
    assert (fused.add_rms_norm(h, r, 1e-1) - ref).abs().max() > 1e-4


def test_swiglu_values_and_gradients():
    gu = torch.randn(2, 5, 2 * 12, generator=torch.Generator().manual_seed(1))
    ref, (ref_g,) = _grads(lambda x: F.silu(x.chunk(2, -1)[0]) * x.chunk(2, -1)[1], gu)
    got, (got_g,) = _grads(fused.swiglu, gu)
    _close(got, ref)
    _close(got_g, ref_g)
    with torch.inference_mode():
        _close(fused.swiglu(gu), ref)


def test_rope_on_query_and_key_heads_together():
    B, S, H, hd = 2, 9, 3, 8
    gen = torch.Generator().manual_seed(2)
    qk = torch.randn(B, S, 2 * H, hd, generator=gen)
    freqs = torch.outer(torch.arange(S, dtype=torch.float32), 1.0 / 10000 ** (torch.arange(0, hd, 2) / hd))
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos(), emb.sin()
    ref, (ref_g,) = _grads(lambda x: apply_rope(x, cos, sin), qk)
    got, (got_g,) = _grads(lambda x: fused.rope_qk(x, cos, sin), qk)
    _close(got, ref)
    _close(got_g, ref_g)


def test_other_dtypes_use_the_reference_ops():
    h = torch.randn(2, 3, 8).to(torch.bfloat16)
    assert torch.equal(fused.add_rms_norm(h, h, 1e-5), fused.reference_rms_norm(h + h, 1e-5))
    with fused.reference_ops():
        assert not fused.enabled(torch.zeros(1))
        with fused.reference_ops(False):
            assert fused.enabled(torch.zeros(1))
        assert not fused.enabled(torch.zeros(1))
    assert fused.enabled(torch.zeros(1))


@pytest.mark.parametrize("kw", [dict(), dict(mlp_t=True, pos_encodings="none"), dict(arch="hrm", H_layers=2)])
def test_training_step_gradients_match_the_reference_ops(kw):
    """One ACT training step (forward, loss, backward) gives the same loss and gradients either way."""
    from recursa.training.losses import act_loss

    def step():
        model = _small(**kw).train()
        batch = _rand_batch()
        carry, out = model(model.initial_carry(batch), batch)
        loss, _ = act_loss(out, carry.data["labels"], carry.halted, carry.steps)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        grads["puzzle_emb"] = model.inner.puzzle_emb.local_weights.grad
        return loss.detach(), grads

    with fused.reference_ops():
        ref_loss, ref = step()
    loss, got = step()
    _close(loss, ref_loss)
    assert got.keys() == ref.keys()
    for name in ref:
        _close(got[name], ref[name], rel=1e-4)


def test_allocator_setting(monkeypatch):
    monkeypatch.setattr(perf, "_state", None)
    monkeypatch.setenv("RECURSA_MALLOC", "system")
    assert perf.tune_allocator() == "system" and perf.allocator_state() == "system"
    monkeypatch.setattr(perf, "_state", None)
    monkeypatch.delenv("RECURSA_MALLOC")
    state = perf.tune_allocator()
    assert state in ("tuned", "unavailable")
    import platform
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert state == "tuned"


def test_official_needs_a_checkout(tmp_path, capsys):
    err = cli_error(capsys, ["bench", "train", "--preset", "tiny", "--official", str(tmp_path), "--steps", "1"])
    assert "not a checkout of the official TinyRecursiveModels code" in err
    err = cli_error(capsys, ["bench", "train", "--preset", "tiny", "--impl", "official", "--steps", "1"])
    assert "--impl official needs --official DIR" in err


@pytest.mark.skipif(not OFFICIAL, reason="set RECURSA_OFFICIAL_TRM to a checkout of the official TinyRecursiveModels")
def test_side_by_side_with_the_official_code(capsys):
    """Against the official code itself (a checkout; CI has none, it checks the fixtures the official
    code made): in one process on one CPU, with the same weights, recursa's forward is bit-identical
    to the official one, fused ops included."""
    assert main(["bench", "infer", "--preset", "tiny", "--official", OFFICIAL, "--steps", "1", "--warmup", "1",
                 "--batch", "2"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["compare"] == "official" and row["speedup"] > 0 and row["peak_rss_ratio"] > 0
    assert row["official"]["params"] == row["recursa"]["params"]
    assert row["official"]["model_gflop_per_step"] == pytest.approx(row["recursa"]["model_gflop_per_step"], rel=1e-6)
    assert max(row["same_math_max_abs_diff"].values()) == 0.0, row["same_math_max_abs_diff"]


@pytest.mark.parametrize("kw", [dict(), dict(mlp_t=True, pos_encodings="none"), dict(arch="hrm", H_layers=2)])
def test_forward_is_bit_identical_to_the_reference_ops(kw):
    """Inference (and the training forward) computes exactly what the reference ops compute: each
    product is rounded as in the official code, so official outputs are reproduced to the bit."""
    model = _small(**kw)
    batch = _rand_batch()
    for train in (False, True):
        model.train(train)
        outs = []
        for ref in (True, False):
            with fused.reference_ops(ref), torch.inference_mode(not train):
                carry = model.initial_carry(batch)
                for _ in range(2):
                    carry, out = model(carry, batch)
                outs.append((out["logits"].detach(), carry.state[0]))
        assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1]), train
