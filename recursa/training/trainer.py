"""The training loop: one ACT supervision step per optimizer step, with carry streaming.

Per step: the sampler's next batch refills the rows whose puzzle halted; the model runs one
supervision step; loss / batch_size is back-propagated (no clipping, as in the official code, unless
``train.grad_clip``);
AdamATan2 (or AdamW) updates the network, sign-SGD the touched puzzle-embedding rows; the EMA is
updated. Metrics stay on the device and are read (one host sync) only every ``log_interval``.

``fit(cfg, resume=True)`` continues a run from its latest checkpoint and ends bit-identical to an
uninterrupted run (same device and thread count): the checkpoint holds the weights, EMA,
optimiser moments, carry, generator states and sampler position.

Safety: one trainer per run directory (``RUN/.lock``); a non-finite loss stops the run (or skips
the step, ``train.on_nonfinite``) and nothing non-finite is ever saved, so the last good
checkpoint is never overwritten or pruned; the final checkpoint is written before the final
evaluation, and an evaluation that fails never discards the weights.
"""

from __future__ import annotations

import gc
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from .. import config as config_mod
from .. import storage
from ..config import RunConfig
from ..data.dataset import TrainSampler
from ..data.format import Split, check_task_matches, load_split, read_task_info, resolve_eval_split
from ..device import pick_device, to_device
from ..errors import RecursaError
from ..evaluation import halting
from ..evaluation.evaluate import evaluate
from ..inference.checkpoint import read_meta, resolve
from ..models import ACT, Carry, DataSpec, build_model, count_parameters
from ..tasks import load_task
from . import distributed, run_dir, state
from .ema import EMA
from .logging import MetricLogger, Progress, fmt_time
from .losses import act_loss, log_stablemax
from .optim import AdamATan2, Muon, SignSGDSparse, lr_at

# Entries a run directory may hold (anything else means train.out names someone else's directory).
RUN_ENTRIES = {"config.toml", "metrics.jsonl", "checkpoints", "latest", ".lock", "tensorboard", "wandb"}
# Devices on which the next batch is copied while the current step runs (pinned, non-blocking).
PREFETCH_DEVICES = ("cuda",)
# Resuming with a different value of these cannot continue the saved state.
RESUME_FIXED = ("batch_size", "optimizer", "ema")
# Temporary files of the trainer's own writers (only one trainer holds the run lock, so any left are stale).
_RUN_TEMP = re.compile(r"^\.(latest|config\.toml|metrics\.jsonl)\.")
_CKPT_TEMP = re.compile(r"^\.(step_\d+|best)\.(tmp|old)")
# Metrics every evaluation has (train.keep_best may also name a family's, e.g. ARC pass@2).
CORE_METRICS = ("exact_accuracy", "token_accuracy", "valid_rate")


def depth_at(curriculum: list[list[float]], step: int, total_steps: int) -> tuple[int, int]:
    """(H_cycles, L_cycles) of training step ``step`` (0-based, before it runs) under a
    ``train.depth_curriculum``: the last entry whose progress fraction step / total has reached."""
    progress = step / max(total_steps, 1)
    entry = curriculum[0]
    for e in curriculum:
        if progress >= e[0]:
            entry = e
    return int(entry[1]), int(entry[2])


def stochastic_cycles(p: float, H: int, seed: int, step: int) -> int:
    """RSM's stochastic depth: the cycles training step ``step`` runs: with probability ``p`` a draw
    from 1..H, else H; a function of (seed, step) alone, so every rank and a resumed run agree."""
    rng = np.random.default_rng([seed, step, 71])
    return int(rng.integers(1, H + 1)) if rng.random() < p else H


def _silent(*a, **k) -> None:
    """The log of ranks other than 0 in a distributed run."""


class Diverged(RecursaError):
    """Training produced a non-finite loss or non-finite weights."""


