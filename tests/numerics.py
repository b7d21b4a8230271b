"""Tolerances for the official-fixture tests, derived from the computation rather than from one CPU.

A float32 forward pass computed by another kernel (another instruction set, another oneDNN path,
another summation order) differs from the fixture in its last bits, and the difference grows with
depth. So each check compares against a **float64 evaluation of recursa's own model** (the fixture
weights are float16 values, exact in float64), which every CPU computes the same to ~1e-15, and
the tolerance is what float32 (or bfloat16) rounding can do at that depth:

* **float32 paths.** Backward stability: a float32 evaluation equals an exact evaluation with
  every weight and intermediate moved by a few units of float32 roundoff (u = 2^-24). We measure,
  in float64, how far the outputs of ACT step k move when *every* weight is moved by +-u (a seeded
  random sign per value): ``s_k``. Measured over the fixtures and three instruction sets (native
  AVX-512, ``ATEN_CPU_CAPABILITY=avx2``, ``=default``; results/numerics.json, made by
  scripts/numerics_margins.py from the distances these checks log under RECURSA_NUMERICS_LOG): a
  float32 evaluation is at most 4.1 s_k from float64 (trm_singlez under ``=default``: 24 sequential
  block applications by step 3, whose activations round too, which s_k does not perturb);
  the checks allow ``8 s_k`` for each float32 evaluation (the
  fixture's, recursa's) and ``16 s_k`` between the two. ``s_k`` is 1e-6 .. 3e-5 for
  attention models and grows 6-8x per step for the expansive random ``mlp_t`` network (5e-4 at
  step 3). tests/test_numerics_checks.py shows a wrong constant (RMSNorm eps 1e-6), a wrong weight
  mapping (gate and up swapped) and a missing op or rounding point (URM) each failing.
* **bfloat16 paths** (URM's ConvSwiGLU: conv, SiLU and down_proj in bfloat16 as official). A
  correct bf16 kernel returns, for each element, one of the two bf16 neighbours of the exact
  value (its float32 accumulation error is far below a bf16 ulp); kernels differ in which one
  they pick near a tie. :func:`bf16_emulation` computes the same bf16-rounded math in float64,
  rounding to the nearest bf16 at exactly the points where the bf16 path rounds (deterministic on
  any CPU). The model-level tolerance ``e_k`` is the largest move of step k's outputs over four
  seeded runs of that emulation in which *every* rounding goes to a random one of the two
  neighbours: the envelope of what any correct bf16 kernel could return. It is ~0.02 / 0.04 / 0.1
  for the URM fixture's three steps; dropping the SiLU moves them by 2.2. Tightly, one ConvSwiGLU
  call of recursa's bf16 path is compared with the emulation element by element
  (:func:`check_bf16_swiglu`): almost every output bit-identical, every one within the rounding
  bound, so a float32 down_proj or a missing rounding point (0% bit-identical) fails.

Bit-exact checks stay where the result is deterministic by construction (the same computation on
the same CPU: resume, the fused ops' forward where they keep the op order, imported vs loaded).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os

import torch
import torch.nn.functional as F

from recursa.models import layers
from recursa.models.base import TokenModel
from recursa.tools.results import ISA_ENV

F32_U = 2.0 ** -24
F32_PER_EVAL = 8.0  # a float32 evaluation is within 8 s_k of the exact one (measured: <= 4.1)


def _log(check: str, what: str, step: int, **ratios: float) -> None:
    """With RECURSA_NUMERICS_LOG=FILE, append one JSON line per checked output: how much of its bound
    each distance used (scripts/numerics_margins.py collects them into results/numerics.json)."""
    path = os.environ.get("RECURSA_NUMERICS_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"check": check, "what": what, "step": step, "isa": torch.backends.cpu.get_cpu_capability(),
                                "emulation": {k: os.environ[k] for k in ISA_ENV if k in os.environ},
                                **{k: float(v) for k, v in ratios.items()}}) + "\n")


def float64_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The same model computing in float64 (weights converted exactly)."""
    m = copy.deepcopy(model).double()
    for mod in m.modules():
        if isinstance(mod, TokenModel):
            mod.dtype = torch.float64
    return m


