"""Import checkpoints written by the official TRM / HRM / URM code into recursa checkpoints.

An official checkpoint is a ``torch.save``d state dict of the (usually ``torch.compile``d) loss
head, so keys look like ``_orig_mod.model.inner.L_level.layers.0.mlp.gate_up_proj.weight``
(``model.inner.`` without compile; URM wraps it as ``{"model_state_dict": ...}`` beside its optimizer
states). recursa's module names equal the official ones, so the import
strips the prefix, casts to float32 (bf16 ``H_init``/``L_init`` included) and checks every key
and shape against the model described by the official ``all_config.yaml``.

Loading uses ``torch.load(weights_only=True)``: a file that wants to run code while unpickling is
refused. The identifier -> embedding-row mapping is not in official checkpoints; pass the
dataset's ``identifiers.json`` (or ``--data``) to keep it with the imported checkpoint.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
import yaml

from .. import config as config_mod
from .. import storage
from ..data.format import load_split
from ..errors import RecursaError
from ..models import MODELS, DataSpec, build_model, count_parameters
from ..tasks import read_task_info
from . import checkpoint

# official arch field -> recursa ModelConfig field (same meaning)
SAME = ("hidden_size", "num_heads", "expansion", "H_cycles", "L_cycles", "L_layers", "halt_max_steps",
        "halt_exploration_prob", "pos_encodings", "puzzle_emb_ndim", "rms_norm_eps", "rope_theta", "forward_dtype")
TRM_ONLY = ("mlp_t", "puzzle_emb_len", "no_ACT_continue")
# Known fields that describe the data or the training setup, not the architecture.
DATA_FIELDS = ("name", "loss", "batch_size", "seq_len", "vocab_size", "num_puzzle_identifiers")
PREFIXES = ("_orig_mod.", "model.")
# Keys URM's arch yaml holds that are evaluation or run settings, not the architecture.
URM_NOT_ARCH = ("loop_deltas", "profile", "eval_interval", "checkpoint_every_eval", "checkpoint_path", "ema", "ema_rate")


def detect_arch(name: str) -> str | None:
    """recursa arch of an official ``arch.name`` (``recursive_reasoning.trm@...``, ``...hrm@...``,
    ``...trm_singlez@...`` (TRM with ``single_latent``), ``...trm_hier6@...`` (TRM with
    ``latents = 6``), ``...transformers_baseline@...``, URM's ``urm.urm@URM``)."""
    n = name.lower()
    if "urm" in n:  # UbiquantAI/URM: urm.urm@URM
        return "urm"
    if "transformers_baseline" in n or "model_actv2" in n:
        return "baseline"
    if "hierarchical" in n or "hrm" in n:
        return "hrm"
    if "tinyrecursive" in n or "trm" in n:
        return "trm"
    return None


def read_official_config(path: Path, arch: str | None) -> tuple[dict, dict, list[str]]:
    """(model fields, extras such as loss type, unknown arch fields) from ``all_config.yaml``."""

    if not path.exists():
        raise RecursaError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(storage.read_text(path, "config file"))
    except yaml.YAMLError as e:
        raise RecursaError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("arch"), dict):
        raise RecursaError(f"{path}: expected an official all_config.yaml with an 'arch' section")
    a = raw["arch"]
    found = detect_arch(str(a.get("name", "")))
    if arch is None:
        arch = found
    elif found is not None and found != arch:
        raise RecursaError(f"{path}: arch.name {a.get('name')!r} is a {found.upper()} model, not --arch {arch}")
    if arch is None:
        raise RecursaError(f"{path}: cannot tell the model family from arch.name {a.get('name')!r}; pass --arch")
    model: dict = {"arch": arch}
    if arch == "trm" and "singlez" in str(a.get("name", "")).lower():
        model["single_latent"] = True
    hier = re.search(r"trm_hier(\d+)", str(a.get("name", "")).lower())
    if arch == "trm" and hier:  # the multi-latent ablation: trm_hier6 = six latents
        model["latents"] = int(hier.group(1))
    unknown = []
    if arch == "urm":  # URM's names (config/arch/urm.yaml): loops = N_sup, num_layers = the shared blocks
        a = dict(a)
        for theirs, ours in (("loops", "halt_max_steps"), ("num_layers", "L_layers")):
            if theirs in a:
                a[ours] = a.pop(theirs)
        if str(a.get("puzzle_emb_ndim", "")).strip() == "${.hidden_size}":  # an unresolved Hydra dump
            a["puzzle_emb_ndim"] = a.get("hidden_size", 512)
        # fixed in URM's code, not configurable there: ConvSwiGLU kernel 2, exploration 0.1, the conv in bfloat16
        model.update({"conv_swiglu": 2, "halt_exploration_prob": 0.1, "mlp_t": False})
        for key in URM_NOT_ARCH:
            a.pop(key, None)
    for key, value in a.items():
        if key in SAME:
            model[key] = float(value) if key in ("expansion", "halt_exploration_prob", "rms_norm_eps", "rope_theta") else value
        elif key == "H_layers":
            if arch == "hrm":
                model["H_layers"] = value
            elif arch == "baseline":
                model["baseline_layers"] = value
        elif key in TRM_ONLY and arch == "trm":
            if key == "no_ACT_continue":
                model["q_continue"] = not value
            else:
                model[key] = value
        elif key in DATA_FIELDS:
            continue
        else:
            unknown.append(f"arch.{key}")
    if arch == "hrm":
        model["q_continue"] = True
    if arch in ("hrm", "baseline", "urm"):
        model["puzzle_emb_len"] = 0
    # Fields an all_config.yaml may omit take the official classes' defaults: TRM's prefix is 16
    # positions, every official model computes in bfloat16.
    extras: dict = {"defaults": [f"arch.{k} = {v}" for k, v in (("puzzle_emb_len", 16), ("forward_dtype", "bfloat16"))
                                 if k not in model]}
    model.setdefault("puzzle_emb_len", 16)
    model.setdefault("forward_dtype", "bfloat16")
    loss = a.get("loss")
    if isinstance(loss, dict) and "loss_type" in loss:
        extras["loss"] = {"stablemax_cross_entropy": "stablemax", "softmax_cross_entropy": "softmax"}.get(loss["loss_type"])
        if extras["loss"] is None:
            raise RecursaError(f"{path}: arch.loss.loss_type {loss['loss_type']!r} is not known")
    for key in ("lr", "puzzle_emb_lr", "weight_decay", "puzzle_emb_weight_decay", "beta1", "beta2", "lr_min_ratio",
                "lr_warmup_steps", "ema", "ema_rate", "global_batch_size"):
        if key in raw:
            extras[key] = raw[key]
    return model, extras, unknown


