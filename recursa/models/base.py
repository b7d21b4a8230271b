"""What every recursive model shares: the data spec, the token model (input embedding with the
puzzle prefix and positions, the output and halting heads) and the recursion state, one tensor
(single-latent TRM, baseline) or two (TRM's y and z, HRM's z_H and z_L), started from fixed
random init vectors. Module and buffer names equal the official ones, so weights map 1:1."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import RecursaError
from .layers import Block, Embedding, Linear, PuzzleEmbedding, RotaryEmbedding, trunc_normal_

#: |log-odds| cap of :func:`answer_log_odds`: sigmoid(40) is 1 - 4e-18, past every threshold, and
#: the halting loss's BCE stays finite.
ANSWER_LOG_ODDS_CAP = 40.0


def answer_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """(B, L, V) logits -> (B,) log(P / (1 - P)), P = prod over the L cells of the top softmax
    probability: the model's probability of its own (argmax) answer if the cells were independent.

    Computed so that a confident answer keeps its precision in float32 (no float64: MPS has none):
    log p_top = -log1p(sum of exp(l_j - l_top) over the other classes), summed over the cells,
    and log(1 - P) = log(-expm1(log P)). Capped at +-:data:`ANSWER_LOG_ODDS_CAP`."""
    x = logits.float()
    top, idx = x.max(-1, keepdim=True)
    rest = torch.exp(x - top).scatter(-1, idx, 0.0).sum(-1)  # the other classes, relative to the top one
    log_p = -torch.log1p(rest).sum(-1)  # (B,) log P, <= 0
    log_odds = log_p - torch.log(-torch.expm1(log_p))  # log P = 0 gives +inf before the cap
    return log_odds.clamp(-ANSWER_LOG_ODDS_CAP, ANSWER_LOG_ODDS_CAP)


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its dataset (from ``dataset.json``), and the puzzle's grid
    (rows, cols) as its task declares it (:attr:`recursa.tasks.base.Task.grid`; not stored in a
    checkpoint's spec: its task gives it). Without one (synthetic data, no task.json) a grid-local
    mixer takes the cells as a square grid."""

    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    grid: tuple[int, int] | None = None
    #: The task's groups of cells (:attr:`recursa.tasks.base.Task.groups`), for ``model.group_mixer``.
    groups: tuple[tuple[int, ...], ...] | None = None

    def to_dict(self) -> dict:
        """What a checkpoint records (the grid and the groups are its task's)."""
        return {"vocab_size": self.vocab_size, "seq_len": self.seq_len,
                "num_puzzle_identifiers": self.num_puzzle_identifiers}