def eval_steps(model: torch.nn.Module, batch: dict[str, torch.Tensor], n: int = 3) -> list[dict[str, torch.Tensor]]:
    """Outputs of ``n`` eval ACT steps from a fresh carry, as float64: logits, q_halt_logits,
    q_continue_logits and every state tensor (``state{i}``)."""
    out = []
    with torch.inference_mode():
        carry = model.initial_carry(batch)
        for _ in range(n):
            carry, o = model(carry, batch)
            d = {k: o[k].double() for k in ("logits", "q_halt_logits", "q_continue_logits")}
            d.update({f"state{i}": z.double() for i, z in enumerate(carry.state)})
            d["halted"] = carry.halted.clone()
            out.append(d)
    return out


def max_dev(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], names=None) -> float:
    """Largest |a - b| over the float tensors both hold (or ``names``)."""
    names = names or [k for k in b if k in a and b[k].is_floating_point()]
    return max((a[k].double() - b[k].double()).abs().max().item() for k in names)


def _perturbed(model: torch.nn.Module, rel: float, seed: int) -> torch.nn.Module:
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(m.parameters()) + list(m.buffers()):
            if t.is_floating_point():
                sign = torch.randint(0, 2, t.shape, generator=g).to(t.dtype) * 2 - 1
                t.mul_(1 + rel * sign)
    return m


def f32_sensitivity(run, model64: torch.nn.Module) -> list[float]:
    """s_k: how far output k of ``run(model)`` moves (float64) when every weight moves by +-u (float32)."""
    return [max_dev(m, b) for m, b in zip(run(_perturbed(model64, F32_U, seed=0)), run(model64))]


def steps_of(batch: dict[str, torch.Tensor], n: int = 3):
    """The usual ``run``: ``n`` eval ACT steps on ``batch`` from a fresh carry."""
    return lambda model: eval_steps(model, batch, n)


def check_f32_against_fixture(model: torch.nn.Module, run, fixture: list[dict[str, torch.Tensor]],
                              what: str = "") -> None:
    """A float32 model against the official fixture: ``run(model)`` gives a list of output dicts and
    ``fixture[k]`` maps the same names to the official tensors. The float64 evaluation within
    8 s_k of the fixture (proves the math; the same on every CPU), recursa's float32 evaluation
    within 8 s_k of the float64 one, and within 16 s_k of the fixture."""
    m64 = float64_copy(model)
    exact, got = run(m64), run(model)
    for k, (s, ref, e, g) in enumerate(zip(f32_sensitivity(run, m64), fixture, exact, got), start=1):
        tol = F32_PER_EVAL * s
        d_fix = max_dev(e, ref, list(ref))
        assert d_fix <= tol, f"{what} output {k}: float64 model vs official {d_fix:.3g} > 8 s_k = {tol:.3g}"
        d32 = max_dev(g, e)
        assert d32 <= tol, f"{what} output {k}: float32 model vs float64 {d32:.3g} > 8 s_k = {tol:.3g}"
        d = max_dev(g, ref, list(ref))
        _log("f32", what, k, fixture_to_f64_per_s=d_fix / s, f32_to_f64_per_s=d32 / s, f32_to_fixture_per_s=d / s)
        assert d <= 2 * tol, f"{what} output {k}: float32 model vs official {d:.3g} > 16 s_k = {2 * tol:.3g}"


# ------------------------------------------------------------------------------------- bfloat16
def _nearest_bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(t.dtype)


def _random_bf16(gen: torch.Generator):
    """Round each element to one of its two bf16 neighbours, picked at random."""
    def rnd(t: torch.Tensor) -> torch.Tensor:
        near = t.to(torch.bfloat16)
        toward = torch.where(t > near.to(t.dtype), float("inf"), float("-inf")).to(torch.bfloat16)
        other = torch.where(near.to(t.dtype) == t, near, torch.nextafter(near, toward)).to(t.dtype)
        pick = torch.rand(t.shape, generator=gen, dtype=t.dtype) < 0.5
        return torch.where(pick, near.to(t.dtype), other)
    return rnd


