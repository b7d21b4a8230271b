"""A run directory: held by one trainer (``RUN/.lock``), holding ``config.toml``, ``metrics.jsonl``,
the numbered checkpoints (``RUN/latest`` names the newest; older ones beyond ``keep`` are pruned only
after ``latest`` names the new one) and the best one (``train.keep_best``).

:func:`check_out` refuses a ``train.out`` that is someone else's directory before any work;
:class:`RunDir` takes the lock, cleans what killed runs left, trims the metric log of a resumed run
to its checkpoint and opens the log."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable

import torch

from .. import config as config_mod
from .. import storage
from ..errors import RecursaError
from ..inference.checkpoint import read_meta, step_dirs, write_checkpoint_dir
from ..storage import atomic_write_text
from .logging import MetricLogger

# Entries a run directory may hold (anything else means train.out names someone else's directory).
RUN_ENTRIES = {"config.toml", "metrics.jsonl", "checkpoints", "latest", ".lock", "tensorboard", "wandb"}
# Temporary files of the trainer's own writers (only one trainer holds the run lock, so any left are stale).
_RUN_TEMP = re.compile(r"^\.(latest|config\.toml|metrics\.jsonl)\.")
_CKPT_TEMP = re.compile(r"^\.(step_\d+|best)\.(tmp|old)")


def check_out(d: Path, resume: bool) -> None:
    """train.out is free, empty, or a run directory; never someone else's directory or a file."""
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
    elif resume:
        raise RecursaError(f"{d}: nothing to resume (no 'latest' checkpoint)")


class RunDir:
    """The run directory of one trainer, from :meth:`open` to :meth:`close`."""

    def __init__(self, path: Path, log=print):
        self.path, self.log = Path(path), log
        self.lock = None
        self.logger: MetricLogger | None = None

    def open(self, cfg, resume: bool, restore: Callable[[], int]) -> None:
        """Take the run lock, then (under it) check the directory, ``restore()`` a resumed run's
        state (it returns the step resumed at), write config.toml and open the metric log. A run
        that fails here leaves nothing behind in a directory it created."""
        created = not self.path.exists()
        self.lock = storage.RunLock(self.path, log=self.log).acquire()
        try:
            latest = self.path / "latest"
            if not resume and latest.exists():
                raise RecursaError(f"{self.path}: run directory already has checkpoints; use --resume or another train.out")
            if resume and not latest.exists():
                raise RecursaError(f"{self.path}: nothing to resume (no 'latest' checkpoint)")
            self._clean_leftovers()
            if resume:
                self._trim_metrics(restore())
            storage.atomic_write_text(self.path / "config.toml", config_mod.to_toml(cfg))
            self.logger = MetricLogger(self.path, cfg.train.loggers, config_mod.to_dict(cfg), resume)
        except BaseException:
            self.lock.release()
            if created:  # leave nothing behind for a run that never started
                (self.path / ".lock").unlink(missing_ok=True)
                try:
                    self.path.rmdir()
                except OSError:
                    pass
            raise

    def log_row(self, step: int, row: dict) -> None:
        if self.logger is not None:
            self.logger.log(step, row)

    def _clean_leftovers(self):
        """Temporary files and checkpoint dirs of killed trainers (we hold the lock: none is live)."""
        removed = []
        for root, pattern in ((self.path, _RUN_TEMP), (self.path / "checkpoints", _CKPT_TEMP)):
            if not root.is_dir():
                continue
            for e in sorted(root.iterdir()):
                if pattern.match(e.name):
                    storage.remove_tree(e)
                    removed.append(e.name)
        if removed:
            self.log(f"note: removed {len(removed)} temporary file(s) left by an interrupted run in {self.path}: "
                     + ", ".join(removed[:4]) + (" ..." if len(removed) > 4 else ""))

    def _trim_metrics(self, step: int):
        """Drop metric rows logged after the checkpoint we resume from (they will be logged again)
        and any line torn by a kill, so metrics.jsonl stays one row per step."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return
        keep, dropped = [], 0
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                ok = isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step
            except (ValueError, RecursionError):
                ok = False
            if ok:
                keep.append(line)
            else:
                dropped += 1
        if dropped:
            storage.atomic_write_text(path, "".join(x + "\n" for x in keep))
            self.log(f"note: {path}: dropped {dropped} row(s) logged after step {step}, the checkpoint resumed from")

    def close(self):
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        self.release()

    def release(self):
        if self.lock is not None:
            self.lock.release()


def save(run_dir: Path, step: int, meta: dict, model_weights: dict[str, torch.Tensor],
         state_tensors: dict[str, torch.Tensor], state_json: dict, keep: int = 2) -> Path:
    run_dir = Path(run_dir)
    ckpt_root = run_dir / "checkpoints"
    final = write_checkpoint_dir(ckpt_root / f"step_{step:07d}", {**meta, "step": step}, model_weights,
                                 {"train_state.safetensors": state_tensors, "train_state.json": state_json})
    try:
        atomic_write_text(run_dir / "latest", f"checkpoints/{final.name}\n")
    except OSError as e:
        raise storage.write_failure(run_dir / "latest", "pointer to the newest checkpoint", e) from e
    for p in step_dirs(ckpt_root)[:-keep]:
        if p != final:
            shutil.rmtree(p, ignore_errors=True)
    return final


def save_best(run_dir: Path, meta: dict, model_weights: dict[str, torch.Tensor]) -> Path:
    """Write (replace) ``RUN/checkpoints/best``: inference weights and config, with ``meta["best"]``
    = {"metric", "value", "step"}. Never pruned; not a point to resume from."""
    return write_checkpoint_dir(Path(run_dir) / "checkpoints" / "best", meta, model_weights)


def read_best(run_dir: Path, metric: str, split: str | None = None) -> dict | None:
    """The ``best`` record of a run's best checkpoint, if it has one for ``metric`` (and, given
    ``split``, measured on that split; a record without one was measured on test)."""
    path = Path(run_dir) / "checkpoints" / "best" / "config.json"
    if not path.is_file():
        return None
    best = read_meta(path.parent).get("best")
    if not (isinstance(best, dict) and isinstance(best.get("value"), (int, float)) and isinstance(best.get("metric"), str)):
        raise RecursaError(f"{path}: 'best' must be an object with the metric, its value and the step")
    if best["metric"] != metric and not best["metric"].endswith("/" + metric):
        return None  # kept by another metric: the first evaluation replaces it
    if split is not None and best.get("split", "test") != split:
        return None  # measured on another split: not comparable, the first evaluation replaces it
    return best


def best_record(res: dict, metric: str, previous: dict | None, step: int, split: str | None) -> dict | None:
    """The new ``best`` record when evaluation ``res`` beats ``previous`` on ``metric`` (a core
    metric or a family's scalar, e.g. ARC pass@2), else None."""
    flat = {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    flat.update(res.get("_scalars", {}))
    key = metric if metric in flat else next((k for k in flat if k.endswith("/" + metric)), None)
    if key is None or flat[key] is None:
        names = sorted(k for k, v in flat.items() if isinstance(v, float))
        raise RecursaError(f"train.keep_best = {metric!r}: the evaluation has no such metric "
                           f"(it has {', '.join(names)})")
    value = float(flat[key])
    if previous is not None and value <= previous["value"]:
        return None
    return {"metric": key, "value": value, "step": step, "split": split}
