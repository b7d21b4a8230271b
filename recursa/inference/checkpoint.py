"""The checkpoint format, and loading a checkpoint for inference.

A checkpoint is a directory ``RUN/checkpoints/step_0000123/`` holding

- ``config.json``        resolved run config, data spec, task, step, parameter count, and the
  SHA-256 of every other file of the checkpoint (``files``), checked whenever a file is loaded;
- ``model.safetensors``  the weights to use for inference (the EMA weights when EMA is on);
- for a training run, ``train_state.safetensors`` + ``train_state.json``: everything needed to
  resume exactly (written and read by :mod:`recursa.training.state`).

:func:`write_checkpoint_dir` writes one into a staging directory, flushes it to disk and swaps it
into place atomically (:func:`recursa.storage.replace_dir`), so a crash leaves the old or the new
checkpoint, never a mix; ``RUN/latest`` (a one-line file, replaced atomically) names the newest one
(:func:`resolve` follows it). Nothing executes code on load: safetensors + JSON.

:func:`load_checkpoint` rebuilds the model from the checkpoint's own config, ready for the engine
(:mod:`recursa.inference.checkpoint.engine`). The format lives here, below training, because inference is the
lowest layer that reads it; the trainer writes it through the same functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import config as config_mod
from .. import storage
from ..errors import RecursaError
from ..models import ACT, DataSpec, build_model
from ..tasks import Task, load_task

FORMAT_VERSION = 1
STEP_DIR = re.compile(r"^step_(\d+)$")


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_checkpoint_dir(final: Path, meta: dict, model_weights: dict[str, torch.Tensor],
                         extra: dict[str, dict[str, torch.Tensor] | object] | None = None) -> Path:
    """Write ``model.safetensors`` (+ ``extra`` files: tensor dicts as safetensors, anything else
    as JSON) and then ``config.json`` with their checksums into a staging sibling, flush them,
    then swap it in at ``final`` atomically. The caller decides whether ``final`` may be replaced."""
    final = Path(final)
    tmp = storage.staging_dir(final)
    umask = os.umask(0)
    os.umask(umask)
    try:
        files = {"model.safetensors": model_weights, **(extra or {})}
        sums = {}
        for name, content in files.items():
            path = tmp / name
            if name.endswith(".safetensors"):
                save_file(_contiguous(content), str(path))
            else:
                path.write_text(json.dumps(content))
            storage.fsync_path(path)
            os.chmod(path, 0o666 & ~umask)
            sums[name] = sha256_file(path)
        config = tmp / "config.json"
        with open(config, "w", encoding="utf-8") as f:
            f.write(json.dumps({"format_version": FORMAT_VERSION, **meta, "files": sums}, indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(config, 0o666 & ~umask)
        os.chmod(tmp, 0o777 & ~umask)
        storage.fsync_path(tmp)
        storage.replace_dir(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (OSError, SafetensorError)):  # disk full, read-only...: the old one is intact
            raise storage.write_failure(final, "checkpoint", e) from e
        raise
    return final


def step_dirs(ckpt_root: Path) -> list[Path]:
    """The checkpoint directories of a run, oldest first (by step number)."""
    if not ckpt_root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def resolve(path: str | Path) -> Path:
    """A checkpoint directory from itself, a run directory (via its ``latest`` file), or
    ``RUN/latest`` / ``RUN/best`` (the best checkpoint kept by ``train.keep_best``)."""
    path = Path(path)
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    if path.name == "best" and not path.exists() and (path.parent / "latest").is_file():
        best = path.parent / "checkpoints" / "best"
        if (best / "config.json").is_file():
            return best
        raise RecursaError(f"{path}: the run has no best checkpoint (train.keep_best was not set, or no "
                           "evaluation has run yet)")
    if path.name == "latest" and path.is_file():
        path = path.parent
    latest = path / "latest"
    if latest.is_file():
        name = storage.read_text(latest).strip()
        target = path / name
        if name and (target / "config.json").is_file():
            return target
        raise RecursaError(f"{latest}: points to {target}, which is not a checkpoint")
    if not path.exists():
        raise RecursaError(f"{path}: checkpoint not found")
    raise RecursaError(f"{path}: not a checkpoint (no config.json + model.safetensors) and not a run directory (no 'latest' file)")


def read_meta(ckpt: Path) -> dict:
    path = ckpt / "config.json"
    meta = storage.read_json(path, expect=dict)
    if meta.get("format_version") != FORMAT_VERSION:
        raise RecursaError(f"{path}: checkpoint format {meta.get('format_version')!r} is not supported (expected {FORMAT_VERSION})")
    for key in ("config", "spec", "step"):
        if key not in meta:
            raise RecursaError(f"{path}: missing key '{key}'")
    if not isinstance(meta["config"], dict):
        raise RecursaError(f"{path}: 'config' must be a JSON object")
    if not isinstance(meta["step"], int) or isinstance(meta["step"], bool) or meta["step"] < 0:
        raise RecursaError(f"{path}: 'step' must be an integer >= 0, got {meta['step']!r}")
    files = meta.get("files")
    if files is not None and not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
        raise RecursaError(f"{path}: 'files' must map file names to SHA-256 hex digests")
    return meta


def verify(path: Path, meta: dict) -> None:
    """Check ``path`` (a file of the checkpoint) against the checksum recorded in ``meta``.
    Checkpoints written before checksums existed have none and are not checked."""
    expected = (meta.get("files") or {}).get(path.name)
    if expected is None:
        return
    if not path.is_file():
        raise RecursaError(f"{path}: missing")
    if sha256_file(path) != expected:
        raise RecursaError(f"{path}: checksum mismatch: the file changed or was damaged after it was written "
                           f"(SHA-256 recorded in {path.parent / 'config.json'})")


def load_tensors(path: Path, meta: dict | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file of a checkpoint, verified against ``meta``'s checksum when given."""
    if not path.is_file():
        raise RecursaError(f"{path}: missing")
    if meta is not None:
        verify(path, meta)
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


