"""Run the demo: build a puzzle dataset, train a Tiny Recursive Model and a non-recursive
baseline of the same size for the same wall time, and show that recursion pays off: held-out
accuracy of TRM after 1, 2, ... supervision steps against the baseline, one puzzle solved step
by step, a plot and a summary.json. Defaults take about 5 minutes on 2 CPU cores.

Examples:
  recursa demo
  recursa demo --task sudoku4 --train-seconds 60 --out runs/demo4
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser):
    from ..demo import PRESETS
    p.add_argument("--task", default="sudoku6", choices=list(PRESETS),
                   help="preset: " + "; ".join(f"{k} = {v.description}" for k, v in PRESETS.items()) + " (default sudoku6)")
    p.add_argument("--train-seconds", type=float, default=240.0, help="training wall time of each model (default 240)")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier demo in --out (any other non-empty directory is refused)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of both models (default 0)")
    p.add_argument("--sequential", action="store_true", help="train the two models one after the other (2 threads each)")
    p.add_argument("--hidden-size", type=int, default=0, help="model width D (default: the preset's, 64 for sudoku6)")
    p.add_argument("--sup-steps", type=int, default=0, help="TRM supervision steps N_sup (default: the preset's, 8 for sudoku6)")


def run(args) -> int:
    from ..demo import run_demo
    overrides = {}
    if args.hidden_size:
        overrides["hidden_size"] = args.hidden_size
    if args.sup_steps:
        overrides["halt_max_steps"] = args.sup_steps
    run_demo(args.task, args.out, args.train_seconds, args.seed, parallel=False if args.sequential else None,
             model_overrides=overrides, overwrite=args.overwrite)
    return 0
