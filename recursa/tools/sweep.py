"""``recursa sweep``: train a small grid of runs that differ only in the settings you vary (recursion
depth n = ``model.L_cycles``, T = ``model.H_cycles``, N_sup = ``model.halt_max_steps``, width,
layers, a method option...), evaluate each on the same validation puzzles (the dataset's val/
split, ``train.eval_split``; test only when there is none), and draw accuracy against
the varied setting, against parameter count and against compute: the "recursion scaling" figure,
regenerated on a laptop.

Every run gets the same recipe, data, seed(s) and training budget (``train.steps`` or
``train.max_time_s``, so depth can be compared at equal training time). A sweep is resumable: a
finished run is not trained again, an interrupted one continues from its checkpoint, and
``sweep.json`` (one row per run) is rewritten atomically after each run.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np

from .. import config as config_mod
from .. import storage
from ..data.format import load_split, resolve_eval_split
from ..device import pick_device
from ..errors import RecursaError
from ..evaluation.evaluate import evaluate
from ..inference.checkpoint import load_checkpoint, read_meta, resolve
from ..inference.display import save_figure
from ..inference.engine import Protocol, calls_per_step
from ..storage import atomic_write_text
from ..tasks import load_task, read_task_info
from ..training.trainer import Trainer
from . import results


def parse_vary(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["model.L_cycles=1,2,4"]`` -> [("model.L_cycles", ["1", "2", "4"])] (values parsed later as TOML)."""
    out = []
    for item in items:
        key, eq, values = item.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or "." not in key or not vals:
            raise RecursaError(f"--vary {item!r}: expected SECTION.KEY=V1,V2,... (e.g. model.L_cycles=1,2,4)")
        if any(k == key.strip() for k, _ in out):
            raise RecursaError(f"--vary {key.strip()} is given twice")
        out.append((key.strip(), vals))
    if not out:
        raise RecursaError("give at least one --vary SECTION.KEY=V1,V2,...")
    return out


def parse_variants(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["rsm=train.loss_steps=last;model.stochastic_depth=0.5", "trm="]`` -> named bundles of settings
    (a method is several settings at once; ``NAME=`` alone is the recipe as it is)."""
    out = []
    for item in items:
        name, eq, sets = item.partition("=")
        name = name.strip()
        if not eq or not name or not all(c.isalnum() or c in "-_+." for c in name):
            raise RecursaError(f"--variant {item!r}: expected NAME=SECTION.KEY=VALUE;SECTION.KEY=VALUE... "
                               f"(NAME: letters, digits, - _ + .; NAME= alone for the recipe as it is)")
        if any(n == name for n, _ in out):
            raise RecursaError(f"--variant {name} is given twice")
        bundle = [x.strip() for x in sets.split(";") if x.strip()]
        for x in bundle:
            key = x.partition("=")[0]
            if "=" not in x or "." not in key:
                raise RecursaError(f"--variant {name}: {x!r} is not SECTION.KEY=VALUE")
        out.append((name, bundle))
    return out


def eval_curve(run: Path, metrics: tuple[str, ...] = ("exact_accuracy",)) -> list[list]:
    """[[training seconds, metric, ...], ...] from a run's evaluations during training (a metric the
    evaluation did not report is None)."""
    path = run / "metrics.jsonl"
    curve = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if "eval/exact_accuracy" in row and "elapsed_s" in row:
                curve.append([round(float(row["elapsed_s"]), 1)] + [row.get(f"eval/{m}") for m in metrics])
    return curve


RESERVED = {"run", "variant", "curve", "split", "valid_by_step", "wall_s", "seed", "params", "train_steps", "train_s",
            "eval_steps", "calls_per_puzzle", "exact_accuracy", "valid_rate", "token_accuracy", "exact_by_step", "n"}


def _column(key: str) -> str:
    """A varied setting's column in sweep.json: its key without the section, unless that is taken."""
    if "." not in key:
        return key
    short = key.split(".", 1)[1]
    return key if short in RESERVED else short


def run_name(point: dict[str, str]) -> str:
    return ",".join(f"{k.split('.', 1)[1]}={v}" for k, v in point.items()).replace("/", "_")


def _value(text: str):
    """A --vary value as TOML (2 -> int, 0.5 -> float, true -> bool), else the text itself."""
    try:
        return config_mod.tomllib.loads(f"v = {text}")["v"]
    except Exception:
        return text


