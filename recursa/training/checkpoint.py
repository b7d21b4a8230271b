"""Checkpoints: complete, boring, safe to load (no pickle).

A checkpoint is a directory ``RUN/checkpoints/step_0000123/`` holding

- ``config.json``        resolved run config, data spec, task, step, parameter count;
- ``model.safetensors``  the weights to use for inference (the EMA weights when EMA is on);
- ``train_state.safetensors`` + ``train_state.json``  everything needed to resume exactly: raw
  weights and buffers, EMA shadow, optimiser moments, the ACT carry (recursion state and current
  puzzles of every batch row), generator states, sampler position, step and elapsed time.

It is written to a temporary directory and renamed into place; ``RUN/latest`` (a one-line file,
replaced atomically) names the newest one. Older checkpoints beyond ``keep`` are deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import RecursaError

FORMAT_VERSION = 1


def atomic_write_text(path: Path, text: str):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def write_checkpoint_dir(final: Path, meta: dict, model_weights: dict[str, torch.Tensor],
                         extra: dict[str, dict[str, torch.Tensor] | object] | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ ``extra`` files: tensors dicts as
    safetensors, anything else as JSON) into a temporary sibling, then rename it to ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        (tmp / "config.json").write_text(json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=1))
        save_file(_contiguous(model_weights), str(tmp / "model.safetensors"))
        for name, content in (extra or {}).items():
            if name.endswith(".safetensors"):
                save_file(_contiguous(content), str(tmp / name))
            else:
                (tmp / name).write_text(json.dumps(content))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def save(run_dir: Path, step: int, meta: dict, model_weights: dict[str, torch.Tensor],
         state_tensors: dict[str, torch.Tensor], state_json: dict, keep: int = 2) -> Path:
    run_dir = Path(run_dir)
    ckpt_root = run_dir / "checkpoints"
    final = write_checkpoint_dir(ckpt_root / f"step_{step:07d}", {**meta, "step": step}, model_weights,
                                 {"train_state.safetensors": state_tensors, "train_state.json": state_json})
    atomic_write_text(run_dir / "latest", f"checkpoints/{final.name}\n")
    old = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    for p in old[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def resolve(path: str | Path) -> Path:
    """A checkpoint directory from either itself or a run directory (via its ``latest`` file)."""
    path = Path(path)
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    latest = path / "latest"
    if latest.is_file():
        target = path / latest.read_text().strip()
        if (target / "config.json").is_file():
            return target
        raise RecursaError(f"{latest}: points to {target}, which is not a checkpoint")
    if not path.exists():
        raise RecursaError(f"{path}: checkpoint not found")
    raise RecursaError(f"{path}: not a checkpoint (no config.json + model.safetensors) and not a run directory (no 'latest' file)")


def read_meta(ckpt: Path) -> dict:
    path = ckpt / "config.json"
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecursaError(f"{path}: invalid JSON: {e}") from None
    for key in ("config", "spec", "step"):
        if key not in meta:
            raise RecursaError(f"{path}: missing key '{key}'")
    if meta.get("format_version") != FORMAT_VERSION:
        raise RecursaError(f"{path}: checkpoint format {meta.get('format_version')!r} is not supported (expected {FORMAT_VERSION})")
    return meta


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise RecursaError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise RecursaError(f"{path}: unreadable safetensors file ({e})") from None


def load_weights_into(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path):
    """Strict load that names every missing, unexpected or wrongly-shaped key."""
    own = model.state_dict()
    problems = []
    for k in sorted(own.keys() - weights.keys()):
        problems.append(f"missing {k}")
    for k in sorted(weights.keys() - own.keys()):
        problems.append(f"unexpected {k}")
    for k in sorted(own.keys() & weights.keys()):
        if tuple(own[k].shape) != tuple(weights[k].shape):
            problems.append(f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}")
    if problems:
        raise RecursaError(f"{source}: weights do not match the model config: " + "; ".join(problems))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()})
