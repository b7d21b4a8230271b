"""Adapt a trained ARC model to tasks it never saw (``recursa adapt``).

A TRM/HRM answers an ARC task through the puzzle embedding of each of the task's augmented
versions; a task absent from training has none. ``adapt`` makes the protocol explicit: the new
tasks' **demonstration pairs only** are used at test time.

1. The new tasks are built as in ``recursa build arc`` (dihedral transform + colour permutation
   versions, translated demonstrations), their versions numbered after the checkpoint's rows.
   This is the adaptation dataset (``--data-out``): training split = the versions'
   demonstration pairs, test split = their test inputs, ``test_puzzles.json`` = the outputs when
   known (a solutions file, or outputs inside the tasks file; else unscored, submission only).
2. The checkpoint's puzzle-embedding table grows by those rows (zero, as the official code starts
   every row, which is also the blank identifier's embedding: ``--steps 0`` is the no-adaptation
   baseline), and only those rows are fitted on the demonstrations with the official sparse
   sign-SGD, the network frozen; ``--full-model`` also fine-tunes the network with AdamW at a small
   learning rate.
3. The result is a checkpoint for ``recursa eval CKPT2 --data DATA_OUT [--submission ...]``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from .. import storage
from ..data.dataset import TrainSampler
from ..data.format import load_split
from ..device import to_device
from ..errors import RecursaError
from ..inference.checkpoint import load_checkpoint, write_checkpoint_dir
from ..models import DataSpec, build_model
from .losses import act_loss
from .optim import SignSGDSparse


def adapt(ckpt, tasks_path, out, data_out, *, solutions_path=None, num_aug: int = 8, steps: int = 200,
          batch_size: int = 32, lr: float = 1e-2, weight_decay: float = 0.1, full_model: bool = False,
          model_lr: float = 1e-5, seed: int = 0, device: str = "cpu", overwrite: bool = False, log=print) -> Path:
    out, data_out = Path(out), Path(data_out)
    storage.check_out(out, "checkpoint", overwrite)
    loaded = load_checkpoint(ckpt, device)
    if loaded.task is None:
        raise RecursaError(f"{loaded.path}: the checkpoint has no task information")
    emb = getattr(loaded.model.inner, "puzzle_emb", None)
    if emb is None:
        raise RecursaError(f"{loaded.path}: the model has no puzzle embedding to adapt (puzzle_emb_ndim = 0)")
    if steps < 0 or batch_size < 1 or num_aug < 0 or lr < 0 or model_lr < 0:
        raise RecursaError("--steps, --num-aug, --lr and --model-lr must be >= 0, --batch-size >= 1")
    base = loaded.spec.num_puzzle_identifiers
    # the family builds the new tasks' data (ARC: augmented versions, ids after the trained rows)
    info = loaded.task.build_adaptation(data_out, Path(tasks_path), Path(solutions_path) if solutions_path else None,
                                        base, num_aug=num_aug, seed=seed, overwrite=overwrite, log=log)
    train = load_split(data_out, "train")
    spec = dataclasses.replace(loaded.spec, num_puzzle_identifiers=train.meta["num_puzzle_identifiers"])
    model = _grown_model(loaded, spec, seed, full_model)
    opt = torch.optim.AdamW(model.parameters(), lr=model_lr, weight_decay=0.0) if full_model and steps else None
    sparse = SignSGDSparse(model.inner.puzzle_emb, lr, weight_decay)
    sampler = TrainSampler(train, max(1, min(batch_size, _per_pass(train))), seed)
    t0 = time.perf_counter()
    _fit(model, sampler, opt, sparse, steps, loaded.cfg.train.loss, seed, log)
    model.eval()
    weights = {k: v for k, v in model.state_dict().items()}
    meta = {k: v for k, v in loaded.meta.items() if k not in ("files", "spec")}
    meta.update({"spec": spec.to_dict(), "adapted": {
        "from": str(loaded.path), "data": str(data_out), **info, "steps": steps, "batch_size": sampler.batch_size,
        "lr": lr, "weight_decay": weight_decay, "full_model": full_model, "model_lr": model_lr if full_model else None,
        "num_aug": num_aug, "seed": seed, "seconds": round(time.perf_counter() - t0, 2)}})
    path = write_checkpoint_dir(out, meta, weights)
    log(f"wrote {path}: {spec.num_puzzle_identifiers - base} new embedding rows fitted for {steps} steps "
        f"({'whole model' if full_model else 'network frozen'}); evaluate: recursa eval {path} --data {data_out}")
    return path


def _grown_model(loaded, spec: DataSpec, seed: int, full_model: bool):
    """The checkpoint's model with its puzzle-embedding table grown by zero rows to ``spec``'s
    identifiers; only the table trains unless ``full_model``."""
    base = loaded.spec.num_puzzle_identifiers
    dev = next(loaded.model.parameters()).device
    model = build_model(loaded.cfg.model, spec, seed=seed).to(dev)
    own = loaded.model.state_dict()
    table = own["inner.puzzle_emb.weights"]
    grown = torch.cat([table, torch.zeros(spec.num_puzzle_identifiers - base, table.shape[1], dtype=table.dtype,
                                          device=table.device)])
    model.load_state_dict({**own, "inner.puzzle_emb.weights": grown})
    for p in model.parameters():
        p.requires_grad_(full_model)
    return model


def _per_pass(train) -> int:
    """Examples in one pass over the tasks (a version of each): it must fill a batch (few new
    tasks, small batches)."""
    counts = np.diff(np.asarray(train.puzzle_indices))
    groups = np.asarray(train.group_indices)
    return sum(int(counts[groups[g]:groups[g + 1]].min()) for g in range(len(groups) - 1))


def _fit(model, sampler, opt, sparse, steps: int, loss_kind: str, seed: int, log) -> None:
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    model.train()
    carry = None
    for step in range(1, steps + 1):
        batch = to_device(sampler.next_batch(), dev)
        if carry is None:
            carry = model.initial_carry(batch)
        carry, outputs = model(carry, batch, generator=gen)
        loss, metrics = act_loss(outputs, carry.data["labels"], carry.halted, carry.steps, loss_kind)
        (loss / sampler.batch_size).backward()
        sparse.step()
        sparse.zero_grad()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps:
            seen = {"loss": loss.item() / sampler.batch_size, "exact": metrics["exact_accuracy"].item(),
                    "count": metrics["count"].item()}
            log(f"adapt step {step}/{steps}: loss {seen['loss']:.4f}, demonstrations right "
                f"{int(seen['exact'])}/{int(seen['count'])} of those finished")