class Trainer:
    def __init__(self, cfg: RunConfig, *, resume: bool = False, progress: bool = True, log=print):
        t = cfg.train
        self.dist = distributed.from_env()  # torchrun: this process's rank; else a single process
        if not self.dist.main:  # rank 0 alone reports; errors still raise everywhere
            progress, log = False, _silent
        self.cfg, self.log, self.resume = cfg, log, resume
        self.lock = None
        if not t.data:
            raise RecursaError("train.data is not set (a dataset directory, e.g. from `recursa build`)")
        if self.dist.active and t.batch_size % self.dist.world:
            raise RecursaError(f"train.batch_size = {t.batch_size} does not divide over {self.dist.world} processes "
                               f"(WORLD_SIZE); use a multiple of {self.dist.world}: it is the global batch")
        self.local_batch = t.batch_size // self.dist.world
        self.rows = self.dist.rows(t.batch_size)
        self.run_dir = Path(t.out)
        self._check_run_dir()
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.device = distributed.setup(self.dist, pick_device(t.device), t.dist_timeout_s)

        self.train_split = load_split(t.data, "train")
        self.test_split = load_split(t.data, "test") if t.eval_interval >= 0 else None
        # evaluations during training and keep_best: the validation split when there is one
        self.eval_split_name = resolve_eval_split(t.data, t.eval_split) if t.eval_interval >= 0 else None
        self.eval_data = (self.test_split if self.eval_split_name in (None, "test")
                          else load_split(t.data, self.eval_split_name))
        task_info = read_task_info(t.data)
        self.task_info = {"task": task_info["task"], "params": task_info.get("params", {})} if task_info else None
        self.task = load_task(self.task_info) if self.task_info else None
        m = self.train_split.meta
        if self.task is not None:
            check_task_matches(self.task, m, t.data)
            if self.test_split is not None:
                check_task_matches(self.task, self.test_split.meta, t.data, "test")
            if self.eval_split_name == "val":
                check_task_matches(self.task, self.eval_data.meta, t.data, "val")
        self.spec = DataSpec(vocab_size=int(m["vocab_size"]), seq_len=int(m["seq_len"]),
                             num_puzzle_identifiers=int(m["num_puzzle_identifiers"]))
        for name, split in (("test", self.test_split), (self.eval_split_name, self.eval_data)):
            if split is None:
                continue
            sm = split.meta
            if (sm["vocab_size"], sm["seq_len"]) != (self.spec.vocab_size, self.spec.seq_len):
                raise RecursaError(f"{t.data}: train and {name} splits disagree on vocab_size/seq_len")
            if self.task is not None:
                self.task.scorer(t.data, split)  # the files evaluation needs, checked now, not after training
        if t.nearest_answer and (self.task is None or not getattr(self.task, "answer_sets", False)):
            what = self.task.describe() if self.task is not None else f"{t.data} (no task.json)"
            raise RecursaError(f"train.nearest_answer: {what} has one answer per puzzle; nothing to choose among")

        self.model: ACT = build_model(cfg.model, self.spec, seed=t.seed).to(self.device)
        self.model.train()
        self.model.draw_shard = (self.dist.rank, self.dist.world)
        if t.depth_curriculum and cfg.model.latents > 1 and max(e[2] for e in t.depth_curriculum) > cfg.model.latents:
            raise RecursaError(f"train.depth_curriculum: L_cycles up to {max(e[2] for e in t.depth_curriculum)} "
                               f"> model.latents = {cfg.model.latents}")
        # What runs the training step: the model, wrapped for data parallelism (gradients averaged
        # by bucketed all-reduce during backward; the buffers, equal on every rank, are not
        # broadcast) and/or compiled. Evaluation and checkpoints use the plain ``self.model``.
        self.net = self.model
        if self.dist.active:
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                forward_sync_buffers=False)
        if t.compile:
            self.net = torch.compile(self.net)
        params = list(self.model.parameters())
        self.clip_params = [p for p in params if p.requires_grad]
        if t.optimizer == "adam_atan2":
            self.opt = AdamATan2(params, lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
        elif t.optimizer == "muon":
            self.opt = Muon(params, lr=t.lr, weight_decay=t.weight_decay, adamw_betas=(t.beta1, t.beta2))
        else:
            # fused: one kernel for all parameters (4x faster than the per-tensor-list default on a CPU)
            self.opt = torch.optim.AdamW(params, lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay,
                                         fused=self.device.type in ("cpu", "cuda") or None)
        emb = getattr(self.model.inner, "puzzle_emb", None)
        gather = (lambda x: distributed.all_gather_rows(self.dist, x)) if self.dist.active else None
        # each rank's loss is divided by its own rows: 1/world brings the gradients to the one-process scale
        self.sparse = SignSGDSparse(emb, t.puzzle_emb_lr, t.puzzle_emb_weight_decay, gather=gather,
                                    grad_scale=1.0 / self.dist.world) if emb is not None else None
        self.ema = EMA(self.model, t.ema_rate) if t.ema else None
        self.sampler = TrainSampler(self.train_split, t.batch_size, t.seed)
        self.gen = torch.Generator(device=self.device).manual_seed(t.seed)
        self.carry: Carry | None = None
        self.step = 0
        self.elapsed = 0.0
        # First step whose loss was not finite (-1: none), kept on the device: no host sync per step.
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        self.skipped = 0  # steps skipped for a non-finite loss (on_nonfinite = "skip_step")
        self.skip_streak = 0
        self.last_good: Path | None = None
        self.prefetch = self.device.type in PREFETCH_DEVICES
        self._pending = None  # the next batch, already on its way to the device (prefetch)
        self._sampler_before_pending = None
        self.best: dict | None = None  # keep_best: {"metric", "value", "step"} of RUN/checkpoints/best
        if t.keep_best:
            if t.eval_interval < 0:
                raise RecursaError(f"train.keep_best = {t.keep_best!r} needs evaluation (train.eval_interval >= 0)")
            if t.keep_best not in CORE_METRICS and (self.task is None or self.task.scorer(t.data, self.eval_data) is None):
                raise RecursaError(f"train.keep_best = {t.keep_best!r}: not a metric of this dataset (choose from "
                                   f"{', '.join(CORE_METRICS)})")
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
        self.progress = Progress(progress)
        self.logger = None
        if self.dist.main:
            self._open_run_dir()
            distributed.barrier(self.dist)  # the others wait until the run directory is ready
        else:
            distributed.barrier(self.dist)
            if self.resume:
                self._load_state()

    # ------------------------------------------------------------------ run directory
    def _check_run_dir(self):
        """train.out is free, empty, or a run directory; never someone else's directory or a file."""
        d = self.run_dir
        if d.is_symlink() and not d.exists():
            raise RecursaError(f"train.out {d}: a dangling symbolic link")
        if d.exists() and not d.is_dir():
            raise RecursaError(f"train.out {d}: exists and is not a directory")
        if d.is_dir():
            try:
                resolved, cwd = d.resolve(), Path.cwd().resolve()
            except OSError:
                resolved, cwd = d, None
            if cwd is not None and (resolved == cwd or resolved in cwd.parents):
                raise RecursaError(f"train.out {d}: that is the current directory or one of its parents; "
                                   "name a run directory, e.g. runs/mine")
            odd = sorted(e.name for e in d.iterdir() if e.name not in RUN_ENTRIES and not e.name.startswith("."))
            if odd:
                raise RecursaError(f"train.out {d}: exists and is not a recursa run directory (it holds {odd[0]!r}); "
                                   "choose a new or empty directory")
        elif self.resume:
            raise RecursaError(f"{d}: nothing to resume (no 'latest' checkpoint)")

    def _open_run_dir(self):
        """Take the run lock, then (under it) check/restore the state and open the metric log."""
        created = not self.run_dir.exists()
        self.lock = storage.RunLock(self.run_dir, log=self.log).acquire()
        try:
            latest = self.run_dir / "latest"
            if not self.resume and latest.exists():
                raise RecursaError(f"{self.run_dir}: run directory already has checkpoints; use --resume or another train.out")
            if self.resume and not latest.exists():
                raise RecursaError(f"{self.run_dir}: nothing to resume (no 'latest' checkpoint)")
            self._clean_leftovers()
            if self.resume:
                self._load_state()
                self._trim_metrics()
            storage.atomic_write_text(self.run_dir / "config.toml", config_mod.to_toml(self.cfg))
            self.logger = MetricLogger(self.run_dir, self.cfg.train.loggers, config_mod.to_dict(self.cfg), self.resume)
        except BaseException:
            self.lock.release()
            if created:  # leave nothing behind for a run that never started
                (self.run_dir / ".lock").unlink(missing_ok=True)
                try:
                    self.run_dir.rmdir()
                except OSError:
                    pass
            raise

    def _clean_leftovers(self):
        """Temporary files and checkpoint dirs of killed trainers (we hold the lock: none is live)."""
        removed = []
        for root, pattern in ((self.run_dir, _RUN_TEMP), (self.run_dir / "checkpoints", _CKPT_TEMP)):
            if not root.is_dir():
                continue
            for e in sorted(root.iterdir()):
                if pattern.match(e.name):
                    storage.remove_tree(e)
                    removed.append(e.name)
        if removed:
            self.log(f"note: removed {len(removed)} temporary file(s) left by an interrupted run in {self.run_dir}: "
                     + ", ".join(removed[:4]) + (" ..." if len(removed) > 4 else ""))

    def _trim_metrics(self):
        """Drop metric rows logged after the checkpoint we resume from (they will be logged again)
        and any line torn by a kill, so metrics.jsonl stays one row per step."""
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        keep, dropped = [], 0
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                ok = isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= self.step
            except (ValueError, RecursionError):
                ok = False
            if ok:
                keep.append(line)
            else:
                dropped += 1
        if dropped:
            storage.atomic_write_text(path, "".join(x + "\n" for x in keep))
            self.log(f"note: {path}: dropped {dropped} row(s) logged after step {self.step}, the checkpoint resumed from")

    def __del__(self):
        lock = getattr(self, "lock", None)
        if lock is not None:
            lock.release()

    def close(self):
        self.progress.close()
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        if self.lock is not None:
            self.lock.release()

    # ------------------------------------------------------------------ state
    def _meta(self) -> dict:
        return {"config": config_mod.to_dict(self.cfg), "spec": vars(self.spec), "task": self.task_info,
                "arch": self.cfg.model.arch, "params": self.n_params, "ema_weights": self.ema is not None}

    def _check_finite(self):
        """Raise :class:`Diverged` when a loss since the start was non-finite or the weights are."""
        if self.dist.active:  # every rank learns the first bad step of any rank
            big = torch.iinfo(torch.int64).max
            first = torch.where(self.bad_step < 0, big, self.bad_step)
            torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
            self.bad_step = torch.where(first == big, -1, first)
        bad = int(self.bad_step)  # host sync: only at log intervals and before saving
        if bad >= 0:
            lr = self.cfg.train.lr * self._lr_scale(bad)
            self._diverged(f"the loss became non-finite at step {bad} (learning rate there {lr:.3g})")
        tensors = list(self.model.parameters()) + (list(self.ema.shadow.values()) if self.ema is not None else [])
        if tensors and not bool(torch.stack([torch.isfinite(x).all() for x in tensors]).all()):
            self._diverged(f"the weights became non-finite by step {self.step}")

    def _diverged(self, what: str):
        if self.logger is not None:
            self.logger.log(self.step, {"diverged": what})
        kept = f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint was written"
        fix = ("lower train.lr (or lengthen train.lr_warmup_steps)" if self.cfg.train.on_nonfinite == "stop"
               else "lower train.lr")
        raise Diverged(f"training diverged: {what}; stopped at step {self.step} without saving ({kept}); {fix}"
                       + (', or set train.on_nonfinite = "skip_step"' if self.cfg.train.on_nonfinite == "stop" else ""))

    def save(self) -> Path:
        """Write a checkpoint of the current state; refuses (Diverged) when anything is non-finite.
        Distributed: every rank calls it (the carries are gathered in row order, so the checkpoint
        holds the one-process carry); rank 0 writes."""
        self._check_finite()
        carry = self.carry
        if self.dist.active:
            has = distributed.any_all(self.dist, carry is not None, self.device)
            if has and carry is None:  # a rank whose in-flight puzzles were dropped (skip_step)
                carry = self.model.initial_carry(self._blank_batch())
            if has:
                g = lambda x: distributed.all_gather_rows(self.dist, x)  # noqa: E731
                carry = Carry(state=tuple(g(x) for x in carry.state), steps=g(carry.steps), halted=g(carry.halted),
                              data={k: g(v) for k, v in carry.data.items()})
        path = self.run_dir / "checkpoints" / f"step_{self.step:07d}"
        if self.dist.main:
            sampler = self._sampler_before_pending if self._pending is not None else self.sampler.state_dict()
            progress = {"step": self.step, "elapsed": self.elapsed, "sampler": sampler, "skipped_steps": self.skipped,
                        "data": {"examples": self.train_split.num_examples, "groups": self.train_split.num_groups}}
            weights, tensors, state_json = state.pack_train_state(self.model, self.ema, self.opt, carry,
                                                                       self.gen, progress)
            path = run_dir.save(self.run_dir, self.step, self._meta(), weights, tensors, state_json,
                                   keep=self.cfg.train.keep_checkpoints)
        self.last_good = path
        return path

    def _blank_batch(self) -> dict[str, torch.Tensor]:
        b, L = self.local_batch, self.spec.seq_len
        return {"inputs": torch.zeros(b, L, dtype=torch.int32, device=self.device),
                "labels": torch.zeros(b, L, dtype=torch.int32, device=self.device),
                "puzzle_identifiers": torch.zeros(b, dtype=torch.int32, device=self.device)}

    def _save_best(self, res: dict) -> None:
        """train.keep_best: when this evaluation beats the best so far, its weights become
        RUN/checkpoints/best (written atomically; weights and config only, not a resume point)."""
        metric = self.cfg.train.keep_best
        flat = {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        flat.update(res.get("_scalars", {}))
        key = metric if metric in flat else next((k for k in flat if k.endswith("/" + metric)), None)
        if key is None or flat[key] is None:
            names = sorted(k for k, v in flat.items() if isinstance(v, float))
            raise RecursaError(f"train.keep_best = {metric!r}: the evaluation has no such metric "
                               f"(it has {', '.join(names)})")
        value = float(flat[key])
        if self.best is not None and value <= self.best["value"]:
            return
        self.best = {"metric": key, "value": value, "step": self.step, "split": self.eval_split_name}
        weights = self.model.state_dict()
        if self.ema is not None:
            weights = {**weights, **self.ema.shadow}
        run_dir.save_best(self.run_dir, {**self._meta(), "step": self.step, "best": self.best}, weights)
        self.progress.message(f"best {key} so far: {value:.4f} at step {self.step} -> {self.run_dir / 'best'}")

    def _load_state(self):
        ckpt = resolve(self.run_dir)
        meta = read_meta(ckpt)
        cfg_path = ckpt / "config.json"
        saved = meta["config"]
        now = config_mod.to_dict(self.cfg)
        try:  # fields added since the checkpoint was written take their defaults
            saved_cfg = config_mod.RunConfig(model=config_mod.from_dict({"model": saved.get("model") or {}}).model)
        except (RecursaError, TypeError) as e:
            raise RecursaError(f"{cfg_path}: invalid [model] section ({e})") from None
        # settings without effect (num_heads under the MLP token mixer...) may differ: same model
        moot = {k.split(".", 1)[1] for k in (*config_mod.ineffective(saved_cfg), *config_mod.ineffective(self.cfg))
                if k.startswith("model.")}
        saved_model = {k: v for k, v in config_mod.to_dict(saved_cfg)["model"].items() if k not in moot}
        if saved_model != {k: v for k, v in now["model"].items() if k not in moot}:
            raise RecursaError(f"{ckpt}: the [model] section differs from the checkpoint's; resume with the same model config")
        saved_train = saved.get("train") if isinstance(saved.get("train"), dict) else {}
        show = config_mod.toml_value
        for key in RESUME_FIXED:
            if key in saved_train and saved_train[key] != now["train"][key]:
                raise RecursaError(f"train.{key} = {show(now['train'][key])} differs from the checkpoint's "
                                   f"{show(saved_train[key])} ({cfg_path}); the saved state cannot continue with another "
                                   f"value: resume with train.{key} = {show(saved_train[key])} or start a new run")
        changed = [f"train.{k} {show(saved_train[k])} -> {show(v)}" for k, v in now["train"].items()
                   if k in saved_train and saved_train[k] != v and k not in ("steps", "out", "data")]
        if changed:
            self.log("note: resuming with changed settings (the run will differ from an uninterrupted one): "
                     + ", ".join(changed))
        saved_state = state.TrainStateReader(ckpt, meta)
        step = saved_state.field("step", int, "an integer")
        elapsed = saved_state.field("elapsed", (int, float), "a number")
        data = saved_state.state.get("data")
        if isinstance(data, dict) and (data.get("examples"), data.get("groups")) != (
                self.train_split.num_examples, self.train_split.num_groups):
            raise RecursaError(f"{self.cfg.train.data}: the training split has {self.train_split.num_examples} examples in "
                               f"{self.train_split.num_groups} groups, the run was trained on {data.get('examples')} in "
                               f"{data.get('groups')} ({saved_state.sj_path}); resume on the same dataset")
        saved_state.restore_model(self.model, self.ema, self.device)
        saved_state.restore_optimizer(self.opt, f"train.optimizer = {self.cfg.train.optimizer!r}")
        carry = saved_state.restore_carry(self.cfg.train.batch_size, self.device)
        if carry is not None and self.dist.active:  # this rank's rows of the one-process carry
            r = self.rows
            carry = Carry(state=tuple(x[r].clone() for x in carry.state), steps=carry.steps[r].clone(),
                          halted=carry.halted[r].clone(), data={k: v[r].clone() for k, v in carry.data.items()})
        self.carry = carry
        saved_state.restore_generator(self.gen)
        saved_state.restore_sampler(self.sampler)
        self.step, self.elapsed = step, float(elapsed)
        self.skipped = int(saved_state.state.get("skipped_steps", 0) or 0)
        self.last_good = ckpt
        if self.cfg.train.keep_best:
            self.best = run_dir.read_best(self.run_dir, self.cfg.train.keep_best, self.eval_split_name)
        self.log(f"resumed {self.run_dir} at step {self.step}")

    # ------------------------------------------------------------------ loop
    def _lr_scale(self, step: int) -> float:
        """The schedule's factor at ``step``: warm-up then cosine over the steps, or, with a time
        budget only, over the training time used (evaluation and checkpoints not counted)."""
        t = self.cfg.train
        progress = None
        if self.total_steps >= 10**12:
            progress = self.elapsed / t.max_time_s
        return lr_at(step, 1.0, t.lr_warmup_steps, self.total_steps, t.lr_min_ratio, progress)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t = self.cfg.train
        if self.carry is None:
            self.carry = self.model.initial_carry(batch)
        if t.depth_curriculum:  # CGAR: shallower recursion early in training
            if self.total_steps >= 10**12:  # a time budget only: progress is the time used (not reproducible)
                self.model.inner.depth = depth_at(t.depth_curriculum, int(1000 * self.elapsed / t.max_time_s), 1000)
            else:
                self.model.inner.depth = depth_at(t.depth_curriculum, self.step, self.total_steps)
        if self.cfg.model.stochastic_depth:  # RSM: some steps run fewer cycles
            H, L = self.model.inner.depth or (self.cfg.model.H_cycles, self.cfg.model.L_cycles)
            self.model.inner.depth = (stochastic_cycles(self.cfg.model.stochastic_depth, H, t.seed, self.step), L)
        self.carry, out = self.net(self.carry, batch, generator=self.gen)
        self.model.inner.depth = None
        c = self.carry
        token_w = halt_w = None
        if t.step_weights != 1.0:  # CGAR: step s of a puzzle weighs step_weights ** (s - 1)
            halt_w = torch.pow(t.step_weights, (c.steps - 1).to(torch.float32))
            token_w = halt_w
        if t.loss_steps == "last":  # RSM: the token loss only where the row's puzzle ends
            token_w = c.halted.to(torch.float32) * (token_w if token_w is not None else 1.0)
        labels = c.data["labels"]
        if t.nearest_answer:  # several right answers: train against the one nearest the prediction
            labels = self._nearest_labels(c.data["inputs"], labels, out["logits"])
        loss, metrics = act_loss(out, labels, c.halted, c.steps, t.loss, token_weights=token_w,
                                 halt_weights=halt_w)
        self.step += 1
        finite = torch.isfinite(loss)
        if t.on_nonfinite == "skip_step":
            # one host sync per step, the price of skipping; every rank skips when any must
            if distributed.any_all(self.dist, not bool(finite), self.device):
                return self._skip_step(metrics)
            self.skip_streak = 0
        else:  # remember the first bad step on the device; checked at log intervals and before saving
            self.bad_step = torch.where((self.bad_step < 0) & ~finite, self.step, self.bad_step)
        (loss / self.local_batch).backward()  # distributed: the all-reduce averages over ranks
        if t.grad_clip > 0:  # after the all-reduce: every rank clips the same averaged gradient
            torch.nn.utils.clip_grad_norm_(self.clip_params, t.grad_clip, foreach=True)
        lr_scale = self._lr_scale(self.step)
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

    def _nearest_labels(self, inputs: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The task's right answer of least token loss under ``logits`` (the loss's own log-probabilities)."""
        with torch.no_grad():
            lp = log_stablemax(logits.to(torch.float64)) if self.cfg.train.loss == "stablemax" \
                else torch.log_softmax(logits.float(), -1)
            near = self.task.nearest_answers(inputs.cpu().numpy(), labels.cpu().numpy(), lp.cpu().numpy())
        return torch.from_numpy(np.ascontiguousarray(near)).to(device=labels.device, dtype=labels.dtype)

    def _skip_step(self, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop this step's update: no optimizer, puzzle-embedding or EMA step; the in-flight puzzles
        (whose recursion state may be non-finite) restart with the next batch."""
        self.opt.zero_grad(set_to_none=True)
        if self.sparse is not None:
            self.sparse.zero_grad()
        self.carry = None
        self.skipped += 1
        self.skip_streak += 1
        self.progress.message(f"step {self.step}: non-finite loss, step skipped ({self.skipped} so far)")
        if self.skip_streak >= self.cfg.train.max_nonfinite_skips:
            self._diverged(f"the loss was non-finite {self.skip_streak} steps in a row (up to step {self.step})")
        zero = {k: torch.zeros_like(v) for k, v in metrics.items()}
        zero["loss"] = torch.zeros((), device=self.device)
        return zero

    def eval_model(self) -> ACT:
        return self.ema.averaged(self.model) if self.ema is not None else self.model

    def run_eval(self, split: Split | None = None) -> dict:
        """The evaluation of the model as it is now (EMA weights, if kept) on ``split`` (default:
        the evaluation split, val/ when the dataset has one)."""
        e = self.cfg.eval
        split = self.eval_data if split is None else split
        model = self.eval_model()
        # the family's scorer (ARC: voting), fresh for every evaluation
        scorer = self.task.scorer(self.cfg.train.data, split) if self.task is not None else None
        res = evaluate(model, split, self.task, batch_size=e.batch_size, device=self.device, limit=e.limit,
                       scorer=scorer)
        if scorer is not None:
            res["_scalars"] = scorer.scalars(res[scorer.key])
        self.model.train()
        return res

    def fit(self) -> Path:
        try:
            path = self._fit()
            # distributed: end together (rank 0 may still be evaluating); a process that leaves
            # while another still talks to it is aborted by gloo. Not on errors: torchrun stops the rest.
            distributed.barrier(self.dist)
            return path
        finally:
            self.close()
            if self.dist.active:
                # DDP's reducer holds the process group: free it first, or the group's threads are
                # torn down at interpreter exit and abort the process
                self.net = self.model
                gc.collect()
            distributed.teardown(self.dist)

    def _load_batch(self) -> dict[str, torch.Tensor]:
        batch = self.sampler.next_batch()
        if self.dist.active:  # every rank draws the global batch; this rank trains on its rows
            batch = {k: v[self.rows] for k, v in batch.items()}
        return to_device(batch, self.device, non_blocking=self.prefetch)

    def _take_batch(self) -> dict[str, torch.Tensor]:
        """The next batch; with prefetch (GPUs) the one after is already being copied (pinned,
        non-blocking) while this step runs. A checkpoint then records the sampler as it was
        before that draw, so a resumed run draws it again."""
        if self._pending is not None:
            batch, self._pending = self._pending, None
        else:
            batch = self._load_batch()
        if self.prefetch:
            self._sampler_before_pending = self.sampler.state_dict()
            self._pending = self._load_batch()
        return batch

    def _fit(self) -> Path:
        t = self.cfg.train
        sums: dict[str, torch.Tensor] = {}
        window_steps, window_start = 0, time.perf_counter()
        start = time.perf_counter()
        elapsed0, paused = self.elapsed, 0.0
        if t.eval_split == "auto" and self.eval_split_name == "test" and self.dist.main:  # said once all checks passed
            self.log(f"note: {t.data} has no val/ split, so evaluations during training"
                     f"{' and keep_best' if t.keep_best else ''} read the test split (choices made with them have "
                     "seen it); `recursa build ... --num-val N` adds one")
        self.progress.message(f"training {self.cfg.model.arch} ({self.n_params:,} parameters) on {self.device} "
                              f"-> {self.run_dir}")
        while self.step < self.total_steps:
            batch = self._take_batch()
            metrics = self.train_step(batch)
            for k, v in metrics.items():
                if k not in sums:
                    sums[k] = torch.zeros((), dtype=torch.float64, device=self.device)
                sums[k] += v
            window_steps += 1
            self.elapsed = elapsed0 + time.perf_counter() - start - paused
            out_of_time = bool(t.max_time_s) and self.elapsed >= t.max_time_s
            if t.max_time_s and self.dist.active:  # rank 0's clock decides for all
                out_of_time = distributed.broadcast_flag(self.dist, out_of_time, self.device)
            last = self.step >= self.total_steps or out_of_time
            if self.step % t.log_interval == 0 or last:
                totals = distributed.sum_all(self.dist, sums)  # all ranks' rows
                vals = {k: v.item() for k, v in totals.items()}  # CPU-GPU sync point (once per log interval)
                now = time.perf_counter()
                rate = window_steps / max(now - window_start, 1e-9)
                count = max(vals["count"], 1)
                row = {"lr": t.lr * self._lr_scale(self.step),
                       "train/loss": vals["loss"] / window_steps / t.batch_size,
                       "train/lm_loss": vals["lm_loss"] / window_steps / t.batch_size,
                       "train/accuracy": vals["accuracy"] / count,
                       "train/exact_accuracy": vals["exact_accuracy"] / count,
                       "train/q_halt_accuracy": vals["q_halt_accuracy"] / count,
                       "train/steps": vals["steps"] / count, "steps_per_s": rate, "elapsed_s": self.elapsed}
                if "q_continue_loss" in vals:
                    row["train/q_continue_loss"] = vals["q_continue_loss"] / window_steps / t.batch_size
                if self.skipped:
                    row["train/skipped_steps"] = self.skipped
                if self.logger is not None:
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
                if self.dist.active or int(self.bad_step) >= 0:  # already synced above: free
                    self._check_finite()
            paused0 = time.perf_counter()  # evaluation and checkpoints are not training time
            if t.eval_interval > 0 and self.step % t.eval_interval == 0 and not last and self.dist.main:
                self._log_eval(final=False)  # distributed: the other ranks wait in the next step's all-reduce
            if t.checkpoint_interval > 0 and self.step % t.checkpoint_interval == 0 and not last:
                self.save()
            paused += time.perf_counter() - paused0
            if out_of_time:
                break
        path = self.save()  # the final checkpoint comes before the final evaluation
        if t.calibrate_halt and self.dist.main:
            self._calibrate_halting(path)
        report = None
        if t.eval_interval >= 0 and self.dist.main:
            last_eval = self._log_eval(final=True)  # the evaluation split: the curve's last point, keep_best
            # the final report, on the test split (the same evaluation when that is the evaluation split)
            report = last_eval if self.eval_data is self.test_split else self._final_report()
            self._log_report(report)
        self.progress.close()
        if report is not None:
            self.log(f"final: exact accuracy {report['exact_accuracy']:.3f} on {report['n']} test puzzles")
        self.log(f"checkpoint: {path}")
        return path

    def _calibrate_halting(self, path: Path) -> None:
        """The --adaptive threshold, chosen on the dataset's val/ split, into the final checkpoint."""
        data = Path(self.cfg.train.data)
        if not (data / "val" / "dataset.json").is_file():
            return
        val = load_split(data, "val")
        if self.task is not None:
            check_task_matches(self.task, val.meta, data, "val")
        rec = halting.calibrate(self.eval_model(), val, self.task, step=self.step, batch_size=self.cfg.eval.batch_size,
                                device=self.device)
        self.model.train()
        halting.store(path, rec)
        if rec["threshold"] is None:
            self.log(f"halting: no threshold keeps the accuracy on {rec['n']} validation puzzles; "
                     "--adaptive will run every step")
        else:
            self.log(f"halting: --adaptive will stop at confidence {rec['threshold']} of "
                     f"{halting.SIGNAL_WORDS[rec['signal']]} (on {rec['n']} validation "
                     f"puzzles: exact {rec['adaptive_exact']:.3f} in {rec['adaptive_mean_steps']:.2f} steps, fixed "
                     f"{rec['fixed_exact']:.3f} in {rec['max_steps']})")

    def _final_report(self) -> dict:
        try:
            return self.run_eval(self.test_split)
        except Exception as e:
            self.model.train()
            msg = str(e) if isinstance(e, RecursaError) else f"{type(e).__name__}: {e}"
            raise RecursaError(f"the final evaluation on the test split failed ({msg}); the final checkpoint "
                               f"{self.last_good} was written before it") from e

    def _log_report(self, res: dict) -> None:
        """The run's final report in metrics.jsonl: ``test/`` keys, read by nothing during training."""
        scalars = res.get("_scalars", {})
        row = {f"test/{k}": v for k, v in res.items() if v is not None and not isinstance(v, dict) and k != "_scalars"}
        row.update({f"test/{k}": v for k, v in scalars.items()})
        self.logger.log(self.step, row)

    def _log_eval(self, final: bool) -> dict:
        try:
            res = self.run_eval()
        except Exception as e:
            self.model.train()
            if final:
                saved = f"the final checkpoint {self.last_good} was written before it"
            elif self.dist.active:  # saving needs every rank, which are waiting in a training step
                saved = f"the last checkpoint is {self.last_good}" if self.last_good else "no checkpoint was written"
            else:
                saved = f"the weights were saved first: {self.save()}"
            msg = str(e) if isinstance(e, RecursaError) else f"{type(e).__name__}: {e}"
            raise RecursaError(f"evaluation at step {self.step} failed ({msg}); {saved}") from e
        if self.cfg.train.keep_best:
            self._save_best(res)
        scalars = res.get("_scalars", {})  # the family's metric (ARC pass@K, exact by rating), flat
        flat = {f"eval/{k}": v for k, v in res.items() if v is not None and not isinstance(v, dict) and k != "_scalars"}
        flat.update({f"eval/{k}": v for k, v in scalars.items()})
        flat["eval/split"] = self.eval_split_name
        flat["elapsed_s"] = self.elapsed  # training time at this evaluation (the accuracy-time curve)
        self.logger.log(self.step, flat)
        valid = f"  valid {res['valid_rate']:.3f}" if res.get("valid_rate") is not None else ""  # families with a checker
        self.progress.message(f"eval ({self.eval_split_name}) @ step {self.step}: exact {res['exact_accuracy']:.3f}{valid}  "
                              f"token {res['token_accuracy']:.3f}  by step {' '.join(f'{x:.2f}' for x in res['exact_by_step'])}")
        return res


def fit(cfg: RunConfig, *, resume: bool = False, progress: bool = True, log=print) -> Path:
    """Train (or resume) the run described by ``cfg``; returns the final checkpoint directory."""
    return Trainer(cfg, resume=resume, progress=progress, log=log).fit()