def _emulated_down_input(self: layers.SwiGLU, x: torch.Tensor, rnd) -> torch.Tensor:
    """URM's ConvSwiGLU up to down_proj's input, as bf16-rounded math in x's dtype: silu(gate) * up
    rounded to bf16 (the cast), the depthwise conv of bf16 values with bf16 weights rounded once,
    its SiLU rounded once."""
    gate, up = self.gate_up_proj(x).chunk(2, -1)
    h = rnd(F.silu(gate) * up)
    w, b = _nearest_bf16(self.dwconv.weight.to(x.dtype)), _nearest_bf16(self.dwconv.bias.to(x.dtype))
    if self.conv_grid is None:
        L, k = h.shape[-2], self.conv_kernel
        c = F.conv1d(h.transpose(-1, -2), w, b, padding=k // 2, groups=h.shape[-1])[..., :L].transpose(-1, -2)
    else:
        c = layers.grid_conv(h, w, b, self.conv_grid)
    return rnd(F.silu(rnd(c)))


def _emulated_swiglu(self: layers.SwiGLU, x: torch.Tensor, rnd, fp32_down: bool = False) -> torch.Tensor:
    """The whole ConvSwiGLU: down_proj of the bf16 SiLU values with bf16 weights, rounded once
    (``fp32_down``: not rounded, a deliberately wrong variant)."""
    out = F.linear(_emulated_down_input(self, x, rnd), _nearest_bf16(self.down_proj.weight.to(x.dtype)))
    return out if fp32_down else rnd(out)


@contextlib.contextmanager
def bf16_emulation(rnd=_nearest_bf16, fp32_down: bool = False):
    """Within this block every bf16 ConvSwiGLU computes the bf16-rounded math in its input's dtype
    (float64 for a :func:`float64_copy`), rounding with ``rnd``."""
    forward = layers.SwiGLU.forward

    def emulated(self, x):
        if self.conv_kernel and self.conv_bf16:
            return _emulated_swiglu(self, x, rnd, fp32_down)
        return forward(self, x)
    layers.SwiGLU.forward = emulated
    try:
        yield
    finally:
        layers.SwiGLU.forward = forward


def bf16_envelope(run, model64: torch.nn.Module, draws: int = 4) -> list[float]:
    """e_k: the largest move of output k of ``run`` when every bf16 rounding picks a random neighbour."""
    with bf16_emulation():
        base = run(model64)
    env = [0.0] * len(base)
    for seed in range(draws):
        with bf16_emulation(_random_bf16(torch.Generator().manual_seed(seed))):
            moved = run(model64)
        env = [max(e, max_dev(m, b)) for e, m, b in zip(env, moved, base)]
    return env


def check_bf16_against_fixture(model: torch.nn.Module, run, fixture: list[dict[str, torch.Tensor]],
                               what: str = "") -> None:
    """A model with a bf16 path against the official fixture: the float64 emulation of the
    bf16-rounded math and recursa's model on this CPU both within e_k of the fixture."""
    m64 = float64_copy(model)
    with bf16_emulation():
        emulated = run(m64)
    got = run(model)
    for k, (e, ref, em, g) in enumerate(zip(bf16_envelope(run, m64), fixture, emulated, got), start=1):
        d_em = max_dev(em, ref, list(ref))
        assert d_em <= e, f"{what} output {k}: bf16 emulation vs official {d_em:.3g} > e_k = {e:.3g}"
        d = max_dev(g, ref, list(ref))
        _log("bf16", what, k, emulation_to_fixture_per_e=d_em / e, model_to_fixture_per_e=d / e)
        assert d <= e, f"{what} output {k}: model vs official {d:.3g} > e_k = {e:.3g}"


def check_bf16_swiglu(mlp: layers.SwiGLU, x: torch.Tensor) -> None:
    """One bf16 ConvSwiGLU call of recursa against the bf16-rounded math (float64): at least 99% of
    the outputs bit-identical (kernels differ only near rounding ties), and each within the
    bound of a correct kernel: one bf16 ulp (2^-7 relative at most) of rounding on the output, plus
    one ulp on each SiLU value feeding it (2^-7 * |silu| @ |W_down|^T)."""
    with torch.no_grad():
        got = mlp(x).double()
        m64 = copy.deepcopy(mlp).double()
        x64 = x.double()
        with bf16_emulation():
            exact = m64(x64)
        silu = _emulated_down_input(m64, x64, _nearest_bf16)  # the scale of the down_proj sum
        scale = F.linear(silu.abs(), _nearest_bf16(m64.down_proj.weight).abs())
    bound = 2.0 ** -7 * (exact.abs() + scale)
    err = (got - exact).abs()
    assert bool((err <= bound).all()), f"bf16 ConvSwiGLU: {(err / bound).max().item():.3g}x the rounding bound"
    same = (err == 0).double().mean().item()
    _log("bf16_swiglu", "conv_swiglu", 1, bit_identical=same, max_err_per_bound=(err / bound).max().item())
    assert same >= 0.99, f"bf16 ConvSwiGLU: only {same:.2%} of outputs equal the bf16-rounded math"
