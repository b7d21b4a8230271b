"""A run directory's checkpoints: the numbered ones (``RUN/latest`` names the newest; older ones
beyond ``keep`` are pruned only after ``latest`` names the new one) and the best one
(``train.keep_best``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from .. import storage
from ..errors import RecursaError
from ..inference.checkpoint import read_meta, step_dirs, write_checkpoint_dir
from ..storage import atomic_write_text


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
