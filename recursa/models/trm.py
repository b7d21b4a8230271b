"""Tiny Recursive Model (TRM, arXiv 2510.04871), its single-latent ablation and the transformer baseline.

The recursion follows the official ``TinyRecursiveReasoningModel_ACTV1`` inner step exactly.
In the code's names, z_H is the paper's answer y and z_L its latent z; one network ``L_level``
(``L_layers`` blocks) performs both updates:

    for each of the H_cycles - 1 first cycles, without gradient:
        repeat L_cycles times:  z_L <- f(z_L, z_H + x)      # refine the latent
        z_H <- f(z_H, z_L)                                    # refine the answer
    one last cycle, the same, with gradient (full back-prop through n+1 network calls)

Outputs: token logits from z_H after the puzzle prefix; halting logits (q_halt, q_continue) from
z_H at position 0. The state is returned detached, so every supervision step is its own graph.
Module and buffer names equal the official ones (``embed_tokens.embedding_weight``,
``L_level.layers.0.self_attn.qkv_proj.weight``, ``H_init``...), so official weights map 1:1.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from .base import DataSpec, InitStateModel, OneStateModel, TwoStateModel
from .layers import ReasoningModule


class TRM(TwoStateModel):
    """The TRM inner model: ``forward(state, batch) -> (state, logits, q_halt, q_continue)``."""

    def __init__(self, cfg: ModelConfig, spec: DataSpec, generator: torch.Generator | None = None):
        super().__init__(cfg, spec, generator)
        self.L_level = ReasoningModule(self.make_blocks(cfg.L_layers, generator))

    def calls_per_step(self) -> int:
        """H_cycles x (L_cycles latent updates + 1 answer update) calls of the one network."""
        return self.H_cycles * (self.L_cycles + 1)

    def forward(self, state, batch):
        rope = self.rotary_emb
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"])

        def cycle(s):
            z_H, z_L = s
            for _ in range(self.L_cycles):
                z_L = self.L_level(z_L, z_H + x, rope)
            return self.L_level(z_H, z_L, rope), z_L

        # The last cycle (grad_cycles of them) carries the gradient.
        z_H, z_L = self.recur(cycle, state)
        logits, q_halt, q_continue = self.heads(z_H)
        return (z_H.detach(), z_L.detach()), logits, q_halt, q_continue


class MultiLatentTRM(InitStateModel):
    """The multi-latent ablation of the TRM paper (official ``trm_hier6``, K = ``latents`` = 6):
    the state is (y, z_1..z_K). Per cycle, latent update i = 1..n replaces z_i with
    f(z_1 + ... + z_K, y + x) (so n <= K; latents beyond n keep their init values), then
    y <- f(y, z_1 + ... + z_K). Cycles as TRM: all but the last without gradient; heads read y.
    Buffers ``H_init``, ``L1_init``..``LK_init`` as official; the sum is taken left to right, as
    official, so results match to the bit."""

    def __init__(self, cfg: ModelConfig, spec: DataSpec, generator: torch.Generator | None = None):
        super().__init__(cfg, spec, generator)
        self.L_level = ReasoningModule(self.make_blocks(cfg.L_layers, generator))
        self.init_names = ("H_init", *(f"L{i + 1}_init" for i in range(cfg.latents)))
        self.add_init_vectors(generator)

    def cycle(self, z_H: torch.Tensor, z_L: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        rope = self.rotary_emb
        for i in range(self.L_cycles):
            z_L[i] = self.L_level(_total(z_L), z_H + x, rope)
        return self.L_level(z_H, _total(z_L), rope)

    def calls_per_step(self) -> int:
        """H_cycles x (L_cycles latent updates + 1 answer update) calls of the one network."""
        return self.H_cycles * (self.L_cycles + 1)

    def forward(self, state, batch):
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"])
        z_H, z_L = state[0], list(state[1:])
        z_H = self.recur(lambda h: self.cycle(h, z_L, x), z_H)
        logits, q_halt, q_continue = self.heads(z_H)
        return (z_H.detach(), *(z.detach() for z in z_L)), logits, q_halt, q_continue


def _total(zs: list[torch.Tensor]) -> torch.Tensor:
    out = zs[0]
    for z in zs[1:]:
        out = out + z
    return out


class SingleLatentTRM(OneStateModel):
    """The single-latent ablation of the TRM paper (official ``trm_singlez``): the answer and the
    latent are one state z. Per cycle: n times z <- f(z + x), then z <- f(z) (no injection);
    all cycles but the last without gradient; heads read z. Only ``L_init`` exists, as official."""

    def __init__(self, cfg: ModelConfig, spec: DataSpec, generator: torch.Generator | None = None):
        super().__init__(cfg, spec, generator)
        self.L_level = ReasoningModule(self.make_blocks(cfg.L_layers, generator))
        self.add_init_vector(generator)

    def cycle(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        rope = self.rotary_emb
        for _ in range(self.L_cycles):
            z = self.L_level(z, x, rope)
        return self.L_level(z, None, rope)

    def calls_per_step(self) -> int:
        """H_cycles x (L_cycles updates with x + 1 without) calls of the one network."""
        return self.H_cycles * (self.L_cycles + 1)

    def forward(self, state, batch):
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"])
        z = self.recur(lambda z: self.cycle(z, x), state[0])
        logits, q_halt, q_continue = self.heads(z)
        return (z.detach(),), logits, q_halt, q_continue


class Baseline(OneStateModel):
    """The official transformer baseline (``transformers_baseline``, HRM ACT-V2 without the
    hierarchy): one stack ``H_level`` of ``baseline_layers`` blocks (0 = ``L_layers``, the same
    parameter count as TRM; the paper's run uses 8), applied once per supervision step as
    z <- H_level(z + x), with z starting from the fixed ``H_init`` vector. No cycles inside a step.

    With ``halt_max_steps = 1`` it is a plain non-recursive transformer (the demo's comparison);
    with more, z is carried across supervision steps as in the official code."""

    fixed_prefix = True
    halts_on_compare = True

    init_name = "H_init"

    def __init__(self, cfg: ModelConfig, spec: DataSpec, generator: torch.Generator | None = None):
        super().__init__(cfg, spec, generator)
        self.H_level = ReasoningModule(self.make_blocks(cfg.baseline_layers or cfg.L_layers, generator))
        self.add_init_vector(generator)

    def calls_per_step(self) -> int:
        """One call of its stack: no cycles inside a step."""
        return 1

    def forward(self, state, batch):
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"])
        z = self.H_level(state[0], x, self.rotary_emb)
        logits, q_halt, q_continue = self.heads(z)
        return (z.detach(),), logits, q_halt, q_continue


class URM(OneStateModel):
    """The Universal Reasoning Model (arXiv 2512.14693, ``UbiquantAI/URM`` ``models/urm/urm.py``): one
    hidden state h from the fixed ``init_hidden`` vector; ``L_layers`` shared post-norm blocks
    (attention + RoPE, ConvSwiGLU with ``conv_swiglu`` = 2 in the paper) named ``layers.{i}`` as
    official. Per supervision step: (H_cycles - 1) x L_cycles repeats of [h <- h + x; h <- blocks(h)]
    without gradient, then L_cycles repeats with gradient (``grad_cycles`` > 1 extends it over whole
    cycles); heads read h. The puzzle prefix is ceil(ndim / D) positions, as official."""

    fixed_prefix = True

    init_name = "init_hidden"

    def __init__(self, cfg: ModelConfig, spec: DataSpec, generator: torch.Generator | None = None):
        super().__init__(cfg, spec, generator)
        self.layers = torch.nn.ModuleList(self.make_blocks(cfg.L_layers, generator))
        self.add_init_vector(generator)

    def cycle(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        rope = self.rotary_emb
        for _ in range(self.L_cycles):
            h = h + x
            for layer in self.layers:
                h = layer(h, rope)
        return h

    def calls_per_step(self) -> int:
        """H_cycles x L_cycles calls of its block stack."""
        return self.H_cycles * self.L_cycles

    def forward(self, state, batch):
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"])
        h = self.recur(lambda h: self.cycle(h, x), state[0])
        logits, q_halt, q_continue = self.heads(h)
        return (h.detach(),), logits, q_halt, q_continue