class TokenModel(nn.Module):
    """Input embedding (tokens + puzzle prefix + positions) and the two heads, shared by TRM and
    the baseline so both have identical embedding/head parameters."""

    def __init__(self, cfg: ModelConfig, spec: DataSpec, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg, self.spec = cfg, spec
        D = cfg.hidden_size
        self.prefix_len = self.prefix_positions(cfg)
        self.positions = spec.seq_len + self.prefix_len
        self.embed_scale = math.sqrt(D)
        if cfg.forward_dtype == "auto":
            raise RecursaError('model.forward_dtype = "auto" is chosen when training starts (recursa train); '
                               "a model is built in float32 or bfloat16")
        self.dtype = getattr(torch, cfg.forward_dtype)
        self.embed_tokens = Embedding(spec.vocab_size, D, 1.0 / self.embed_scale, generator)
        self.lm_head = Linear(D, spec.vocab_size, generator=generator)
        self.q_head = Linear(D, 2, bias=True, generator=generator)
        with torch.no_grad():  # halting starts "never halt": sigmoid(-5) ~ 0.007
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)
        if cfg.emb_ndim > 0:
            self.puzzle_emb = PuzzleEmbedding(spec.num_puzzle_identifiers, cfg.emb_ndim)
        self.rotary_emb = None
        if cfg.pos_encodings == "rope" and not cfg.attention_free:  # rotary acts inside attention only
            self.rotary_emb = RotaryEmbedding(D // cfg.num_heads, self.positions, cfg.rope_theta)
        elif cfg.pos_encodings == "learned":
            self.embed_pos = Embedding(self.positions, D, 1.0 / self.embed_scale, generator)

    #: (H_cycles, L_cycles) to run instead of the config's: a training depth curriculum
    #: (``train.depth_curriculum``) sets it; None (evaluation, checkpoints) = the config's depth.
    depth: tuple[int, int] | None = None

    #: The puzzle-embedding prefix always takes ceil(puzzle_emb_ndim / hidden_size) positions
    #: (HRM, the baseline, URM), or ``model.puzzle_emb_len`` when given (TRM).
    fixed_prefix = False
    #: Halting rule: q_halt > q_continue (the official baseline, HRM ACT-V2 lineage), or (False)
    #: q_halt > 0 unless ``model.q_continue``.
    halts_on_compare = False

    @classmethod
    def prefix_positions(cls, cfg: ModelConfig) -> int:
        """Positions the puzzle-embedding prefix takes in this architecture."""
        if cfg.emb_ndim == 0:
            return 0
        ceil = -(cfg.emb_ndim // -cfg.hidden_size)
        return ceil if cls.fixed_prefix else (cfg.puzzle_emb_len or ceil)

    def calls_per_step(self) -> int:
        """Network applications per supervision step and row, at the current depth: each
        architecture declares its own (the engine's and the sweep's compute counts read it)."""
        raise NotImplementedError(f"{type(self).__name__} does not declare its network calls per supervision step")

    @property
    def H_cycles(self) -> int:
        return self.depth[0] if self.depth is not None else self.cfg.H_cycles

    @property
    def L_cycles(self) -> int:
        return self.depth[1] if self.depth is not None else self.cfg.L_cycles

    def recur(self, cycle, state):
        """Run ``cycle(state) -> state`` H_cycles times: all but the last ``grad_cycles`` without
        gradient (TRM: only the last cycle is back-propagated)."""
        H = self.H_cycles
        grad = min(self.cfg.grad_cycles, H)
        with torch.no_grad():
            for _ in range(H - grad):
                state = cycle(state)
        for _ in range(grad):
            state = cycle(state)
        return state

    def make_blocks(self, n: int, generator: torch.Generator | None) -> list[Block]:
        c = self.cfg
        grid = None
        if c.conv_2d or c.conv_mixer:
            grid = (self.prefix_len, self._grid_side("model.conv_mixer" if c.conv_mixer else "model.conv_2d"))
        groups = self._groups() if c.group_mixer else None
        return [Block(c.hidden_size, c.num_heads, c.expansion, self.positions, c.mlp_t, c.rms_norm_eps, generator,
                      c.ffn_multiple, c.conv_swiglu, grid if c.conv_2d else None, c.conv_dtype,
                      c.conv_mixer, grid if c.conv_mixer else None, groups)
                for _ in range(n)]

    def _groups(self) -> tuple[int, tuple[tuple[int, ...], ...]]:
        """(prefix length, the task's groups of cells) for ``model.group_mixer``, checked."""
        cells = self.positions - self.prefix_len
        groups = self.spec.groups
        if not groups:
            raise RecursaError("model.group_mixer: the puzzle family declares no groups of cells (Sudoku's rows, "
                               "columns and boxes); use attention, mlp_t or conv_mixer")
        for kind in groups:
            if len(kind) != cells:
                raise RecursaError(f"model.group_mixer: the task's groups cover {len(kind)} cells, but the puzzle "
                                   f"has {cells}")
        return self.prefix_len, groups

    def _grid_side(self, key: str) -> int:
        """The side of the puzzle's square grid: the task's (``spec.grid``), else the square root
        of the cell count."""
        cells = self.positions - self.prefix_len
        hint = "" if key == "model.conv_mixer" else "; use the 1-D convolution (conv_2d = false)"
        if self.spec.grid is not None:
            rows, cols = self.spec.grid
            if rows * cols != cells:
                raise RecursaError(f"{key}: the task's grid is {rows}x{cols}, but the puzzle has {cells} cells")
            if rows != cols:
                raise RecursaError(f"{key}: the task's grid is {rows}x{cols}; the grid convolution needs a square grid{hint}")
            return rows
        side = math.isqrt(cells)
        if side * side != cells:
            raise RecursaError(f"{key}: the puzzle has {cells} cells, not a square grid{hint}")
        return side

    def embed(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor) -> torch.Tensor:
        """x = sqrt(D) * [puzzle prefix ; token embeddings]  -> (B, P + L, D)."""
        dtype = self.dtype
        x = self.embed_tokens(inputs, dtype)
        if self.prefix_len:
            B, D = x.shape[0], self.cfg.hidden_size
            pe = self.puzzle_emb(puzzle_identifiers.long()).to(dtype)  # (B, ndim)
            pad = self.prefix_len * D - pe.shape[-1]
            if pad > 0:
                pe = torch.nn.functional.pad(pe, (0, pad))
            x = torch.cat((pe.view(B, self.prefix_len, D), x), dim=1)
        if self.cfg.pos_encodings == "learned":
            x = 0.707106781 * (x + self.embed_pos.embedding_weight.to(dtype))
        return (self.embed_scale * x).to(dtype)

    def heads(self, z_H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (B, L, V), q_halt (B,), q_continue (B,)); q read at position 0, in float32;
        q_halt is the answer's log-odds instead with ``halt_signal = "answer"``."""
        logits = self.lm_head(z_H)[:, self.prefix_len:]
        q_in = z_H[:, 0].detach() if self.cfg.halt_detach else z_H[:, 0]
        q = self.q_head(q_in).float()
        if self.cfg.halt_signal == "answer":
            return logits, answer_log_odds(logits.detach()), q[..., 1]
        return logits, q[..., 0], q[..., 1]


class InitStateModel(TokenModel):
    """A TokenModel whose recursion state is a tuple of tensors, each starting from its own fixed
    (not learned) random init vector, broadcast over positions. ``init_names`` are the buffers'
    names, in state order (the official names, so weights map 1:1)."""

    init_names: tuple[str, ...] = ()

    def add_init_vectors(self, generator: torch.Generator | None) -> None:
        for name in self.init_names:
            self.register_buffer(name, trunc_normal_(torch.empty(self.cfg.hidden_size), 1.0, generator))

    def initial_state(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        shape = (batch_size, self.positions, self.cfg.hidden_size)
        return tuple(getattr(self, n).to(device, self.dtype).expand(shape).clone() for n in self.init_names)

    def reset_state(self, state: tuple[torch.Tensor, ...], reset: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rows where ``reset`` is true restart from the init vectors."""
        m = reset.view(-1, 1, 1)
        return tuple(torch.where(m, getattr(self, n).to(z.dtype), z) for n, z in zip(self.init_names, state))


class TwoStateModel(InitStateModel):
    """A two-tensor recursion state (z_H, z_L): TRM's y and z, HRM's z_H and z_L."""

    init_names = ("H_init", "L_init")

    def __init__(self, cfg: ModelConfig, spec: DataSpec, generator: torch.Generator | None = None):
        super().__init__(cfg, spec, generator)
        self.add_init_vectors(generator)


class OneStateModel(InitStateModel):
    """A one-tensor recursion state z, starting from the init vector named ``init_name`` (the
    official buffer name of each model). Subclasses call ``add_init_vector`` once their networks
    exist (the order in which the seeded generator draws them)."""

    init_name = "L_init"

    @property
    def init_names(self) -> tuple[str, ...]:
        return (self.init_name,)

    def add_init_vector(self, generator: torch.Generator | None) -> None:
        self.add_init_vectors(generator)
