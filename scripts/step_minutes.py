"""What the headline recipes' step budgets cost in minutes, here and as on an AVX2-only CPU: results/step_minutes.json.

    python scripts/step_minutes.py [--recipes sudoku9_cgar_muon_cpu,maze15_nearest_cpu] [--steps 150]

Each recipe trains ``--steps`` steps at its full depth (a depth curriculum is switched off, so
every step costs what its last, deepest phase costs: the estimate is an upper bound for such a
recipe), with no periodic evaluation, on the recipe's own threads, on this CPU as it is and under
``scripts/emulate_isa.sh avx2`` (ATen, oneDNN and MKL capped at AVX2: the float32 kernels of an
AVX2-only CPU, run at this CPU's clock). The time per step is read from the run's metrics.jsonl
between step 50 and the last (the first steps warm the allocator and caches), and multiplied by
the recipe's step budget. Needs the recipe's dataset (its `# Data:` line). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISAS = ("native", "avx2")


def seconds_per_step(metrics: Path, first: int = 50) -> float:
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    rows = [r for r in rows if "elapsed_s" in r]
    a = next(r for r in rows if r["step"] >= first)
    b = rows[-1]
    if b["step"] <= a["step"]:
        raise SystemExit(f"{metrics}: too few logged steps to time (need more than {first})")
    return (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", default="sudoku9_cgar_muon_cpu,maze15_nearest_cpu")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--record", default="results/step_minutes.json")
    args = ap.parse_args()
    from recursa.tools import results
    command = shlex.join(["python", "scripts/step_minutes.py", *sys.argv[1:]])
    for name in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        recipe = ROOT / "configs" / f"{name}.toml"
        cfg = tomllib.loads(recipe.read_text())
        budget = int(cfg["train"]["steps"])
        per_step = {}
        for isa in ISAS:
            with tempfile.TemporaryDirectory() as tmp:
                sets = [f"train.steps={args.steps}", "train.eval_interval=-1", f"train.out={tmp}/run",
                        "train.log_interval=25"]
                if "depth_curriculum" in cfg["train"]:
                    sets.append("train.depth_curriculum=")
                cmd = [str(ROOT / "scripts" / "emulate_isa.sh"), isa, sys.executable, "-m", "recursa", "train",
                       str(recipe), "--quiet"] + [x for s in sets for x in ("--set", s)]
                subprocess.run(cmd, cwd=ROOT, check=True)
                per_step[isa] = seconds_per_step(Path(tmp) / "run" / "metrics.jsonl")
            print(f"{name} {isa}: {per_step[isa]:.3f} s/step -> {budget * per_step[isa] / 60:.1f} min for {budget:,} steps")
        metrics = {"budget_steps": budget, "timed_steps": args.steps - 50,
                   **{f"{isa}_s_per_step": round(per_step[isa], 4) for isa in ISAS},
                   **{f"{isa}_minutes": round(budget * per_step[isa] / 60, 1) for isa in ISAS},
                   "avx2_over_native": round(per_step["avx2"] / per_step["native"], 2),
                   "upper_bound": "depth_curriculum" in cfg["train"]}
        results.record(args.record, name, {"metrics": metrics, "protocol": {
            "recipe": f"configs/{name}.toml", "threads": cfg["train"].get("num_threads", 0),
            "settings": "train.eval_interval=-1" + (", train.depth_curriculum= (full depth)" if metrics["upper_bound"] else "")},
            "command": command})
    return 0


if __name__ == "__main__":
    sys.exit(main())