def sweep(recipe: str | Path, vary: list[tuple[str, list[str]]], out: str | Path, *, overrides: list[str] = (),
          seeds: list[int] = (0,), eval_steps: int = 0, eval_limit: int = 0,
          variants: list[tuple[str, list[str]]] = (), log=print) -> list[dict]:
    out = Path(out)
    configs = _configs(recipe, vary, out, overrides, seeds, variants)
    if out.exists() and not out.is_dir():
        raise RecursaError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "sweep.json"
    rows: list[dict] = []
    if results_path.is_file():
        rows = [r for r in storage.read_json(results_path, expect=dict).get("runs", []) if isinstance(r, dict)]
    done = {r["run"] for r in rows}
    dims = ([f"variant {len(variants)}"] if variants else []) + [f"{k} {len(v)}" for k, v in vary]
    log(f"sweep: {len(configs)} runs ({' x '.join(dims)} x {len(seeds)} seed(s)) -> {out}"
        + (f"; {len(done)} already done" if done else ""))
    for i, (vname, point, seed, name, cfg) in enumerate(configs, 1):
        if name in done:
            continue
        log(f"[{i}/{len(configs)}] {name}")
        row = {"run": name, **({"variant": vname} if vname else {}), **{_column(k): _value(v) for k, v in point.items()},
               "seed": seed, **_train_and_evaluate(cfg, out / name, eval_steps, eval_limit)}
        rows.append(row)
        atomic_write_text(results_path, json.dumps({"recipe": str(recipe), "vary": dict(vary),
                                                    "variants": dict(variants), "overrides": list(overrides),
                                                    "seeds": list(seeds), "runs": rows}, indent=1) + "\n")
        log(f"    exact {row['exact_accuracy']:.3f}  ({row['params']:,} parameters, {row['train_steps']} steps, "
            f"{row['train_s']:.0f} s)")
    plot(out / "sweep.png", rows, (["variant"] if variants else []) + [k for k, _ in vary])
    log(f"wrote {results_path} and {out / 'sweep.png'}")
    return rows


def _configs(recipe, vary, out: Path, overrides, seeds, variants) -> list[tuple]:
    """(variant, point, seed, run name, config) of every run, each checked before any training."""
    if not vary and not variants:
        raise RecursaError("give at least one --vary SECTION.KEY=V1,V2,... or --variant NAME=SETTINGS")
    keys = [k for k, _ in vary]
    grid = [dict(zip(keys, combo)) for combo in itertools.product(*[v for _, v in vary])]
    configs = []
    for vname, bundle in (variants or [(None, [])]):
        for point in grid:
            for seed in seeds:
                sets = list(overrides) + bundle + [f"{k}={v}" for k, v in point.items()] + [f"train.seed={seed}"]
                name = ",".join(x for x in (f"variant={vname}" if vname else "", run_name(point)) if x)
                name += f",seed={seed}"
                try:
                    cfg = config_mod.load(recipe, sets + [f"train.out={out / name}"])
                    resolve_eval_split(cfg.train.data, cfg.train.eval_split)  # before any training
                except RecursaError as e:
                    raise RecursaError(f"run {name}: {e}") from None
                configs.append((vname, point, seed, name, cfg))
    return configs


def _train_and_evaluate(cfg, run: Path, eval_steps: int, eval_limit: int) -> dict:
    """Train one run (resuming it if it was interrupted) and evaluate it: its row's numbers."""
    t0 = time.perf_counter()
    trainer = Trainer(cfg, resume=(run / "latest").is_file(), progress=False, log=lambda *a: None)
    trainer.fit()
    train_s = time.perf_counter() - t0
    loaded = load_checkpoint(run, pick_device(cfg.train.device))
    split_name = resolve_eval_split(cfg.train.data, cfg.train.eval_split)
    split = load_split(cfg.train.data, split_name)
    info = read_task_info(cfg.train.data)
    task = load_task(info) if info else None
    protocol = Protocol.as_trained(loaded.model, eval_steps)
    steps = protocol.max_steps
    res = evaluate(loaded.model, split, task, batch_size=cfg.eval.batch_size, limit=eval_limit,
                   protocol=protocol, curve=True)
    curve = eval_curve(run)
    trained_s = curve[-1][0] if curve else train_s  # training time alone (evaluation not counted)
    return {"params": loaded.meta.get("params"), "train_steps": loaded.meta["step"],
            "train_s": round(trained_s, 1), "wall_s": round(train_s, 1),
            "eval_steps": steps, "calls_per_puzzle": steps * calls_per_step(loaded.model),
            "exact_accuracy": res["exact_accuracy"], "valid_rate": res["valid_rate"],
            "token_accuracy": res["token_accuracy"], "exact_by_step": res["exact_by_step"],
            "valid_by_step": res.get("valid_by_step"), "n": res["n"], "split": split_name,
            "curve": curve}


