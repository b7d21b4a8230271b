"""Fewer passes over memory for the recursive models' elementwise work, with the same math.

At the sizes recursa trains on a CPU (hidden 64-512, ~100 positions) a block's matrix multiplies
are small and the elementwise work around them (RMSNorm, SwiGLU, RoPE) costs 25-40% of a step:
each plain PyTorch op reads and writes a whole activation, allocates a fresh buffer and, under
autograd, keeps its inputs for the backward pass. Three operations are written here as
``torch.autograd.Function``s that make fewer passes, allocate fewer buffers and save less:

- :func:`add_rms_norm` ``rms_norm(h + r)``: one sum of squares (``vecdot``, no squared copy), the
  scaling in place; saves only the *output* (which the next layer keeps anyway) and the per-row
  1/rms, instead of the pre-norm sum. Backward: ``dx = rstd * (dy - y * mean(dy * y))``.
- :func:`swiglu` ``silu(gate) * up`` of a fused ``[gate | up]`` projection: the product is formed
  in the silu buffer; saves only the projection (autograd keeps it plus ``silu(gate)``); backward
  writes both halves of the gradient into one buffer (no concatenation).
- :func:`rope_qk` rotate-half RoPE on the query and key heads together, written into one buffer
  half by half (no negated or concatenated copies); saves nothing.

They compute what the reference code computes up to float rounding (summation order): the
official-fixture tests hold at their tolerances with either path, and ``tests/test_fused.py``
checks values and gradients against the reference ops. Float32 only: other dtypes (bf16 on a GPU)
use the reference ops, whose mixed-precision casts the official code defines. ``reference_ops()``
switches the fast path off (tests, ``recursa bench --reference-ops``).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

_ENABLED = True


@contextlib.contextmanager
def reference_ops(on: bool = True):
    """Within this block the models use the plain (reference) PyTorch ops."""
    global _ENABLED
    before, _ENABLED = _ENABLED, not on
    try:
        yield
    finally:
        _ENABLED = before


def enabled(x: torch.Tensor) -> bool:
    return _ENABLED and x.dtype == torch.float32


# ------------------------------------------------------------------------------------- RMSNorm
def _rms_forward(x: torch.Tensor, eps: float, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x is a fresh buffer (scaled in place); returns (y, rstd)."""
    n = x.shape[dim]
    rstd = torch.linalg.vecdot(x, x, dim=dim).unsqueeze(dim).div_(n).add_(eps).rsqrt_()
    return x.mul_(rstd), rstd


class _AddRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, r, eps, dim):
        y, rstd = _rms_forward(h + r, eps, dim)
        ctx.save_for_backward(y, rstd)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, dy):
        y, rstd = ctx.saved_tensors
        dim = ctx.dim
        m = torch.linalg.vecdot(dy, y, dim=dim).unsqueeze(dim).div_(-y.shape[dim])
        dx = torch.addcmul(dy, y, m).mul_(rstd)
        return dx, dx, None, None


def add_rms_norm(h: torch.Tensor, r: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    """Parameter-free RMSNorm of ``h + r`` over axis ``dim`` (the post-norm residual)."""
    if not enabled(h):
        return reference_rms_norm(h + r, eps, dim)
    if torch.is_grad_enabled() and (h.requires_grad or r.requires_grad):
        return _AddRMSNorm.apply(h, r, eps, dim)
    return _rms_forward(h + r, eps, dim)[0]


def reference_rms_norm(x: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    """The official formula: in float32 (float64 stays float64), x * rsqrt(mean(x^2) + eps), cast back."""
    dtype = x.dtype
    x = x.to(torch.promote_types(dtype, torch.float32))
    x = x * torch.rsqrt(x.square().mean(dim, keepdim=True) + eps)
    return x.to(dtype)


# -------------------------------------------------------------------------------------- SwiGLU
def _swiglu_forward(gu: torch.Tensor, dim: int) -> torch.Tensor:
    gate, up = gu.chunk(2, dim)
    return F.silu(gate).mul_(up)


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gu, dim):
        ctx.save_for_backward(gu)
        ctx.dim = dim
        return _swiglu_forward(gu, dim)

    @staticmethod
    def backward(ctx, dp):
        (gu,) = ctx.saved_tensors
        gate, up = gu.chunk(2, ctx.dim)
        dgu = torch.empty_like(gu)
        dgate, dup = dgu.chunk(2, ctx.dim)
        s = F.silu(gate)
        torch.mul(dp, s, out=dup)
        torch.mul(dp, up, out=s)  # s now holds d(silu(gate))
        torch.ops.aten.silu_backward.grad_input(s, gate, grad_input=dgate)
        return dgu, None


def swiglu(gu: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """silu(gate) * up where ``gu`` = [gate | up] along ``dim``."""
    if not enabled(gu):
        gate, up = gu.chunk(2, dim)
        return F.silu(gate) * up
    if torch.is_grad_enabled() and gu.requires_grad:
        return _SwiGLU.apply(gu, dim)
    return _swiglu_forward(gu, dim)


# ---------------------------------------------------------------------------------------- RoPE
def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, sign: float) -> torch.Tensor:
    """out = x*cos + sign*rotate_half(x)*sin, over the last axis (cos/sin broadcast). Each product is
    rounded before the sum, as in the reference (no fused multiply-add), so the result is the same
    to the bit."""
    half = x.shape[-1] // 2
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[..., :half], sin[..., :half]  # rotate-half tables repeat: both halves are equal
    o1, o2 = out[..., :half], out[..., half:]
    tmp = torch.mul(x2, s)
    torch.mul(x1, c, out=o1)
    o1.sub_(tmp) if sign > 0 else o1.add_(tmp)
    torch.mul(x1, s, out=tmp)
    torch.mul(x2, c, out=o2)
    o2.add_(tmp) if sign > 0 else o2.sub_(tmp)
    return out


class _RoPE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin, 1.0)

    @staticmethod
    def backward(ctx, g):
        cos, sin = ctx.saved_tensors
        return _rotate(g, cos, sin, -1.0), None, None  # the rotation's transpose


def rope_qk(qk: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE of ``qk`` (B, S, heads, hd) with cos/sin (S, hd), into a new buffer."""
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    if torch.is_grad_enabled() and qk.requires_grad:
        return _RoPE.apply(qk, cos, sin)
    return _rotate(qk, cos, sin, 1.0)
