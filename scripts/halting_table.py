"""--adaptive against the fixed protocol on trained recipe models: the halting table of
docs/benchmarks.md (issue 25).

    python scripts/halting_table.py NAME RUN DATA [--recipe configs/X.toml] [--build "recursa build ..."]
                                    [--train "recursa train ..."] [--json results/halting.json]

Evaluates checkpoint RUN on DATA's test split twice, at the trained number of steps and with
`--adaptive` (the signal and threshold calibrated on DATA's val/ split at the end of training,
stored in the checkpoint), and puts both results, with the calibration record, the recipe, the
build command, the training step and the machine, under NAME in the JSON file (other names kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from demo_table import cpu_name  # scripts/ is on the path when run as python scripts/halting_table.py


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--recipe", default=None)
    ap.add_argument("--build", default=None, help="the command that built DATA")
    ap.add_argument("--train", default=None, help="the command that trained RUN")
    ap.add_argument("--json", default="results/halting.json")
    args = ap.parse_args()
    import torch
    entry = {"run": None, "recipe": args.recipe, "build": args.build, "train": args.train}
    if args.recipe:
        entry["recipe_sha256"] = hashlib.sha256(Path(args.recipe).read_bytes()).hexdigest()[:16]
    for name, extra in (("fixed", []), ("adaptive", ["--adaptive"])):
        with tempfile.TemporaryDirectory() as tmp:
            dest = Path(tmp) / "eval.json"
            r = subprocess.run([sys.executable, "-m", "recursa", "eval", args.run, "--data", args.data,
                                "--json", str(dest), *extra], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"eval {name} of {args.run} failed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
            res = json.loads(dest.read_text())
        entry[name] = {k: res.get(k) for k in ("exact_accuracy", "valid_rate", "mean_steps", "network_calls", "n",
                                               "protocol", "step", "trained_steps")}
        ckpt = Path(res.get("checkpoint") or args.run)
        entry["run"] = {"checkpoint": ckpt.name, "step": res.get("step")}  # no machine's paths in results/
    meta = json.loads((ckpt / "config.json").read_text()) if (ckpt / "config.json").is_file() else {}
    entry["halting"] = meta.get("halting")
    entry["seed"] = (meta.get("config") or {}).get("train", {}).get("seed")
    entry["machine"] = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                        "capability": os.environ.get("ATEN_CPU_CAPABILITY") or torch.backends.cpu.get_cpu_capability()}
    dest = Path(args.json)
    table = json.loads(dest.read_text()) if dest.is_file() else {}
    table[args.name] = entry
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    os.replace(tmp, dest)
    f, a = entry["fixed"], entry["adaptive"]
    metric = "valid_rate" if f.get("valid_rate") is not None else "exact_accuracy"
    print(f"| {args.name} | {100 * f['exact_accuracy']:.1f}% | {100 * a['exact_accuracy']:.1f}% | "
          f"{100 * (f['valid_rate'] or 0):.1f}% | {100 * (a['valid_rate'] or 0):.1f}% | {a['mean_steps']:.2f} | "
          f"{a['network_calls']:,} / {f['network_calls']:,} | "
          f"{(entry['halting'] or {}).get('signal')}, {(entry['halting'] or {}).get('threshold')} |  ({metric})")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
