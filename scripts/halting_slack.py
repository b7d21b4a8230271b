"""Does the halting calibration's 5% slack generalise? A check on validation puzzles alone.

    python scripts/halting_slack.py [--runs runs/demo_table] [--record results/halting_slack.json]

For each demo run of ``scripts/demo_table.py`` (RUNS/ISA_seedS/trm with its data/val split), the
500 validation puzzles are halved at random (seeded); the threshold is chosen on one half by
``recursa.evaluation.halting.choose_threshold`` with slack 0 and with the default 5%, and applied
to the other half, both ways. Recorded per slack: the other half's mean and largest loss of exact
accuracy against the fixed steps, the share of trials losing more than 0.4 points, and the mean
steps per puzzle. The test split is not read.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs/demo_table")
    ap.add_argument("--record", default="results/halting_slack.json")
    args = ap.parse_args()
    import torch

    from recursa.tools import results
    from recursa.data.format import load_split
    from recursa.evaluation import halting
    from recursa.inference.checkpoint import load_checkpoint
    torch.set_num_threads(2)
    runs = sorted(p for p in Path(args.runs).iterdir() if (p / "trm").is_dir() and (p / "data" / "val").is_dir())
    if not runs:
        sys.exit(f"{args.runs}: no demo runs with a val/ split (run scripts/demo_table.py first)")
    trials: dict[float, list[tuple[float, float]]] = {0.0: [], 0.05: []}
    for run in runs:
        loaded = load_checkpoint(run / "trm")
        out = halting.step_outcomes(loaded.model, load_split(run / "data", "val"), loaded.task, signal="answer")
        n = len(out["exact"])
        perm = np.random.default_rng(0).permutation(n)
        halves = (perm[: n // 2], perm[n // 2:])
        for a, b in ((0, 1), (1, 0)):
            pick = lambda idx: {k: (None if v is None else v[idx]) for k, v in out.items()}  # noqa: E731
            chosen_on, applied_to = pick(halves[a]), pick(halves[b])
            for slack in trials:
                rec = halting.choose_threshold(chosen_on, slack=slack)
                if rec["threshold"] is None:  # nothing kept the accuracy: every step runs
                    trials[slack].append((0.0, float(loaded.model.halt_max_steps)))
                    continue
                got = halting.adaptive_outcome(applied_to, rec["threshold"])
                trials[slack].append((float(applied_to["exact"][:, -1].mean() - got["exact"]), got["mean_steps"]))
    command = shlex.join(["python", "scripts/halting_slack.py", *sys.argv[1:]])
    machine = results.machine()
    for slack, v in trials.items():
        v = np.array(v)
        fig = {"metrics": {"trials": len(v), "runs": len(runs), "mean_loss_points": round(100 * v[:, 0].mean(), 3),
                           "max_loss_points": round(100 * v[:, 0].max(), 3),
                           "share_losing_over_0.4_points": round(float(np.mean(v[:, 0] > 0.004)), 3),
                           "mean_steps": round(float(v[:, 1].mean()), 3)},
               "setting": {"slack": slack, "tolerance": 0.002, "split": "val, halved at random (seed 0)"},
               "command": command, "machine": machine}
        results.record(args.record, f"slack-{slack:g}", fig)
        m = fig["metrics"]
        print(f"slack {slack:g}: other half loses {m['mean_loss_points']:.2f} points on average, at most "
              f"{m['max_loss_points']:.2f}; {100 * m['share_losing_over_0.4_points']:.0f}% of trials > 0.4; "
              f"{m['mean_steps']:.2f} steps per puzzle")
    print(f"wrote {args.record}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