@dataclass
class Loaded:
    model: ACT
    task: Task | None
    cfg: config_mod.RunConfig
    spec: DataSpec
    meta: dict
    path: Path


def _check_spec(spec, path: Path) -> DataSpec:
    """The checkpoint's data spec: an object of three positive integers."""
    if not isinstance(spec, dict):
        raise RecursaError(f"{path}: 'spec' must be an object with vocab_size, seq_len, num_puzzle_identifiers; "
                           f"got {spec!r}")
    for key in ("vocab_size", "seq_len", "num_puzzle_identifiers"):
        v = spec.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise RecursaError(f"{path}: spec.{key} must be an integer >= 1, got {v!r}")
    unknown = sorted(set(spec) - {"vocab_size", "seq_len", "num_puzzle_identifiers"})
    if unknown:
        raise RecursaError(f"{path}: spec has unknown key(s) {', '.join(map(repr, unknown))}")
    return DataSpec(**spec)


def _checkpoint_task(info, spec: DataSpec, path: Path) -> Task | None:
    """The checkpoint's task (None when it has none), which must agree with its spec."""
    if not info:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("task"), str) or not isinstance(info.get("params", {}), dict):
        raise RecursaError(f"{path}: 'task' must be an object with a task name and a 'params' object, got {info!r}")
    try:
        task = load_task(info)
    except RecursaError as e:
        raise RecursaError(f"{path}: {e}") from None
    except (ValueError, IndexError, OverflowError, MemoryError) as e:  # e.g. a float where an int belongs
        raise RecursaError(f"{path}: task {info['task']!r}: bad parameters {info.get('params')}: {e}") from None
    if (task.vocab_size, task.seq_len) != (spec.vocab_size, spec.seq_len):
        raise RecursaError(f"{path}: the task ({task.describe()}) has vocab_size {task.vocab_size} / seq_len "
                           f"{task.seq_len}, but the model's spec says {spec.vocab_size} / {spec.seq_len}")
    return task


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", dtype: str | None = None) -> Loaded:
    """Load a recursa checkpoint; ``dtype`` ("float32"/"bfloat16") computes in that dtype instead of
    the one it was trained with (weights are stored in float32 either way)."""
    ckpt = resolve(path)
    meta = read_meta(ckpt)
    try:
        if not isinstance(meta["config"], dict):
            raise RecursaError(f"'config' must be an object, got {type(meta['config']).__name__}")
        cfg = config_mod.from_dict(meta["config"])
    except (TypeError, config_mod.RecursaError) as e:
        raise config_mod.RecursaError(f"{ckpt / 'config.json'}: {e}") from None
    if dtype is not None and dtype != cfg.model.forward_dtype:
        if dtype not in ("float32", "bfloat16"):
            raise config_mod.RecursaError(f"--dtype {dtype!r}: choose float32 or bfloat16")
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, forward_dtype=dtype))
    spec = _check_spec(meta["spec"], ckpt / "config.json")
    task = _checkpoint_task(meta.get("task"), spec, ckpt / "config.json")
    if task is not None:
        spec = dataclasses.replace(spec, grid=task.grid, groups=task.groups)  # the task owns its grid shape
    model = build_model(cfg.model, spec)
    load_weights_into(model, load_tensors(ckpt / "model.safetensors", meta), ckpt / "model.safetensors")
    model.to(device).eval()
    return Loaded(model, task, cfg, spec, meta, ckpt)


