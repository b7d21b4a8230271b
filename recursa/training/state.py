"""A training run's state in a checkpoint (``train_state.safetensors`` + ``train_state.json``):
raw weights and buffers, EMA shadow, optimiser moments, the ACT carry (recursion state and current
puzzles of every batch row), generator states, sampler position, step and elapsed time.

:func:`pack_train_state` turns a trainer's objects into those files' contents and
:class:`TrainStateReader` restores them, so the trainer holds no file format of its own.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import config as config_mod
from .. import storage
from ..errors import RecursaError
from ..inference.checkpoint import load_tensors, load_weights_into, read_meta, resolve, verify
from ..models.act import Carry

# Resuming with a different value of these cannot continue the saved state.
RESUME_FIXED = ("batch_size", "optimizer", "ema")


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

    def restore_carry(self, batch_size: int, device, rows: slice | None = None):
        """The saved ACT carry (None when the run had none), checked against ``batch_size`` rows;
        ``rows``: this rank's rows of it (a distributed run)."""
        if not self.field("has_carry", bool, "true/false"):
            return None
        n = self.field("carry_state_len", int, "an integer")
        t = self.tensor
        carry = Carry(state=tuple(t(f"carry.state.{i}").to(device) for i in range(n)),
                      steps=t("carry.steps").to(device), halted=t("carry.halted").to(device),
                      data={k: t(f"carry.data.{k}").to(device) for k in ("inputs", "labels", "puzzle_identifiers")})
        if any(x.shape[0] != batch_size for x in (*carry.state, carry.steps, carry.halted, *carry.data.values())):
            raise RecursaError(f"{self.ts_path}: the saved ACT carry is not for train.batch_size = {batch_size}")
        return carry.map(lambda x: x[rows].clone()) if rows is not None else carry

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


def check_resume_config(ckpt: Path, meta: dict, cfg, log) -> None:
    """A resumed run must have the checkpoint's model and the train settings its state depends on
    (:data:`RESUME_FIXED`); other changed train settings are logged (the run will differ)."""
    cfg_path = ckpt / "config.json"
    saved = meta["config"]
    now = config_mod.to_dict(cfg)
    try:  # fields added since the checkpoint was written take their defaults
        saved_cfg = config_mod.RunConfig(model=config_mod.from_dict({"model": saved.get("model") or {}}).model)
    except (RecursaError, TypeError) as e:
        raise RecursaError(f"{cfg_path}: invalid [model] section ({e})") from None
    # settings without effect (num_heads under the MLP token mixer...) may differ: same model
    moot = {k.split(".", 1)[1] for k in (*config_mod.ineffective(saved_cfg), *config_mod.ineffective(cfg))
            if k.startswith("model.")}
    saved_model = {k: v for k, v in config_mod.to_dict(saved_cfg)["model"].items() if k not in moot}
    now_model = {k: v for k, v in now["model"].items() if k not in moot}
    if saved_model != now_model:
        if {k for k in saved_model if saved_model[k] != now_model.get(k)} == {"forward_dtype"}:
            was = saved_model["forward_dtype"]
            raise RecursaError(f"{ckpt}: the run trained with model.forward_dtype = \"{was}\", this one would compute "
                               f"in {now_model['forward_dtype']} (\"auto\" measures each machine); resume with "
                               f"--set model.forward_dtype={was}")
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
        log("note: resuming with changed settings (the run will differ from an uninterrupted one): " + ", ".join(changed))


def open_resume(run: Path, cfg, train_split, log):
    """The checkpoint a run resumes from, checked against ``cfg`` and its training split:
    (checkpoint directory, its :class:`TrainStateReader`, step, elapsed seconds)."""
    ckpt = resolve(run)
    meta = read_meta(ckpt)
    check_resume_config(ckpt, meta, cfg, log)
    saved = TrainStateReader(ckpt, meta)
    step = saved.field("step", int, "an integer")
    elapsed = saved.field("elapsed", (int, float), "a number")
    check_same_data(saved, train_split, cfg.train.data)
    return ckpt, saved, step, elapsed


def check_same_data(reader: TrainStateReader, train_split, data_dir) -> None:
    """The checkpoint's training split had the same examples and groups as ``train_split``."""
    data = reader.state.get("data")
    if isinstance(data, dict) and (data.get("examples"), data.get("groups")) != (
            train_split.num_examples, train_split.num_groups):
        raise RecursaError(f"{data_dir}: the training split has {train_split.num_examples} examples in "
                           f"{train_split.num_groups} groups, the run was trained on {data.get('examples')} in "
                           f"{data.get('groups')} ({reader.sj_path}); resume on the same dataset")
