"""The official TRM code, driven the way its own loops drive it, for side-by-side benchmarks.

``recursa bench train|infer --official DIR`` measures recursa against a checkout of the official
TinyRecursiveModels repository (``git clone`` it anywhere; it needs ``pydantic`` and ``einops``).
Nothing of it is copied into recursa: its modules are imported from ``DIR`` at run time.

The driver reproduces the official loops on the preset's model and synthetic batch:

- training (``pretrain.train_batch``): one ACT forward through ``ACTLossHead`` with the carry
  kept, backward of ``loss / batch``, AdamW (the official AdamATan2 needs a CUDA build; recursa's
  side uses the same AdamW) and the official sign-SGD step of the sparse puzzle embedding, then the
  metrics stacked and copied to the host;
- inference (``pretrain.evaluate``): eval mode under ``torch.inference_mode``, a fresh carry, the
  loss head called until every row has halted (``halt_max_steps`` steps).

:func:`same_math` builds both models with the same weights and checks that one supervision
step gives the same logits and states, so the two sides of a comparison compute the same thing.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from .. import config as config_mod
from ..errors import RecursaError
from ..models import DataSpec, build_model

SEQ_LEN, VOCAB, NUM_IDS = 81, 11, 2
TRM_FILE = Path("models/recursive_reasoning/trm.py")


def load_official(root: Path) -> SimpleNamespace:
    """Import the official TRM model, loss head and sparse-embedding optimiser from ``root``."""
    root = Path(root).resolve()
    if not (root / TRM_FILE).is_file():
        raise RecursaError(f"--official {root}: not a checkout of the official TinyRecursiveModels code "
                           f"(no {TRM_FILE})")
    loaded = sys.modules.get("models")
    if loaded is not None:
        where = [str(getattr(loaded, "__file__", None) or "")] + [str(x) for x in getattr(loaded, "__path__", [])]
        if not any(w.startswith(str(root)) for w in where if w):
            raise RecursaError(f"--official {root}: another package named 'models' is already imported "
                               f"({', '.join(w for w in where if w) or '?'})")
    sys.path.insert(0, str(root))
    try:
        trm = importlib.import_module("models.recursive_reasoning.trm")
        losses = importlib.import_module("models.losses")
        sparse = importlib.import_module("models.sparse_embedding")
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("pydantic", "einops"):
            raise RecursaError(f"--official: the official code needs {e.name.split('.')[0]} "
                               "(pip install pydantic einops)") from None
        raise RecursaError(f"--official {root}: cannot import the official code ({e})") from None
    finally:
        sys.path.remove(str(root))
    return SimpleNamespace(trm=trm, losses=losses, sparse=sparse)


def official_config(model: dict, batch: int, dtype: str) -> dict:
    """The official ``arch`` fields of a bench preset's model (recursa names map 1:1)."""
    if model.get("ffn_multiple", 256) != 256:
        raise RecursaError("--official: the official code rounds the SwiGLU width to a multiple of 256 only")
    return dict(batch_size=batch, seq_len=SEQ_LEN, vocab_size=VOCAB, num_puzzle_identifiers=NUM_IDS,
                puzzle_emb_ndim=model["hidden_size"] if model["puzzle_emb_ndim"] == -1 else model["puzzle_emb_ndim"],
                puzzle_emb_len=model["puzzle_emb_len"], H_cycles=model["H_cycles"], L_cycles=model["L_cycles"],
                H_layers=0, L_layers=model["L_layers"], hidden_size=model["hidden_size"],
                expansion=model["expansion"], num_heads=model["num_heads"], pos_encodings=model["pos_encodings"],
                halt_max_steps=model["halt_max_steps"], halt_exploration_prob=model["halt_exploration_prob"],
                forward_dtype=dtype, mlp_t=model["mlp_t"])


class OfficialDriver:
    """One official TRM with its loss head and optimisers, on one fixed batch."""

    def __init__(self, root: Path, model: dict, batch: int, dtype: str, device: torch.device,
                 data: dict[str, torch.Tensor], train: dict):
        """``train``: the optimiser settings recursa's side of the bench uses (recursa.tools.bench.TRAIN)."""
        mods = load_official(root)
        with torch.device(device):
            self.model = mods.trm.TinyRecursiveReasoningModel_ACTV1(official_config(model, batch, dtype))
        self.head = mods.losses.ACTLossHead(self.model, "stablemax_cross_entropy")
        self.opt = torch.optim.AdamW(self.head.parameters(), lr=train["lr"], betas=(train["beta1"], train["beta2"]),
                                     weight_decay=train["weight_decay"])
        self.sparse = mods.sparse.CastedSparseEmbeddingSignSGD_Distributed(
            self.model.puzzle_emb.buffers(), world_size=1, lr=train["puzzle_emb_lr"],
            weight_decay=train["puzzle_emb_weight_decay"])
        self.data, self.batch, self.device = data, batch, device
        self.carry = None
        self.n_params = sum(p.numel() for p in self.model.parameters())

    def train_step(self) -> None:
        """``pretrain.train_batch`` without the distributed parts and the LR schedule (constant)."""
        self.head.train()
        with torch.device(self.device):
            if self.carry is None:
                self.carry = self.head.initial_carry(self.data)
        self.carry, loss, metrics, _, _ = self.head(carry=self.carry, batch=self.data, return_keys=[])
        ((1 / self.batch) * loss).backward()
        for opt in (self.opt, self.sparse):
            opt.step()
            opt.zero_grad()
        torch.stack([metrics[k] for k in sorted(metrics)]).cpu().numpy()

    def solve(self) -> None:
        """``pretrain.evaluate`` for one batch: fresh carry, steps until every row halted."""
        self.head.eval()
        with torch.inference_mode(), torch.device(self.device):
            carry = self.head.initial_carry(self.data)
            while True:
                carry, _, _, _, finished = self.head(carry=carry, batch=self.data, return_keys=set())
                if finished:
                    break


def same_math(root: Path, model: dict, batch: dict[str, torch.Tensor], dtype: str = "float32") -> dict:
    """Both implementations with the same weights (recursa's, puzzle embeddings made non-zero), one
    supervision step in eval mode: the largest absolute differences of logits, q_halt, z_H, z_L."""

    mods = load_official(root)
    cfg = config_mod.ModelConfig(**{**model, "forward_dtype": dtype})
    ours = build_model(cfg, DataSpec(VOCAB, SEQ_LEN, NUM_IDS), seed=0).eval()
    with torch.no_grad():
        emb = ours.inner.puzzle_emb.weights
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(1)))
    theirs = mods.trm.TinyRecursiveReasoningModel_ACTV1(official_config(model, batch["inputs"].shape[0], dtype)).eval()
    missing, unexpected = theirs.inner.load_state_dict(ours.inner.state_dict(), strict=False)
    if missing or unexpected:
        raise RecursaError(f"--official: the weights do not map 1:1 (missing {missing}, unexpected {unexpected})")
    with torch.inference_mode():
        carry, out = ours(ours.initial_carry(batch), batch)
        c2, out2 = theirs(theirs.initial_carry(batch), batch)
    pairs = {"logits": (out["logits"], out2["logits"]), "q_halt": (out["q_halt_logits"], out2["q_halt_logits"]),
             "z_H": (carry.state[0], c2.inner_carry.z_H), "z_L": (carry.state[1], c2.inner_carry.z_L)}
    return {k: float((a.float() - b.float()).abs().max()) for k, (a, b) in pairs.items()}
