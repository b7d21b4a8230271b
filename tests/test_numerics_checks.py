"""The fixture checks of tests/numerics.py catch real mistakes: each deliberately broken model below
must fail the check its correct twin passes (tests/test_models.py, tests/test_official.py), on
every instruction set (marked ``numerics``, so `make test-numerics ISA=...` runs them too).

Broken on purpose: RMSNorm's eps 1e-6 instead of the official 1e-5 (HRM, TRM with the MLP token
mixer: the smallest mistake of a constant that matters), SwiGLU's gate and up projections swapped
(a wrong weight mapping), URM's ConvSwiGLU without the SiLU after its convolution (a missing op)
and with its down_proj in float32 instead of bfloat16 (a missing rounding point)."""

import pytest
import torch
import torch.nn.functional as F

from recursa.models import fused, layers

from . import numerics
from .test_models import _batch, _fixture_model, fixture_steps, urm_fixture_model, urm_fixture_steps

pytestmark = pytest.mark.numerics


@pytest.fixture(autouse=True)
def _no_margin_log(monkeypatch):
    """Broken models' distances are not margins of the real checks (scripts/numerics_margins.py)."""
    monkeypatch.delenv("RECURSA_NUMERICS_LOG", raising=False)


def _blocks(model):
    return [m for m in model.modules() if isinstance(m, layers.Block)]


@pytest.mark.parametrize("case", ["hrm", "trm_mlp_t"])
def test_a_wrong_rms_norm_eps_fails_the_float32_check(case):
    model, io = _fixture_model(case)
    batch, fixture = _batch(io, "batch_a"), fixture_steps(io)
    numerics.check_f32_against_fixture(model, numerics.steps_of(batch), fixture, case)  # the correct one passes
    assert _blocks(model) and all(b.eps == 1e-5 for b in _blocks(model))
    for b in _blocks(model):
        b.eps = 1e-6
    with pytest.raises(AssertionError, match="float64 model vs official"):
        numerics.check_f32_against_fixture(model, numerics.steps_of(batch), fixture, case)


def test_swapped_gate_and_up_projections_fail_the_float32_check():
    model, io = _fixture_model("trm_att_rope")
    mlp = next(m for m in model.modules() if isinstance(m, layers.SwiGLU))
    w = mlp.gate_up_proj.weight
    with torch.no_grad():
        gate, up = w.detach().clone().chunk(2, 0)
        w.copy_(torch.cat([up, gate], 0))
    with pytest.raises(AssertionError, match="float64 model vs official"):
        numerics.check_f32_against_fixture(model, numerics.steps_of(_batch(io, "batch_a")), fixture_steps(io), "trm")


def _broken_conv_forward(*, silu: bool, bf16_down: bool):
    def forward(self, x):
        h = fused.swiglu(self.gate_up_proj(x))
        c = self._conv(h.to(torch.bfloat16))
        c = (F.silu(c) if silu else c).contiguous()
        return self.down_proj(c if bf16_down else c.float()).to(x.dtype)
    return forward


def _conv_inputs(model, batch):
    """Each layer's ConvSwiGLU and its real input at step 1."""
    inputs = []
    hooks = [layer.mlp.register_forward_pre_hook(lambda mod, args: inputs.append((mod, args[0].clone())))
             for layer in model.inner.layers]
    numerics.eval_steps(model, batch, 1)
    for h in hooks:
        h.remove()
    return inputs[:len(model.inner.layers)]


def test_urm_without_the_silu_after_its_conv_fails_the_bf16_checks(monkeypatch):
    model, batch, io = urm_fixture_model()
    monkeypatch.setattr(layers.SwiGLU, "forward", _broken_conv_forward(silu=False, bf16_down=True))
    with pytest.raises(AssertionError, match="model vs official"):
        numerics.check_bf16_against_fixture(model, numerics.steps_of(batch), urm_fixture_steps(io), "urm")
    mlp, x = _conv_inputs(model, batch)[0]
    with pytest.raises(AssertionError, match="bf16 ConvSwiGLU"):
        numerics.check_bf16_swiglu(mlp, x)


def test_urm_with_a_float32_down_proj_fails_the_elementwise_bf16_check(monkeypatch):
    model, batch, _ = urm_fixture_model()
    pairs = _conv_inputs(model, batch)
    for mlp, x in pairs:  # the correct path passes
        numerics.check_bf16_swiglu(mlp, x)
    monkeypatch.setattr(layers.SwiGLU, "forward", _broken_conv_forward(silu=True, bf16_down=False))
    with pytest.raises(AssertionError, match="bf16 ConvSwiGLU"):
        numerics.check_bf16_swiglu(*pairs[0])
