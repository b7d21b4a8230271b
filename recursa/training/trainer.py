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
import time
from pathlib import Path

import torch

from .. import config as config_mod
from ..config import RunConfig
from ..data.dataset import TrainSampler
from ..data.format import Split
from ..device import pick_device
from ..errors import RecursaError
from ..evaluation import halting
from ..models import ACT, Carry, count_parameters
from . import autodtype, distributed, run_dir, state
from .datasets import Batches, blank_batch, no_val_note, open_data, total_steps
from .evals import Evaluations
from .learner import Learner
from .logging import Progress, add_metrics, eval_row, status_line, train_row
from .losses import act_loss
from .methods import UNBOUNDED, StepContext, methods_for
from .nonfinite import Guard
from .optim import lr_at

# Devices on which the next batch is copied while the current step runs (pinned, non-blocking).
PREFETCH_DEVICES = ("cuda",)


def _silent(*a, **k) -> None:
    """The log of ranks other than 0 in a distributed run."""


class Trainer:
    """One run. Its parts are built by their own modules (run_dir, datasets, learner, methods,
    nonfinite, evals); the trainer runs the steps and decides when to log, evaluate and save."""

    def __init__(self, cfg: RunConfig, *, resume: bool = False, progress: bool = True, log=print):
        t = cfg.train
        self.dist = distributed.from_env()  # torchrun: this process's rank; else a single process
        if not self.dist.main:  # rank 0 alone reports; errors still raise everywhere
            progress, log = False, _silent
        self.cfg, self.log, self.resume = cfg, log, resume
        self.local_batch = self.dist.local_batch(t.batch_size)
        self.rows = self.dist.rows(t.batch_size)
        self.run_dir = Path(t.out)
        run_dir.check_out(self.run_dir, resume)
        self.runs = run_dir.RunDir(self.run_dir, log)
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.device = distributed.setup(self.dist, pick_device(t.device), t.dist_timeout_s)
        self.data = open_data(t)
        self.task, self.spec = self.data.task, self.data.spec
        self.cfg = cfg = autodtype.resolve(cfg, self.spec, self.device, self.dist, log)
        self.methods = methods_for(cfg, self.task)
        self.learner = Learner(cfg, self.spec, self.device, self.dist)
        self.model, self.opt, self.ema = self.learner.model, self.learner.opt, self.learner.ema
        self.sampler = TrainSampler(self.data.train, t.batch_size, t.seed)
        self.batches = Batches(self.sampler, self.rows if self.dist.active else None, self.device,
                               prefetch=self.device.type in PREFETCH_DEVICES)
        self.carry: Carry | None = None
        self.step, self.elapsed = 0, 0.0
        self.guard = Guard(t, self.dist, self.device, self.runs.log_row)
        self.progress = Progress(progress)
        self.evals = Evaluations(cfg, self.data, self.device, self.runs, self.progress)
        self.total_steps = total_steps(t, self.data.train)
        self.n_params = count_parameters(self.model)
        if self.dist.main:
            self.runs.open(cfg, resume, self._load_state)
            distributed.barrier(self.dist)  # the others wait until the run directory is ready
        else:
            distributed.barrier(self.dist)
            if self.resume:
                self._load_state()

    def __del__(self):
        runs = getattr(self, "runs", None)
        if runs is not None:
            runs.release()

    def close(self):
        self.progress.close()
        self.runs.close()

    def _meta(self) -> dict:
        return {"config": config_mod.to_dict(self.cfg), "spec": self.spec.to_dict(), "task": self.data.task_info,
                "arch": self.cfg.model.arch, "params": self.n_params, "ema_weights": self.ema is not None}

    def _check_finite(self):
        self.guard.check(self.learner.tensors(), self.step, lambda step: self.cfg.train.lr * self._lr_scale(step))

    def save(self) -> Path:
        """Write a checkpoint of the current state; refuses (Diverged) when anything is non-finite.
        Distributed: every rank calls it (the carries are gathered in row order, so the checkpoint
        holds the one-process carry); rank 0 writes."""
        self._check_finite()
        carry = self.carry
        if self.dist.active:
            blank = lambda: self.model.initial_carry(blank_batch(self.local_batch, self.spec.seq_len, self.device))  # noqa: E731
            carry = distributed.gather_carry(self.dist, carry, blank, self.device)
        path = self.run_dir / "checkpoints" / f"step_{self.step:07d}"
        if self.dist.main:
            progress = {"step": self.step, "elapsed": self.elapsed, "sampler": self.batches.sampler_state(),
                        "skipped_steps": self.guard.skipped,
                        "data": {"examples": self.data.train.num_examples, "groups": self.data.train.num_groups}}
            weights, tensors, state_json = self.learner.pack(carry, progress)
            path = run_dir.save(self.run_dir, self.step, self._meta(), weights, tensors, state_json,
                                keep=self.cfg.train.keep_checkpoints)
        self.guard.last_good = path
        return path

    def _load_state(self) -> int:
        ckpt, saved, step, elapsed = state.open_resume(self.run_dir, self.cfg, self.data.train, self.log)
        self.learner.restore(saved, self.device)
        self.carry = saved.restore_carry(self.cfg.train.batch_size, self.device, self.rows if self.dist.active else None)
        saved.restore_sampler(self.sampler)
        self.step, self.elapsed = step, float(elapsed)
        self.guard.skipped = int(saved.state.get("skipped_steps", 0) or 0)
        self.guard.last_good = ckpt
        if self.cfg.train.keep_best:
            self.evals.best = run_dir.read_best(self.run_dir, self.cfg.train.keep_best, self.data.eval_name)
        self.log(f"resumed {self.run_dir} at step {self.step}")
        return self.step

    def _lr_scale(self, step: int) -> float:
        """Warm-up then cosine over the steps, or (a time budget only) over the training time used."""
        t = self.cfg.train
        progress = self.elapsed / t.max_time_s if self.total_steps >= UNBOUNDED else None
        return lr_at(step, 1.0, t.lr_warmup_steps, self.total_steps, t.lr_min_ratio, progress)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t = self.cfg.train
        if self.carry is None:
            self.carry = self.model.initial_carry(batch)
        ctx = StepContext(self.step, self.total_steps, self.elapsed, t.max_time_s, t.seed)
        depth = None
        for m in self.methods:
            depth = m.depth(ctx, depth)
        self.model.inner.depth = depth
        self.carry, out = self.learner.net(self.carry, batch, generator=self.learner.gen)
        self.model.inner.depth = None
        c = self.carry
        token_w = halt_w = None
        labels = c.data["labels"]
        for m in self.methods:
            token_w, halt_w = m.weights(c, token_w, halt_w)
            labels = m.labels(c, labels, out["logits"])
        loss, metrics = act_loss(out, labels, c.halted, c.steps, t.loss, token_weights=token_w, halt_weights=halt_w)
        self.step += 1
        if self.guard.skip(loss, self.step):
            return self._skip_step(metrics)
        (loss / self.local_batch).backward()  # distributed: the all-reduce averages over ranks
        for m in self.methods:
            m.after_backward(self.learner.params)
        self.learner.update(self._lr_scale(self.step))
        metrics["loss"] = loss.detach()
        return metrics

    def _skip_step(self, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop this step's update: no optimizer, puzzle-embedding or EMA step; the in-flight puzzles
        (whose recursion state may be non-finite) restart with the next batch."""
        self.learner.drop()
        self.carry = None
        self.progress.message(f"step {self.step}: non-finite loss, step skipped ({self.guard.skipped} so far)")
        self.guard.check_streak(self.step)
        zero = {k: torch.zeros_like(v) for k, v in metrics.items()}
        zero["loss"] = torch.zeros((), device=self.device)
        return zero

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
                self.learner.net = self.model
                gc.collect()
            distributed.teardown(self.dist)

    def _fit(self) -> Path:
        t = self.cfg.train
        sums: dict[str, torch.Tensor] = {}
        self._window = (0, time.perf_counter())  # steps in this logging window, its start
        start, elapsed0, paused = time.perf_counter(), self.elapsed, 0.0
        if t.eval_split == "auto" and self.data.eval_name == "test" and self.dist.main:  # said once all checks passed
            self.log(no_val_note(t))
        self.progress.message(f"training {self.cfg.model.arch} ({self.n_params:,} parameters) on {self.device} "
                              f"-> {self.run_dir}")
        while self.step < self.total_steps:
            add_metrics(sums, self.train_step(self.batches.next()), self.device)
            self._window = (self._window[0] + 1, self._window[1])
            self.elapsed = elapsed0 + time.perf_counter() - start - paused
            out_of_time = bool(t.max_time_s) and self.elapsed >= t.max_time_s
            if t.max_time_s and self.dist.active:  # rank 0's clock decides for all
                out_of_time = distributed.broadcast_flag(self.dist, out_of_time, self.device)
            last = self.step >= self.total_steps or out_of_time
            if self.step % t.log_interval == 0 or last:
                self._log_window(sums)
            paused0 = time.perf_counter()  # evaluation and checkpoints are not training time
            if t.eval_interval > 0 and self.step % t.eval_interval == 0 and not last and self.dist.main:
                self._evaluate(final=False)  # distributed: the other ranks wait in the next step's all-reduce
            if t.checkpoint_interval > 0 and self.step % t.checkpoint_interval == 0 and not last:
                self.save()
            paused += time.perf_counter() - paused0
            if out_of_time:
                break
        return self._finish()

    def _log_window(self, sums: dict[str, torch.Tensor]) -> None:
        """Log the window's metrics (the one host sync of a logging interval) and restart it."""
        t = self.cfg.train
        vals = {k: v.item() for k, v in distributed.sum_all(self.dist, sums).items()}  # all ranks' rows
        now = time.perf_counter()
        steps, began = self._window
        rate = steps / max(now - began, 1e-9)
        row = train_row(vals, steps, t.batch_size, t.lr * self._lr_scale(self.step), rate, self.elapsed,
                        self.guard.skipped)
        self.runs.log_row(self.step, row)
        bounded = self.total_steps < UNBOUNDED
        self.progress.update(status_line(self.step, self.total_steps if bounded else None, row, rate, self.elapsed,
                                         t.max_time_s))
        for v in sums.values():
            v.zero_()
        self._window = (0, now)
        if self.guard.pending():  # already synced above: free
            self._check_finite()

    def _finish(self) -> Path:
        """The final checkpoint, then (it written first) halting calibration and the final evaluation."""
        t = self.cfg.train
        path = self.save()
        if t.calibrate_halt and self.dist.main and (Path(t.data) / "val" / "dataset.json").is_file():
            self.log(halting.calibrate_run(path, self.eval_model(), t.data, self.task, step=self.step,
                                           batch_size=self.cfg.eval.batch_size, device=self.device))
            self.model.train()
        report = None
        if t.eval_interval >= 0 and self.dist.main:
            last_eval = self._evaluate(final=True)  # the evaluation split: the curve's last point, keep_best
            # the final report, on the test split (the same evaluation when that is the evaluation split)
            report = last_eval if self.data.eval is self.data.test else self._evaluate(final=True, report=True)
            self.runs.log_row(self.step, eval_row(report, "test"))  # read by nothing during training
        self.progress.close()
        if report is not None:
            self.log(f"final: exact accuracy {report['exact_accuracy']:.3f} on {report['n']} test puzzles")
        self.log(f"checkpoint: {path}")
        return path

    def eval_model(self) -> ACT:
        return self.learner.eval_model()

    def run_eval(self, split: Split | None = None) -> dict:
        """The evaluation of the model as it is now (EMA weights, if kept) on ``split`` (default:
        the evaluation split, val/ when the dataset has one)."""
        res = self.evals.run(self.eval_model(), split)
        self.model.train()
        return res

    def _evaluate(self, final: bool, report: bool = False) -> dict:
        """An evaluation whose failure says what was saved: the evaluation split (recorded: a
        point of the curve, keep_best), or ``report``: the final report on the test split."""
        try:
            res = self.run_eval(self.data.test) if report else self.run_eval()
        except Exception as e:
            self.model.train()
            last = self.guard.last_good
            if final:
                saved = f"the final checkpoint {last} was written before it"
            elif self.dist.active:  # saving needs every rank, which are waiting in a training step
                saved = f"the last checkpoint is {last}" if last else "no checkpoint was written"
            else:
                saved = f"the weights were saved first: {self.save()}"
            msg = str(e) if isinstance(e, RecursaError) else f"{type(e).__name__}: {e}"
            what = "the final evaluation on the test split" if report else f"evaluation at step {self.step}"
            raise RecursaError(f"{what} failed ({msg}); {saved}") from e
        if not report:
            self.evals.record(res, self.step, self.elapsed, self._meta(), self.learner.inference_weights)
        return res


def fit(cfg: RunConfig, *, resume: bool = False, progress: bool = True, log=print) -> Path:
    """Train (or resume) the run described by ``cfg``; returns the final checkpoint directory."""
    return Trainer(cfg, resume=resume, progress=progress, log=log).fit()