def record_rows(path, rows: list[dict], out, command: str) -> Path:
    """Every run of a sweep as a figure of the results file ``path`` (recursa/tools/results.py)."""
    machine = results.machine()
    for r in rows:
        meta = read_meta(resolve(Path(out) / r["run"]))
        data = meta["config"]["train"]["data"]
        fig = {"metrics": {k: r[k] for k in ("exact_accuracy", "valid_rate", "token_accuracy", "exact_by_step",
                                                "valid_by_step", "n", "eval_steps", "calls_per_puzzle", "train_steps",
                                                "train_s", "params") if r.get(k) is not None},
               "setting": {k: v for k, v in r.items() if k not in RESERVED},
               "data": results.data_facts(data, r.get("split") or resolve_eval_split(data), r["n"]),
               "run": results.run_facts(meta), "command": command, "machine": machine}
        results.record(path, results.label_of(r["run"]), fig)
    return Path(path)


def plot(path: Path, rows: list[dict], keys: list[str]) -> None:
    """Exact accuracy against the first varied setting (one line per value of the others, mean over
    seeds), against parameter count, and against network applications per puzzle."""
    import matplotlib  # late: matplotlib takes ~0.3 s to import; only figures need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # late: matplotlib takes ~0.3 s to import; only figures need it


    short = [_column(k) for k in keys]
    curves = any(r.get("curve") for r in rows)
    acc = f"{rows[0].get('split', 'held-out') if rows else 'held-out'} exact (%)"
    fig, axes = plt.subplots(1, 4 if curves else 3, figsize=(20 if curves else 15, 4.3), dpi=110)
    groups: dict[tuple, dict] = {}
    for r in rows:
        rest = tuple(r[k] for k in short[1:])
        groups.setdefault(rest, {}).setdefault(r[short[0]], []).append(100 * r["exact_accuracy"])
    for j, (rest, pts) in enumerate(sorted(groups.items(), key=lambda x: str(x[0]))):
        xs = sorted(pts, key=lambda v: (isinstance(v, str), v))
        label = ", ".join(f"{k}={v}" for k, v in zip(short[1:], rest)) or "exact"
        axes[0].plot(range(len(xs)), [np.mean(pts[x]) for x in xs], "o-", color=f"C{j % 10}", label=label)
        axes[0].set_xticks(range(len(xs)), [str(x) for x in xs])
    for r in rows:
        axes[1].scatter(r["params"], 100 * r["exact_accuracy"], color="C0")
        axes[2].scatter(r["calls_per_puzzle"], 100 * r["exact_accuracy"], color="C1")
    if curves:  # exact during training against training time, one colour per value of the first setting
        values = sorted({r[short[0]] for r in rows}, key=lambda v: (isinstance(v, str), v))
        for j, v in enumerate(values):
            for k, r in enumerate(x for x in rows if x[short[0]] == v and x.get("curve")):
                axes[3].plot([p[0] / 60 for p in r["curve"]], [100 * p[1] for p in r["curve"]], "-", lw=1.2,
                             color=f"C{j % 10}", alpha=0.8, label=str(v) if k == 0 else None)
        axes[3].set(xlabel="training time (minutes)", ylabel=acc,
                    title="accuracy during training (each seed)", ylim=(0, 100))
        axes[3].legend(fontsize=8)
    axes[0].set(xlabel=short[0], ylabel=acc, title=f"accuracy against {short[0]}", ylim=(0, 100))
    axes[1].set(xlabel="parameters", ylabel=acc, title="accuracy against size", ylim=(0, 100))
    axes[2].set(xlabel="network applications per puzzle", ylabel=acc,
                title="accuracy against test-time compute", ylim=(0, 100))
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
