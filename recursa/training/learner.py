"""What a training step changes: the model (and ``net``, what runs its step: the model wrapped for
data parallelism and/or compiled), its optimisers, the EMA and the generator of the model's own
random draws; how one update is applied, and how all of it goes into and out of a checkpoint."""

from __future__ import annotations

import torch
from torch.nn.parallel import DistributedDataParallel

from ..models import ACT, build_model
from . import distributed, state
from .ema import EMA
from .optim import build_optimizers


class Learner:
    def __init__(self, cfg, spec, device, dist):
        t = self.t = cfg.train
        self.model: ACT = build_model(cfg.model, spec, seed=t.seed).to(device)
        self.model.train()
        self.model.draw_shard = (dist.rank, dist.world)
        # Data parallelism: gradients averaged by bucketed all-reduce during backward; the
        # buffers, equal on every rank, are not broadcast. Evaluation and checkpoints use ``model``.
        self.net = self.model
        if dist.active:
            self.net = DistributedDataParallel(self.model, forward_sync_buffers=False,
                                               device_ids=[device.index] if device.type == "cuda" else None)
        if t.compile:
            self.net = torch.compile(self.net)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        gather = (lambda x: distributed.all_gather_rows(dist, x)) if dist.active else None
        self.opt, self.sparse = build_optimizers(self.model, t, device, dist.world, gather)
        self.ema = EMA(self.model, t.ema_rate) if t.ema else None
        self.gen = torch.Generator(device=device).manual_seed(t.seed)

    def update(self, lr_scale: float) -> None:
        """One optimiser step at ``lr_scale`` x the learning rates, then the EMA."""
        t = self.t
        for group in self.opt.param_groups:
            group["lr"] = t.lr * lr_scale
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.sparse is not None:
            self.sparse.lr = t.puzzle_emb_lr * lr_scale
            self.sparse.step()
            self.sparse.zero_grad()
        if self.ema is not None:
            self.ema.update(self.model)

    def drop(self) -> None:
        """Forget this step's gradients (a skipped step)."""
        self.opt.zero_grad(set_to_none=True)
        if self.sparse is not None:
            self.sparse.zero_grad()

    def eval_model(self) -> ACT:
        return self.ema.averaged(self.model) if self.ema is not None else self.model

    def inference_weights(self) -> dict[str, torch.Tensor]:
        weights = self.model.state_dict()
        return {**weights, **self.ema.shadow} if self.ema is not None else weights

    def tensors(self) -> list[torch.Tensor]:
        """Everything that must stay finite."""
        return list(self.model.parameters()) + (list(self.ema.shadow.values()) if self.ema is not None else [])

    def pack(self, carry, progress: dict):
        return state.pack_train_state(self.model, self.ema, self.opt, carry, self.gen, progress)

    def restore(self, saved: state.TrainStateReader, device) -> None:
        saved.restore_model(self.model, self.ema, device)
        saved.restore_optimizer(self.opt, f"train.optimizer = {self.t.optimizer!r}")
        saved.restore_generator(self.gen)
