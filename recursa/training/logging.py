"""Metric sinks (JSONL always; TensorBoard / W&B when asked and installed) and the progress line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..errors import RecursaError


class MetricLogger:
    def __init__(self, run_dir: Path, sinks: list[str], config: dict, resume: bool):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.file = open(self.path, "a" if resume else "w", encoding="utf-8")
        self.tb = self.wandb = None
        if "tensorboard" in sinks:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise RecursaError("train.loggers includes 'tensorboard' but it is not installed (pip install 'recursa[tensorboard]')") from None
            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        if "wandb" in sinks:
            try:
                import wandb
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
