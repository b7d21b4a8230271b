"""The demo on every seed and instruction set: the table of docs/benchmarks.md (issue 25).

    python scripts/demo_table.py [--seeds 0,1,2,3,4] [--isas native,avx2,default] [--out runs/demo_table]
                                 [--json results/demo_table.json] [--reuse]

Runs `recursa demo --seed S` under `scripts/emulate_isa.sh ISA` for every pair, one after the other
(2 threads each, as `make demo`), and writes one JSON file with every run's held-out numbers, its
wall and training times, the CPU and torch version, then prints the table as Markdown. The demo's
computation is a fixed number of float32 steps; what differs between instruction sets is only how
float32 kernels round, so this table is how far that moves the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--isas", default="native,avx2,default")
    ap.add_argument("--out", default="runs/demo_table")
    ap.add_argument("--json", default="results/demo_table.json")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the demos already in --out (their training and wall times); calibrate their halting "
                         "again (`recursa calibrate`, the current rule) and evaluate again")
    args = ap.parse_args()
    import torch
    runs = []
    for isa in args.isas.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            out = Path(args.out) / f"{isa}_seed{seed}"
            isa_cmd = [str(REPO / "scripts" / "emulate_isa.sh"), isa, sys.executable, "-m", "recursa"]
            if args.reuse and (out / "summary.json").is_file():
                cmd = [*isa_cmd, "calibrate", str(out / "trm"), "--data", str(out / "data")]
            else:
                cmd = [*isa_cmd, "demo", "--seed", str(seed), "--out", str(out), "--overwrite"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
            s = json.loads((out / "summary.json").read_text())
            # --adaptive with the threshold calibrated on val/ at the end of training, against the fixed 8 steps
            ev = {}
            for name, extra in (("fixed", []), ("adaptive", ["--adaptive"])):
                dest = out / f"eval_{name}.json"
                e = subprocess.run([str(REPO / "scripts" / "emulate_isa.sh"), isa, sys.executable, "-m", "recursa",
                                    "eval", str(out / "trm"), "--data", str(out / "data"), "--json", str(dest), *extra],
                                   capture_output=True, text=True)
                if e.returncode != 0:
                    sys.exit(f"eval {name} of {out} failed: {e.stderr.strip().splitlines()[-1:]}")
                r = json.loads(dest.read_text())
                ev[name] = {"exact": r["exact_accuracy"], "mean_steps": r["mean_steps"],
                            "network_calls": r["network_calls"], "protocol": r["protocol"]}
            last = sorted((out / "trm" / "checkpoints").glob("step_*"))[-1]  # the final (calibrated) checkpoint
            halting = json.loads((last / "config.json").read_text()).get("halting")
            runs.append({"isa": isa, "seed": seed, "trm_exact": s["trm_exact"], "baseline_exact": s["baseline_exact"],
                         "halting": halting,
                         "trm_exact_by_step": s["trm_exact_by_step"], "train_s": s["train_s"], "wall_s": s["wall_s"],
                         "steps": s["steps"], "n_test": s["n_test"],
                         "eval": ev})
            a, f = ev["adaptive"], ev["fixed"]
            print(f"{isa:8s} seed {seed}: TRM {100 * s['trm_exact']:.1f}%  baseline {100 * s['baseline_exact']:.1f}%  "
                  f"wall {s['wall_s']:.0f} s; --adaptive {100 * a['exact']:.1f}% in {a['mean_steps']:.2f} steps "
                  f"({a['network_calls']:,} vs {f['network_calls']:,} network applications)", flush=True)
    from recursa.tools.results import cpu_name
    meta = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
            "native_capability": torch.backends.cpu.get_cpu_capability(),
            "command": "python scripts/demo_table.py " + " ".join(sys.argv[1:]), "runs": runs}
    dest = Path(args.json)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, dest)
    seeds = sorted({r["seed"] for r in runs})
    print("\n| instruction set | " + " | ".join(f"seed {s}" for s in seeds) + " | min | baseline (max) | wall (mean) |")
    print("|---|" + "---|" * (len(seeds) + 3))
    for isa in dict.fromkeys(r["isa"] for r in runs):
        rs = [r for r in runs if r["isa"] == isa]
        cells = [f"{100 * r['trm_exact']:.1f}%" for r in sorted(rs, key=lambda r: r["seed"])]
        print(f"| {isa} | " + " | ".join(cells) + f" | {100 * min(r['trm_exact'] for r in rs):.1f}% | "
              f"{100 * max(r['baseline_exact'] for r in rs):.1f}% | {sum(r['wall_s'] for r in rs) / len(rs):.0f} s |")
    print("\n| instruction set | seed | fixed 8: exact | --adaptive: exact | steps / puzzle | network applications "
          "| calibrated signal, threshold |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        a, f, h = r["eval"]["adaptive"], r["eval"]["fixed"], r["halting"] or {}
        print(f"| {r['isa']} | {r['seed']} | {100 * f['exact']:.1f}% | {100 * a['exact']:.1f}% | {a['mean_steps']:.2f} | "
              f"{a['network_calls']:,} / {f['network_calls']:,} | {h.get('signal', 'head')}, {h.get('threshold')} |")
    print(f"\nwrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
