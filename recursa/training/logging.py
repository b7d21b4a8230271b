"""Metric sinks (JSONL always; TensorBoard / W&B when asked and installed) and the progress line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ..errors import RecursaError


class MetricLogger:
    def __init__(self, run_dir: Path, sinks: list[str], config: dict, resume: bool):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.file = open(self.path, "a" if resume else "w", encoding="utf-8")
        self.tb = self.wandb = None
        if "tensorboard" in sinks:
            try:
                from torch.utils.tensorboard import SummaryWriter  # late: optional (recursa[tensorboard])
            except ImportError:
                raise RecursaError("train.loggers includes 'tensorboard' but it is not installed (pip install 'recursa[tensorboard]')") from None
            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        if "wandb" in sinks:
            try:
                import wandb  # late: optional dependency (pip install 'recursa[wandb]')
            except ImportError:
                raise RecursaError("train.loggers includes 'wandb' but it is not installed (pip install 'recursa[wandb]')") from None
            self.wandb = wandb.init(project="recursa", name=Path(run_dir).name, config=config, resume="allow")

    def log(self, step: int, metrics: dict):
        self.file.write(json.dumps({"step": step, "time": round(time.time(), 3), **metrics}) + "\n")
        self.file.flush()
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                if self.tb is not None:
                    self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def close(self):
        self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def add_metrics(sums: dict, metrics: dict, device) -> None:
    """Add a step's metrics (device tensors) into the window's float64 sums: no host sync."""
    for k, v in metrics.items():
        if k not in sums:
            sums[k] = torch.zeros((), dtype=torch.float64, device=device)
        sums[k] += v


def train_row(vals: dict[str, float], window_steps: int, batch_size: int, lr: float, rate: float,
              elapsed: float, skipped: int) -> dict:
    """The metrics.jsonl row of a logging window from the summed step metrics ``vals`` (losses are
    per puzzle row and step, accuracies per counted row)."""
    count = max(vals["count"], 1)
    row = {"lr": lr, "train/loss": vals["loss"] / window_steps / batch_size,
           "train/lm_loss": vals["lm_loss"] / window_steps / batch_size,
           "train/accuracy": vals["accuracy"] / count, "train/exact_accuracy": vals["exact_accuracy"] / count,
           "train/q_halt_accuracy": vals["q_halt_accuracy"] / count,
           "train/steps": vals["steps"] / count, "steps_per_s": rate, "elapsed_s": elapsed}
    if "q_continue_loss" in vals:
        row["train/q_continue_loss"] = vals["q_continue_loss"] / window_steps / batch_size
    if skipped:
        row["train/skipped_steps"] = skipped
    return row


def status_line(step: int, total_steps: int | None, row: dict, rate: float, elapsed: float, max_time_s: float) -> str:
    """The progress line of a logging window; ``total_steps`` None: a run bounded by time only."""
    if total_steps is None:
        eta = max_time_s - elapsed
    else:
        eta = (total_steps - step) / max(rate, 1e-9)
        if max_time_s:
            eta = min(eta, max_time_s - elapsed)
    total = "" if total_steps is None else f"/{total_steps}"
    return (f"step {step}{total}  loss {row['train/loss']:.4f}  acc {row['train/accuracy']:.3f}  "
            f"exact {row['train/exact_accuracy']:.3f}  {rate:.1f} steps/s  elapsed {fmt_time(elapsed)}  ETA {fmt_time(eta)}")


def eval_row(res: dict, prefix: str) -> dict:
    """An evaluation's numbers under ``prefix/`` (its dicts left out, the family's scalars flat)."""
    row = {f"{prefix}/{k}": v for k, v in res.items() if v is not None and not isinstance(v, dict) and k != "_scalars"}
    row.update({f"{prefix}/{k}": v for k, v in res.get("_scalars", {}).items()})
    return row


def fmt_time(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """One status line: redrawn in place on a terminal, printed as lines otherwise."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.closed = False

    def update(self, text: str):
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str):
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.enabled and self.tty and not self.closed:
            self.stream.write("\n")
            self.stream.flush()
        self.closed = True
