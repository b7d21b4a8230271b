"""Building blocks shared by the recursive models, written to match the official TRM/HRM code.

Notable choices (all needed for weight compatibility with the official checkpoints):
- post-norm blocks with a parameter-free RMSNorm (eps 1e-5) computed in float32;
- fused projections: ``qkv_proj`` rows are [Q heads, K heads, V heads], ``gate_up_proj`` rows are
  [gate, up];
- SwiGLU width = round(expansion * n * 2/3) rounded up to a multiple of 256 (``ffn_multiple``,
  smaller for small CPU models: the official rule makes a hidden-64 model's MLP 1.5x wider);
- rotate-half RoPE over prefix + sequence positions, base 10000;
- JAX-style truncated-normal initialisation (LeCun std for linears, 1/sqrt(D) for embeddings).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import fused

# Standard deviation of a standard normal truncated to [-2, 2]; dividing by it makes the
# truncated draw have exactly the requested std (what the official `trunc_normal_init_` does).
_TRUNC2_STD = 0.8796256610342398


def trunc_normal_(t: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``t`` with a normal truncated at +-2 sigma whose *actual* std is ``std``."""
    with torch.no_grad():
        if std == 0:
            return t.zero_()
        nn.init.trunc_normal_(t, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=generator)
        return t.mul_(std / _TRUNC2_STD)


def swiglu_width(n: int, expansion: float, multiple: int = 256) -> int:
    """Inner width of the SwiGLU: round(expansion*n*2/3) up to a multiple of ``multiple`` (the
    official code: 256)."""
    inter = round(expansion * n * 2 / 3)
    return -(inter // -multiple) * multiple


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Parameter-free RMSNorm over the last axis, computed in float32."""
    return fused.reference_rms_norm(x, eps)


class Linear(nn.Module):
    """y = x @ W.T (+ b); weight kept in float32 and cast to the input dtype at use."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features),
                                                 1.0 / math.sqrt(in_features), generator))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


