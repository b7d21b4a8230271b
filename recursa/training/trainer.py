"""The training loop: one ACT supervision step per optimizer step, with carry streaming.

Per step: the sampler's next batch refills the rows whose puzzle halted; the model runs one
supervision step; loss / batch_size is back-propagated (no clipping, as in the official code);
AdamATan2 (or AdamW) updates the network, sign-SGD the touched puzzle-embedding rows; the EMA is
updated. Metrics stay on the device and are read (one host sync) only every ``log_interval``.

``fit(cfg, resume=True)`` continues a run from its latest checkpoint and ends bit-identical to an
uninterrupted run (same device and thread count): the checkpoint holds the weights, EMA,
optimiser moments, carry, generator states and sampler position.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .. import config as config_mod
from ..config import RunConfig
from ..data.dataset import TrainSampler
from ..data.format import load_split, read_task_info
from ..errors import RecursaError
from ..evaluation.evaluate import evaluate
from ..inference import pick_device, to_device
from ..models import ACT, Carry, DataSpec, build_model, count_parameters
from ..tasks import load_task
from . import checkpoint
from .ema import EMA
from .logging import MetricLogger, Progress, fmt_time
from .losses import act_loss
from .optim import AdamATan2, SignSGDSparse, lr_at


class Trainer:
    def __init__(self, cfg: RunConfig, *, resume: bool = False, progress: bool = True, log=print):
        self.cfg, self.log = cfg, log
        t = cfg.train
        if not t.data:
            raise RecursaError("train.data is not set (a dataset directory, e.g. from `recursa build`)")
        self.run_dir = Path(t.out)
        if not resume and (self.run_dir / "latest").exists():
            raise RecursaError(f"{self.run_dir}: run directory already has checkpoints; use --resume or another train.out")
        if resume and not (self.run_dir / "latest").exists():
            raise RecursaError(f"{self.run_dir}: nothing to resume (no 'latest' checkpoint)")
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.device = pick_device(t.device)

        self.train_split = load_split(t.data, "train")
        self.test_split = load_split(t.data, "test") if t.eval_interval >= 0 else None
        task_info = read_task_info(t.data)
        self.rating_buckets = task_info.get("rating_buckets") if task_info else None
        self.task_info = {"task": task_info["task"], "params": task_info.get("params", {})} if task_info else None
        self.task = load_task(self.task_info) if self.task_info else None
        m = self.train_split.meta
        self.spec = DataSpec(vocab_size=int(m["vocab_size"]), seq_len=int(m["seq_len"]),
                             num_puzzle_identifiers=int(m["num_puzzle_identifiers"]))
        if self.test_split is not None:
            tm = self.test_split.meta
            if (tm["vocab_size"], tm["seq_len"]) != (self.spec.vocab_size, self.spec.seq_len):
                raise RecursaError(f"{t.data}: train and test splits disagree on vocab_size/seq_len")

        self.model: ACT = build_model(cfg.model, self.spec, seed=t.seed).to(self.device)
        self.model.train()
        params = list(self.model.parameters())
        if t.optimizer == "adam_atan2":
            self.opt = AdamATan2(params, lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
        else:
            self.opt = torch.optim.AdamW(params, lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
        emb = getattr(self.model.inner, "puzzle_emb", None)
        self.sparse = SignSGDSparse(emb, t.puzzle_emb_lr, t.puzzle_emb_weight_decay) if emb is not None else None
        self.ema = EMA(self.model, t.ema_rate) if t.ema else None
        self.sampler = TrainSampler(self.train_split, t.batch_size, t.seed)
        self.gen = torch.Generator(device=self.device).manual_seed(t.seed)
        self.carry: Carry | None = None
        self.step = 0
        self.elapsed = 0.0
        if t.steps:
            self.total_steps = t.steps
        elif t.epochs:
            mean_ex = float(m["mean_puzzle_examples"])
            self.total_steps = max(1, int(t.epochs * self.train_split.num_groups * mean_ex / t.batch_size))
        elif t.max_time_s:
            self.total_steps = 10**12  # bounded by time only
        else:
            raise RecursaError("set train.steps, train.epochs or train.max_time_s")
        self.n_params = count_parameters(self.model)
        if resume:
            self._load_state()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write_text(self.run_dir / "config.toml", config_mod.to_toml(cfg))
        self.logger = MetricLogger(self.run_dir, t.loggers, config_mod.to_dict(cfg), resume)
        self.progress = Progress(progress)

    # ------------------------------------------------------------------ state
    def _meta(self) -> dict:
        return {"config": config_mod.to_dict(self.cfg), "spec": vars(self.spec), "task": self.task_info,
                "arch": self.cfg.model.arch, "params": self.n_params, "ema_weights": self.ema is not None}

    def save(self) -> Path:
        tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.shadow.items()})
        opt_state = self.opt.state_dict()
        opt_json = {"param_groups": opt_state["param_groups"], "state_keys": {}}
        for idx, st in opt_state["state"].items():
            opt_json["state_keys"][str(idx)] = sorted(st)
            for name, v in st.items():
                tensors[f"optim.{idx}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
        if self.carry is not None:
            c = self.carry
            for i, s in enumerate(c.state):
                tensors[f"carry.state.{i}"] = s
            tensors["carry.steps"], tensors["carry.halted"] = c.steps, c.halted
            tensors.update({f"carry.data.{k}": v for k, v in c.data.items()})
        tensors["rng.torch"] = self.gen.get_state()
        state_json = {"step": self.step, "elapsed": self.elapsed, "sampler": self.sampler.state_dict(),
                      "optimizer": opt_json, "has_carry": self.carry is not None,
                      "carry_state_len": len(self.carry.state) if self.carry is not None else 0}
        weights = self.model.state_dict()
        if self.ema is not None:
            weights = {**weights, **self.ema.shadow}
        return checkpoint.save(self.run_dir, self.step, self._meta(), weights, tensors, state_json,
                               keep=self.cfg.train.keep_checkpoints)

    def _load_state(self):
        ckpt = checkpoint.resolve(self.run_dir)
        meta = checkpoint.read_meta(ckpt)
        saved_model = meta["config"]["model"]
        if saved_model != config_mod.to_dict(self.cfg)["model"]:
            raise RecursaError(f"{ckpt}: the [model] section differs from the checkpoint's; resume with the same model config")
        tensors = checkpoint.load_tensors(ckpt / "train_state.safetensors")
        state = json.loads((ckpt / "train_state.json").read_text())
        dev = self.device
        checkpoint.load_weights_into(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, ckpt)
        if self.ema is not None:
            self.ema.shadow = {k[4:]: v.to(dev) for k, v in tensors.items() if k.startswith("ema.")}
        opt_json = state["optimizer"]
        opt_state = {"param_groups": opt_json["param_groups"],
                     "state": {int(i): {n: tensors[f"optim.{i}.{n}"] for n in names}
                               for i, names in opt_json["state_keys"].items()}}
        self.opt.load_state_dict(opt_state)
        if state["has_carry"]:
            self.carry = Carry(
                state=tuple(tensors[f"carry.state.{i}"].to(dev) for i in range(state["carry_state_len"])),
                steps=tensors["carry.steps"].to(dev), halted=tensors["carry.halted"].to(dev),
                data={k[len("carry.data."):]: v.to(dev) for k, v in tensors.items() if k.startswith("carry.data.")})
        self.gen.set_state(tensors["rng.torch"])
        self.sampler.load_state_dict(state["sampler"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.log(f"resumed {self.run_dir} at step {self.step}")

    # ------------------------------------------------------------------ loop
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t = self.cfg.train
        if self.carry is None:
            self.carry = self.model.initial_carry(batch)
        self.carry, out = self.model(self.carry, batch, generator=self.gen)
        c = self.carry
        loss, metrics = act_loss(out, c.data["labels"], c.halted, c.steps, t.loss)
        (loss / t.batch_size).backward()
        self.step += 1
        lr_scale = lr_at(self.step, 1.0, t.lr_warmup_steps, self.total_steps, t.lr_min_ratio)
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
        metrics["loss"] = loss.detach()
        return metrics

    def eval_model(self) -> ACT:
        return self.ema.averaged(self.model) if self.ema is not None else self.model

    def run_eval(self) -> dict:
        e = self.cfg.eval
        model = self.eval_model()
        voting = None
        if self.task is not None and self.task.name == "arc":  # fresh votes for every evaluation
            from ..evaluation.arc import ArcVoting
            voting = ArcVoting.for_split(self.cfg.train.data, self.test_split)
        res = evaluate(model, self.test_split, self.task, batch_size=e.batch_size, device=self.device, limit=e.limit,
                       rating_buckets=self.rating_buckets, voting=voting)
        self.model.train()
        return res

    def fit(self) -> Path:
        t = self.cfg.train
        sums: dict[str, torch.Tensor] = {}
        window_steps, window_start = 0, time.perf_counter()
        start = time.perf_counter()
        elapsed0 = self.elapsed
        last_eval = None
        self.progress.message(f"training {self.cfg.model.arch} ({self.n_params:,} parameters) on {self.device} "
                              f"-> {self.run_dir}")
        while self.step < self.total_steps:
            batch = to_device(self.sampler.next_batch(), self.device)
            metrics = self.train_step(batch)
            for k, v in metrics.items():
                if k not in sums:
                    sums[k] = torch.zeros((), dtype=torch.float64, device=self.device)
                sums[k] += v
            window_steps += 1
            self.elapsed = elapsed0 + time.perf_counter() - start
            out_of_time = bool(t.max_time_s) and self.elapsed >= t.max_time_s
            last = self.step >= self.total_steps or out_of_time
            if self.step % t.log_interval == 0 or last:
                vals = {k: v.item() for k, v in sums.items()}  # CPU-GPU sync point (once per log interval)
                now = time.perf_counter()
                rate = window_steps / max(now - window_start, 1e-9)
                count = max(vals["count"], 1)
                row = {"lr": t.lr * lr_at(self.step, 1.0, t.lr_warmup_steps, self.total_steps, t.lr_min_ratio),
                       "train/loss": vals["loss"] / window_steps / t.batch_size,
                       "train/lm_loss": vals["lm_loss"] / window_steps / t.batch_size,
                       "train/accuracy": vals["accuracy"] / count,
                       "train/exact_accuracy": vals["exact_accuracy"] / count,
                       "train/q_halt_accuracy": vals["q_halt_accuracy"] / count,
                       "train/steps": vals["steps"] / count, "steps_per_s": rate, "elapsed_s": self.elapsed}
                if "q_continue_loss" in vals:
                    row["train/q_continue_loss"] = vals["q_continue_loss"] / window_steps / t.batch_size
                self.logger.log(self.step, row)
                if t.max_time_s and self.total_steps >= 10**12:
                    eta = t.max_time_s - self.elapsed
                else:
                    eta = (self.total_steps - self.step) / max(rate, 1e-9)
                    if t.max_time_s:
                        eta = min(eta, t.max_time_s - self.elapsed)
                total = "" if self.total_steps >= 10**12 else f"/{self.total_steps}"
                self.progress.update(f"step {self.step}{total}  loss {row['train/loss']:.4f}  "
                                     f"acc {row['train/accuracy']:.3f}  exact {row['train/exact_accuracy']:.3f}  "
                                     f"{rate:.1f} steps/s  elapsed {fmt_time(self.elapsed)}  ETA {fmt_time(eta)}")
                for v in sums.values():
                    v.zero_()
                window_steps, window_start = 0, now
            if t.eval_interval > 0 and self.step % t.eval_interval == 0 and not last:
                last_eval = self._log_eval()
            if t.checkpoint_interval > 0 and self.step % t.checkpoint_interval == 0 and not last:
                self.save()
            if out_of_time:
                break
        if t.eval_interval >= 0:
            last_eval = self._log_eval()
        path = self.save()
        self.progress.close()
        self.logger.close()
        if last_eval is not None:
            self.log(f"final: exact accuracy {last_eval['exact_accuracy']:.3f} on {last_eval['n']} test puzzles")
        self.log(f"checkpoint: {path}")
        return path

    def _log_eval(self) -> dict:
        res = self.run_eval()
        flat = {f"eval/{k}": v for k, v in res.items() if v is not None and k not in ("exact_by_rating", "arc")}
        for k, v in res.get("arc", {}).items():
            flat[f"eval/ARC/{k}"] = v
        for name, b in res.get("exact_by_rating", {}).items():  # one scalar per bucket
            if b["n"]:
                flat[f"eval/exact_rating_{name}"] = b["exact"]
        self.logger.log(self.step, flat)
        self.progress.message(f"eval @ step {self.step}: exact {res['exact_accuracy']:.3f}  token {res['token_accuracy']:.3f}"
                              f"  by step {' '.join(f'{x:.2f}' for x in res['exact_by_step'])}")
        return res


def fit(cfg: RunConfig, *, resume: bool = False, progress: bool = True, log=print) -> Path:
    """Train (or resume) the run described by ``cfg``; returns the final checkpoint directory."""
    return Trainer(cfg, resume=resume, progress=progress, log=log).fit()
