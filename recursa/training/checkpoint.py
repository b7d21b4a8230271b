"""Checkpoints: complete, boring, safe to load (no pickle), verified on load.

A checkpoint is a directory ``RUN/checkpoints/step_0000123/`` holding

- ``config.json``        resolved run config, data spec, task, step, parameter count, and the
  SHA-256 of every other file of the checkpoint (``files``), checked whenever a file is loaded;
- ``model.safetensors``  the weights to use for inference (the EMA weights when EMA is on);
- ``train_state.safetensors`` + ``train_state.json``  everything needed to resume exactly: raw
  weights and buffers, EMA shadow, optimiser moments, the ACT carry (recursion state and current
  puzzles of every batch row), generator states, sampler position, step and elapsed time.

It is written into a staging directory, flushed to disk and swapped into place atomically
(:func:`recursa.storage.replace_dir`), so a crash leaves the old or the new checkpoint, never a
mix; ``RUN/latest`` (a one-line file, replaced atomically) names the newest one. Older
checkpoints beyond ``keep`` are deleted only after ``latest`` names the new one.

:func:`pack_train_state` turns a trainer's objects (model, EMA, optimiser, carry, generator) into
those files' contents and :class:`TrainStateReader` restores them, so the trainer holds no file
format of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import storage
from ..errors import RecursaError
from ..storage import atomic_write_text

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


# ---------------------------------------------------------------------- a run's training state
def pack_train_state(model: torch.nn.Module, ema, opt: torch.optim.Optimizer, carry, gen: torch.Generator,
                     progress: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """What :func:`save` writes for a training run: (inference weights, ``train_state`` tensors,
    ``train_state`` JSON). The inference weights are the EMA ones when ``ema`` is on. ``progress``
    (step, elapsed, sampler state, skipped steps, data size) goes into the JSON as it is."""
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.shadow.items()})
    opt_state = opt.state_dict()
    opt_json = {"param_groups": opt_state["param_groups"], "state_keys": {}}
    for idx, st in opt_state["state"].items():
        opt_json["state_keys"][str(idx)] = sorted(st)
        for name, v in st.items():
            tensors[f"optim.{idx}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    if carry is not None:
        for i, s in enumerate(carry.state):
            tensors[f"carry.state.{i}"] = s
        tensors["carry.steps"], tensors["carry.halted"] = carry.steps, carry.halted
        tensors.update({f"carry.data.{k}": v for k, v in carry.data.items()})
    tensors["rng.torch"] = gen.get_state()
    state_json = {**progress, "optimizer": opt_json, "has_carry": carry is not None,
                  "carry_state_len": len(carry.state) if carry is not None else 0}
    weights = model.state_dict()
    if ema is not None:
        weights = {**weights, **ema.shadow}
    return weights, tensors, state_json


class TrainStateReader:
    """A checkpoint's ``train_state`` files, read and verified, restored piece by piece into a
    trainer's objects; every problem is one error naming the file and the key."""

    def __init__(self, ckpt: Path, meta: dict):
        self.ts_path, self.sj_path = ckpt / "train_state.safetensors", ckpt / "train_state.json"
        self.tensors = load_tensors(self.ts_path, meta)
        verify(self.sj_path, meta)
        self.state = storage.read_json(self.sj_path, expect=dict)

    def field(self, key: str, kind, what: str):
        v = self.state.get(key)
        if v is None or not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise RecursaError(f"{self.sj_path}: missing or invalid '{key}' (expected {what})")
        return v

    def tensor(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            raise RecursaError(f"{self.ts_path}: missing tensor '{name}'")
        return self.tensors[name]

    def restore_model(self, model: torch.nn.Module, ema, device) -> None:
        load_weights_into(model, {k[6:]: v for k, v in self.tensors.items() if k.startswith("model.")}, self.ts_path)
        if ema is not None:
            shadow = {k[4:]: v.to(device) for k, v in self.tensors.items() if k.startswith("ema.")}
            for k, v in ema.shadow.items():
                if k not in shadow or shadow[k].shape != v.shape:
                    raise RecursaError(f"{self.ts_path}: missing or wrongly-shaped EMA tensor 'ema.{k}'")
            ema.shadow = {k: shadow[k].to(v.dtype) for k, v in ema.shadow.items()}

    def restore_optimizer(self, opt: torch.optim.Optimizer, what: str) -> None:
        """``what`` names the optimiser setting for the error when the state does not fit it."""
        opt_json = self.field("optimizer", dict, "the optimizer state")
        try:
            groups = opt_json["param_groups"]
            keys = opt_json["state_keys"]
            params = [p for g in opt.param_groups for p in g["params"]]
            opt_state = {"param_groups": groups, "state": {}}
            for i, names in keys.items():
                st = {}
                for n in names:
                    v = self.tensor(f"optim.{i}.{n}")
                    if n in ("exp_avg", "exp_avg_sq", "momentum_buffer") and v.shape != params[int(i)].shape:
                        raise RecursaError(f"{self.ts_path}: optim.{i}.{n} has shape {tuple(v.shape)}, the parameter "
                                           f"{tuple(params[int(i)].shape)}")
                    st[n] = v
                opt_state["state"][int(i)] = st
            opt.load_state_dict(opt_state)
        except RecursaError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            raise RecursaError(f"{self.sj_path}: the optimizer state does not fit {what} "
                               f"({type(e).__name__}: {e})") from None

    def restore_carry(self, batch_size: int, device):
        """The saved ACT carry (None when the run had none), checked against ``batch_size`` rows."""
        from ..models.act import Carry

        if not self.field("has_carry", bool, "true/false"):
            return None
        n = self.field("carry_state_len", int, "an integer")
        t = self.tensor
        carry = Carry(state=tuple(t(f"carry.state.{i}").to(device) for i in range(n)),
                      steps=t("carry.steps").to(device), halted=t("carry.halted").to(device),
                      data={k: t(f"carry.data.{k}").to(device) for k in ("inputs", "labels", "puzzle_identifiers")})
        if any(x.shape[0] != batch_size for x in (*carry.state, carry.steps, carry.halted, *carry.data.values())):
            raise RecursaError(f"{self.ts_path}: the saved ACT carry is not for train.batch_size = {batch_size}")
        return carry

    def restore_generator(self, gen: torch.Generator) -> None:
        try:
            gen.set_state(self.tensor("rng.torch"))
        except (RuntimeError, TypeError) as e:
            raise RecursaError(f"{self.ts_path}: tensor 'rng.torch' is not a generator state ({e})") from None

    def restore_sampler(self, sampler) -> None:
        state = self.field("sampler", dict, "the sampler state")
        try:
            sampler.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as e:
            raise RecursaError(f"{self.sj_path}: invalid 'sampler' state ({type(e).__name__}: {e})") from None