class Embedding(nn.Module):
    """Token embedding table; the official key is ``embedding_weight``."""

    def __init__(self, num: int, dim: int, init_std: float, generator: torch.Generator | None = None):
        super().__init__()
        self.embedding_weight = nn.Parameter(trunc_normal_(torch.empty(num, dim), init_std, generator))

    def forward(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return F.embedding(ids.long(), self.embedding_weight.to(dtype))


class RotaryEmbedding(nn.Module):
    """cos/sin tables of rotate-half RoPE for ``positions`` positions (non-persistent)."""

    def __init__(self, head_dim: int, positions: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)  # (S, head_dim)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, S, H, hd); cos/sin: (S, hd)."""
    dtype = x.dtype
    cos = cos.unsqueeze(-2).to(dtype)
    sin = sin.unsqueeze(-2).to(dtype)
    return x * cos + _rotate_half(x) * sin


class Attention(nn.Module):
    """Non-causal multi-head attention with a fused qkv projection (SDPA: runs on any device).

    As in the official code, head_dim = hidden // num_heads even when that does not divide: the
    projections are sized from num_heads * head_dim (the official transformer baseline config uses
    12 heads at hidden 512: head_dim 42, qkv 512 -> 1512, o 504 -> 512)."""

    def __init__(self, hidden: int, num_heads: int, generator: torch.Generator | None = None):
        super().__init__()
        if not 1 <= num_heads <= hidden:
            raise ValueError(f"num_heads {num_heads} must be in 1..hidden_size {hidden}")
        self.num_heads = num_heads
        self.head_dim = hidden // num_heads
        self.inner = num_heads * self.head_dim
        self.qkv_proj = Linear(hidden, 3 * self.inner, generator=generator)
        self.o_proj = Linear(self.inner, hidden, generator=generator)

    def forward(self, h: torch.Tensor, rope: RotaryEmbedding | None) -> torch.Tensor:
        B, S, D = h.shape
        H = self.num_heads
        qkv = self.qkv_proj(h).view(B, S, 3 * H, self.head_dim)
        if rope is not None and fused.enabled(qkv):
            qk, v = qkv.split([2 * H, H], dim=2)
            q, k = fused.rope_qk(qk, rope.cos[:S], rope.sin[:S]).split(H, dim=2)
        else:
            q, k, v = qkv.split(H, dim=2)  # each (B, S, H, hd)
            if rope is not None:
                q = apply_rope(q, rope.cos[:S], rope.sin[:S])
                k = apply_rope(k, rope.cos[:S], rope.sin[:S])
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.o_proj(out.transpose(1, 2).reshape(B, S, self.inner))


def grid_conv(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Depthwise k x k convolution (k odd, zero padding) of (B, P + side*side, C) over its side x side
    grid after a P-token prefix; a prefix token has no neighbour and gets the centre tap."""
    P, side = grid
    k = w.shape[-1]
    B, _, C = h.shape
    g = h[:, P:].reshape(B, side, side, C).permute(0, 3, 1, 2)
    g = F.conv2d(g, w, b, padding=k // 2, groups=C).permute(0, 2, 3, 1).reshape(B, side * side, C)
    if not P:
        return g
    return torch.cat((h[:, :P] * w[:, 0, k // 2, k // 2] + b, g), dim=1)


def _init_depthwise(conv: nn.Module, fan_in: int, generator: torch.Generator | None) -> None:
    """PyTorch's default init of a depthwise convolution, drawn from our generator."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        conv.weight.copy_((torch.rand(conv.weight.shape, generator=generator) * 2 - 1) * bound)
        conv.bias.copy_((torch.rand(conv.bias.shape, generator=generator) * 2 - 1) * bound)


class ConvMixer(nn.Module):
    """A local token mixer: a depthwise k x k convolution over the puzzle's 2-D grid (see
    :func:`grid_conv`), in place of attention or the MLP over tokens; channels are mixed by the
    block's SwiGLU after it (the ConvNeXt / ConvMixer layout)."""

    def __init__(self, hidden: int, kernel: int, grid: tuple[int, int], generator: torch.Generator | None = None):
        super().__init__()
        self.grid = grid
        self.dwconv = nn.Conv2d(hidden, hidden, kernel, groups=hidden, padding=kernel // 2)
        _init_depthwise(self.dwconv, kernel * kernel, generator)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return grid_conv(h, self.dwconv.weight.to(h.dtype), self.dwconv.bias.to(h.dtype), self.grid)


class GroupMixer(nn.Module):
    """A token mixer over the rules' groups of cells: each cell takes the mean of every group it
    belongs to (Sudoku: its row, its column, its box), one learned per-channel weight per kind of
    group and one for itself, plus a bias; a prefix token sees only itself. The block's channel
    SwiGLU after it mixes the channels, as after :class:`ConvMixer`. One matmul with a fixed
    (kinds x cells, cells) averaging matrix."""

    def __init__(self, hidden: int, groups: tuple[int, tuple[tuple[int, ...], ...]],
                 generator: torch.Generator | None = None):
        super().__init__()
        P, kinds = groups
        self.prefix = P
        ids = torch.tensor(kinds, dtype=torch.long)  # (K, cells)
        same = (ids[:, :, None] == ids[:, None, :]).float()  # (K, cells, cells)
        mean = same / same.sum(-1, keepdim=True)
        self.register_buffer("mean", mean.reshape(-1, ids.shape[1]), persistent=False)  # (K * cells, cells)
        self.kinds = ids.shape[0]
        # Stored as a depthwise filter with K + 1 taps, (C, 1, K + 1), initialised like one, so that an
        # optimiser treats it as it treats the convolution kernels (Muon: AdamW, not orthogonalised).
        bound = 1.0 / math.sqrt(self.kinds + 1)
        self.weight = nn.Parameter((torch.rand(hidden, 1, self.kinds + 1, generator=generator) * 2 - 1) * bound)
        self.bias = nn.Parameter((torch.rand(hidden, generator=generator) * 2 - 1) * bound)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        P, K = self.prefix, self.kinds
        w, b = self.weight[:, 0].t().to(h.dtype), self.bias.to(h.dtype)  # (K + 1, C)
        cells = h[:, P:]
        B, L, C = cells.shape
        means = torch.matmul(self.mean.to(h.dtype), cells).view(B, K, L, C)  # (B, K, L, C)
        out = torch.einsum("bklc,kc->blc", means, w[:K]) + cells * w[K] + b
        if not P:
            return out
        return torch.cat((h[:, :P] * w[K] + b, out), dim=1)


class SwiGLU(nn.Module):
    """SwiGLU over the last axis of width ``n`` (gate first in ``gate_up_proj``).

    ``conv_kernel`` > 0 makes it URM's ConvSwiGLU (arXiv 2512.14693; ``UbiquantAI/URM``
    ``models/layers.py``): after silu(gate) * up, a depthwise convolution over the token axis
    (kernel k, padding k // 2, the first L outputs kept: with URM's k = 2 token t sees t-1 and t),
    then SiLU, then ``down_proj``.

    ``conv_grid = (P, side)`` makes the convolution two-dimensional over the puzzle's own grid: the
    L - P tokens after a P-token prefix are a side x side grid, each sees its k x k neighbourhood
    (k odd; zero padding at the borders); a prefix token has no neighbour and gets the centre tap.
    ``conv_dtype``: "bfloat16" as official URM (the conv, its SiLU and down_proj in bfloat16 whatever
    the forward dtype), or "forward" (the model's forward dtype: bfloat16 arithmetic is ~100x slower
    than float32 on CPUs without AVX512-BF16)."""

    def __init__(self, n: int, expansion: float, generator: torch.Generator | None = None, multiple: int = 256,
                 conv_kernel: int = 0, conv_grid: tuple[int, int] | None = None, conv_dtype: str = "bfloat16"):
        super().__init__()
        inter = swiglu_width(n, expansion, multiple)
        self.gate_up_proj = Linear(n, 2 * inter, generator=generator)
        self.down_proj = Linear(inter, n, generator=generator)
        self.conv_kernel = conv_kernel
        self.conv_grid = conv_grid
        self.conv_bf16 = conv_dtype == "bfloat16"
        if conv_kernel:
            if conv_grid is None:
                self.dwconv = nn.Conv1d(inter, inter, conv_kernel, groups=inter, padding=conv_kernel // 2)
                fan_in = conv_kernel
            else:
                self.dwconv = nn.Conv2d(inter, inter, conv_kernel, groups=inter, padding=conv_kernel // 2)
                fan_in = conv_kernel * conv_kernel
            _init_depthwise(self.dwconv, fan_in, generator)

    def _conv(self, h: torch.Tensor) -> torch.Tensor:
        """The depthwise convolution of (B, L, C) -> (B, L, C), in h's dtype."""
        w, b = self.dwconv.weight.to(h.dtype), self.dwconv.bias.to(h.dtype)
        if self.conv_grid is None:
            k = self.conv_kernel
            L = h.shape[-2]
            c = F.conv1d(h.transpose(-1, -2), w, b, padding=k // 2, groups=h.shape[-1])
            return c[..., :L].transpose(-1, -2)
        return grid_conv(h, w, b, self.conv_grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = fused.swiglu(self.gate_up_proj(x))
        if self.conv_kernel:
            if self.conv_bf16:
                # As official URM: the convolution (stored in bfloat16 there), its SiLU and down_proj run
                # in bfloat16 whatever the forward dtype; the block's residual add is back in its dtype.
                h = F.silu(self._conv(h.to(torch.bfloat16))).contiguous()
                return self.down_proj(h).to(x.dtype)  # the residual add promotes back, as official
            return self.down_proj(F.silu(self._conv(h)).contiguous())
        return self.down_proj(h)


class Block(nn.Module):
    """Post-norm block: token mixer (attention, or SwiGLU over the token axis) then channel SwiGLU.

    With ``mlp_t`` the token mixer normalises over the *sequence* axis, as the official code does.
    With ``mixer_kernel`` (and ``mixer_grid``) the token mixer is a :class:`ConvMixer`; with
    ``mixer_groups`` a :class:`GroupMixer`.
    """

    def __init__(self, hidden: int, num_heads: int, expansion: float, seq_positions: int,
                 mlp_t: bool, eps: float, generator: torch.Generator | None = None, ffn_multiple: int = 256,
                 conv_kernel: int = 0, conv_grid: tuple[int, int] | None = None, conv_dtype: str = "bfloat16",
                 mixer_kernel: int = 0, mixer_grid: tuple[int, int] | None = None,
                 mixer_groups: tuple[int, tuple[tuple[int, ...], ...]] | None = None):
        super().__init__()
        self.eps = eps
        if mixer_groups is not None:
            self.group_mixer = GroupMixer(hidden, mixer_groups, generator)
        elif mixer_kernel:
            assert mixer_grid is not None
            self.conv_mixer = ConvMixer(hidden, mixer_kernel, mixer_grid, generator)
        elif mlp_t:
            self.mlp_t = SwiGLU(seq_positions, expansion, generator, ffn_multiple)
        else:
            self.self_attn = Attention(hidden, num_heads, generator)
        self.mlp = SwiGLU(hidden, expansion, generator, ffn_multiple, conv_kernel, conv_grid, conv_dtype)

    def forward(self, h: torch.Tensor, rope: RotaryEmbedding | None) -> torch.Tensor:
        if hasattr(self, "group_mixer"):
            h = fused.add_rms_norm(h, self.group_mixer(h), self.eps)
        elif hasattr(self, "conv_mixer"):
            h = fused.add_rms_norm(h, self.conv_mixer(h), self.eps)
        elif hasattr(self, "mlp_t"):
            t = h.transpose(1, 2)  # (B, D, S)
            h = fused.add_rms_norm(t, self.mlp_t(t), self.eps).transpose(1, 2)
        else:
            h = fused.add_rms_norm(h, self.self_attn(h, rope), self.eps)
        return fused.add_rms_norm(h, self.mlp(h), self.eps)


class ReasoningModule(nn.Module):
    """f(h, inj): add the injection (if any), then apply the blocks in order."""

    def __init__(self, blocks: list[Block]):
        super().__init__()
        self.layers = nn.ModuleList(blocks)

    def forward(self, h: torch.Tensor, inj: torch.Tensor | None, rope: RotaryEmbedding | None) -> torch.Tensor:
        if inj is not None:
            h = h + inj
        for layer in self.layers:
            h = layer(h, rope)
        return h


class PuzzleEmbedding(nn.Module):
    """Per-puzzle-identifier embedding, stored as a buffer and trained by sparse sign-SGD.

    As in the official code the table is a (persistent) buffer, not a parameter: in training the
    rows of the batch are copied into a leaf tensor ``local_weights`` that receives the gradient,
    and :class:`recursa.training.optim.SignSGDSparse` applies it to the touched rows only. That
    keeps the optimiser cost proportional to the batch, not to the (possibly ~1M-row) table.
    """

    def __init__(self, num_ids: int, dim: int):
        super().__init__()
        self.register_buffer("weights", torch.zeros(num_ids, dim), persistent=True)
        self.local_weights: torch.Tensor | None = None
        self.local_ids: torch.Tensor | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self.weights[ids]
        local = self.weights[ids].detach().requires_grad_(True)
        self.local_weights, self.local_ids = local, ids
        return local
