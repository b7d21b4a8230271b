"""Result records: the small JSON files under ``results/`` that every figure of the README and
docs/ cites, so a number can be traced to the computation that made it and made again.

A record file holds named figures (``recursa eval ... --record FILE --label NAME`` adds or replaces
one; ``recursa sweep ... --record FILE`` writes a sweep's rows). Each figure carries what is needed
to judge and repeat it: the metrics and the protocol, the command that measured it, the dataset's
build command (from its ``task.json``), the checkpoint's step, seed, config hash and dtype, and the
machine (CPU, cores, torch, the instruction set torch used and any emulation of a smaller one).

    {"schema": 1, "figures": {"NAME": {"metrics": {...}, "command": "...", "data": {...},
                                       "run": {...}, "machine": {...}, "recursa": "0.1.0"}}}
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from .. import config as config_mod
from .. import storage
from ..errors import RecursaError
from ..tasks import read_task_info

SCHEMA = 1
#: Environment variables that emulate a CPU with fewer instruction sets (scripts/emulate_isa.sh).
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
#: What a figure's metrics keep of an evaluation (the rest is in `recursa eval --json`).
METRICS = ("exact_accuracy", "valid_rate", "token_accuracy", "mean_steps", "network_calls", "n", "exact_by_step",
           "valid_by_step", "halt_step_mean")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine a figure was measured on."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
            "isa": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "emulation": {k: os.environ[k] for k in ISA_ENV if k in os.environ},
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def config_sha256(config: dict) -> str:
    """The hash of a run's resolved config without where it was written (train.out, train.data) and
    without the settings that have no effect: the same computation on another path hashes the same."""
    cfg = json.loads(json.dumps(config))
    for key in ("out", "data"):
        cfg.get("train", {}).pop(key, None)
    try:  # settings without effect (recursa/config.py:ineffective) do not change the computation
        moot = config_mod.ineffective(config_mod.from_dict({k: v for k, v in config.items() if k in config_mod.SECTIONS}))
    except Exception:  # a config of another version: hash it as it is
        moot = {}
    for key in moot:
        section, name = key.split(".")
        cfg.get(section, {}).pop(name, None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def command_line(argv: list[str] | None = None) -> str:
    """A `recursa` command (``argv`` without the program name; default: this process's)."""
    return shlex.join(["recursa", *(sys.argv[1:] if argv is None else argv)])


def data_facts(data_dir: str | Path, split: str, n: int) -> dict:
    """The evaluated data: its directory (relative as given; an absolute one by its name only, so no
    machine's paths are recorded), split, size and build command."""
    info = read_task_info(data_dir)
    where = Path(data_dir)
    return {"dir": str(where if not where.is_absolute() else where.name), "split": split, "n": n, "build": info.get("command"), "task": info.get("task"),
            "seed": info.get("seed")}


def train_seconds(ckpt: Path, step: int) -> float | None:
    """Training seconds (evaluations and checkpoints not counted) at ``step`` of the run a
    checkpoint ``RUN/checkpoints/step_N`` belongs to, from the run's metrics.jsonl (None: no log)."""
    path = Path(ckpt).parent.parent / "metrics.jsonl"
    best = None
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step \
                    and isinstance(row.get("elapsed_s"), (int, float)):
                best = round(float(row["elapsed_s"]), 1)
    return best


def run_facts(meta: dict) -> dict:
    """A checkpoint's facts from its meta (config.json)."""
    cfg = meta.get("config") or {}
    t, m = cfg.get("train", {}), cfg.get("model", {})
    return {"step": meta.get("step"), "seed": t.get("seed"), "config_sha256": config_sha256(cfg) if cfg else None,
            "arch": m.get("arch"), "forward_dtype": m.get("forward_dtype"), "params": meta.get("params"),
            "optimizer": t.get("optimizer"), "threads": t.get("num_threads"), "steps": t.get("steps"),
            "max_time_s": t.get("max_time_s")}


def read(path: str | Path) -> dict:
    """A record file, checked: one-line errors name the file and what is wrong."""
    rec = storage.read_json(path, expect=dict, what="results file")
    if rec.get("schema") != SCHEMA or not isinstance(rec.get("figures"), dict) or not rec["figures"]:
        raise RecursaError(f"{path}: not a results file (expected {{\"schema\": {SCHEMA}, \"figures\": {{NAME: ...}}}})")
    for name, fig in rec["figures"].items():
        if not isinstance(fig, dict) or not isinstance(fig.get("metrics"), dict) or not fig["metrics"]:
            raise RecursaError(f"{path}: figure {name!r} has no metrics")
        if not isinstance(fig.get("command"), str) or not isinstance(fig.get("machine"), dict):
            raise RecursaError(f"{path}: figure {name!r} lacks its command or machine")
    return rec


def check_label(label: str) -> str:
    if not label or not all(c.isalnum() or c in "-_.+" for c in label):
        raise RecursaError(f"--label {label!r}: letters, digits and - _ . + only")
    return label


def label_of(name: str) -> str:
    """A figure label from any run name (a sweep's ``L_cycles=2,seed=0`` -> ``L_cycles-2+seed-0``)."""
    out = name.replace(",", "+").replace("=", "-")
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in out) or "run"


def record(path: str | Path, label: str, figure: dict) -> Path:
    """Add (or replace) figure ``label`` in the record file ``path`` (written atomically)."""
    path = Path(path)
    check_label(label)
    rec = read(path) if path.is_file() else {"schema": SCHEMA, "figures": {}}
    version = sys.modules["recursa"].__version__  # the package is imported before any of its modules
    rec["figures"][label] = {**figure, "command": figure.get("command") or command_line(),
                             "machine": figure.get("machine") or machine(), "recursa": version}
    rec["figures"] = dict(sorted(rec["figures"].items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.atomic_write_text(path, json.dumps(rec, indent=1) + "\n")
    return path


def eval_figure(res: dict, meta: dict, data_dir, split: str) -> dict:
    """A figure from one `recursa eval` result and its checkpoint's meta."""
    metrics = {k: res[k] for k in METRICS if res.get(k) is not None}
    for k, v in res.get("_scalars", {}).items():
        metrics[k] = v
    return {"metrics": metrics, "protocol": res.get("protocol"), "data": data_facts(data_dir, split, res["n"]),
            "run": run_facts(meta)}