def load_official_state(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` with the official key prefixes removed."""
    if path.is_dir():
        raise RecursaError(f"{path}: is a directory; expected the checkpoint file (e.g. .../step_65100)")
    if not path.is_file():
        raise RecursaError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = " ".join(str(e).split())
        m = re.search(r"(unsupported GLOBAL [^ ]+)", text, re.IGNORECASE)
        if m:
            raise RecursaError(f"{path}: refused to load: the file is not plain tensors; unpickling it would run code "
                               f"({m.group(1)}), so it was not loaded") from None
        raise RecursaError(f"{path}: not a torch checkpoint of plain tensors (unpickling failed: "
                           f"{text.split('WeightsUnpickler error:')[-1].split(' Check the documentation')[0].strip()[:120]})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise RecursaError(f"{path}: not a readable torch checkpoint ({str(e).splitlines()[0][:200]})") from None
    for wrapper in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise RecursaError(f"{path}: expected a state dict of tensors")
    out = {}
    for key, value in obj.items():
        k = key
        for prefix in PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = value
    return out


def infer_spec(state: dict[str, torch.Tensor], model: dict, seq_len: int | None, source: Path) -> DataSpec:
    emb = state.get("inner.embed_tokens.embedding_weight")
    if emb is None:
        raise RecursaError(f"{source}: missing inner.embed_tokens.embedding_weight (not an official TRM/HRM checkpoint?)")
    pe = state.get("inner.puzzle_emb.weights")
    num_ids = int(pe.shape[0]) if pe is not None else 1
    if seq_len is None:
        mcfg = config_mod.ModelConfig(**model)
        prefix = MODELS[mcfg.arch].prefix_positions(mcfg)
        for key in ("inner.embed_pos.embedding_weight", "inner.L_level.layers.0.mlp_t.down_proj.weight"):
            if key in state:
                seq_len = int(state[key].shape[0]) - prefix
                break
    if seq_len is None:
        raise RecursaError(f"{source}: the sequence length is not in the weights of this model; pass --data DIR or --seq-len N")
    return DataSpec(vocab_size=int(emb.shape[0]), seq_len=seq_len, num_puzzle_identifiers=num_ids)


def resolve_official(path: str | Path, step: int | None = None, config_yaml: str | Path | None = None
                     ) -> tuple[Path, Path]:
    """(checkpoint file, all_config.yaml) from a checkpoint file or an official run directory
    (its latest ``step_N``, or ``step``), the config defaulting to the one beside the checkpoint."""
    path = Path(path)
    if path.is_dir():
        steps = {int(m.group(1)): p for p in path.iterdir() if (m := re.fullmatch(r"step_(\d+)", p.name)) and p.is_file()}
        if not steps:
            raise RecursaError(f"{path}: a directory without official checkpoints (no step_N files)")
        if step is None:
            step = max(steps)
        elif step not in steps:
            raise RecursaError(f"{path}: no step_{step} (it has steps {', '.join(map(str, sorted(steps)))})")
        path = steps[step]
    elif step is not None:
        raise RecursaError(f"--step {step}: give the run directory, not a checkpoint file ({path})")
    if config_yaml is None:
        config_yaml = path.parent / "all_config.yaml"
        if not config_yaml.is_file():
            raise RecursaError(f"{path}: no all_config.yaml beside it; pass --config (the run's official all_config.yaml)")
    return path, Path(config_yaml)


def import_official(ckpt: str | Path, out: str | Path, *, arch: str | None, config_yaml: str | Path,
                    identifiers: str | Path | None = None, data: str | Path | None = None,
                    seq_len: int | None = None, overwrite: bool = False, log=print) -> Path:
    ckpt, out = Path(ckpt), Path(out)
    storage.check_out(out, "checkpoint", overwrite)  # before any work; checked again before writing
    model_fields, extras, unknown = read_official_config(Path(config_yaml), arch)
    if unknown:
        log(f"note: {config_yaml}: fields not used by recursa's {model_fields['arch'].upper()}: {', '.join(unknown)}")
    defaults = extras.pop("defaults", [])
    if defaults:
        log(f"note: {config_yaml}: not given, so the official defaults: {', '.join(defaults)}"
            + (" (eval/solve --dtype float32 computes in float32)" if "forward_dtype" in " ".join(defaults) else ""))
    task = None
    if data is not None:
        meta = load_split(data, "test").meta
        if seq_len is not None and seq_len != meta["seq_len"]:
            raise RecursaError(f"--seq-len {seq_len} disagrees with {data}: seq_len {meta['seq_len']}")
        seq_len = int(meta["seq_len"])
        info = read_task_info(data)
        task = {"task": info["task"], "params": info.get("params", {})} if info else None
        if identifiers is None and (Path(data) / "identifiers.json").is_file():
            identifiers = Path(data) / "identifiers.json"
    state = load_official_state(ckpt)
    spec = infer_spec(state, model_fields, seq_len, ckpt)
    try:
        train = {k: extras[k] for k in ("lr", "puzzle_emb_lr", "weight_decay", "puzzle_emb_weight_decay", "beta1",
                                        "beta2", "lr_min_ratio", "lr_warmup_steps", "ema", "ema_rate") if k in extras}
        if "loss" in extras:
            train["loss"] = extras["loss"]
        if "global_batch_size" in extras:
            train["batch_size"] = extras["global_batch_size"]
        cfg = config_mod.from_dict({"model": model_fields, "train": train})
    except RecursaError as e:
        raise RecursaError(f"{config_yaml}: {e}") from None
    model = build_model(cfg.model, spec)
    own = model.state_dict()
    weights = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    checkpoint.load_weights_into(model, weights, ckpt)
    ids = None
    if identifiers is not None:
        ids = storage.read_json(identifiers, what="identifiers file")
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise RecursaError(f"{identifiers}: expected a JSON list of identifier names")
        if len(ids) > spec.num_puzzle_identifiers:
            raise RecursaError(f"{identifiers}: {len(ids)} identifiers but the checkpoint has {spec.num_puzzle_identifiers} "
                               f"puzzle-embedding rows")
    m = re.search(r"step_(\d+)", ckpt.name)
    meta = {"config": config_mod.to_dict(cfg), "spec": spec.to_dict(), "task": task, "arch": cfg.model.arch,
            "params": count_parameters(model), "ema_weights": False, "step": int(m.group(1)) if m else 0,
            "imported_from": str(ckpt), "unknown_official_fields": unknown}
    storage.check_out(out, "checkpoint", overwrite)
    checkpoint.write_checkpoint_dir(out, meta, model.state_dict(), {"identifiers.json": ids} if ids is not None else None)
    log(f"imported {ckpt} ({cfg.model.arch.upper()}, {meta['params']:,} parameters, vocab {spec.vocab_size}, "
        f"seq_len {spec.seq_len}, {spec.num_puzzle_identifiers} puzzle identifiers) -> {out}")
    return out
