"""Run the demo: build a puzzle dataset, train a Tiny Recursive Model and a non-recursive
baseline of the same size on the same data for the same number of steps, and show that
recursion pays off: held-out accuracy of TRM after 1, 2, ... supervision steps against the
baseline, one puzzle solved step by step, a plot and a summary.json. The default (6x6 Sudoku, 1000
steps each, float32) takes 1.5-3 minutes on an ordinary 2-core CPU.

Examples:
  recursa demo
  recursa demo --overwrite                       # replace the previous demo in runs/demo
  recursa demo --task sudoku4 --out runs/demo4
  recursa demo --train-seconds 60                # a time budget per model instead of a step budget
"""

from __future__ import annotations

import argparse

from ..errors import RecursaError
from ..tools.demo import PRESETS, run_demo


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--task", default="sudoku6", choices=list(PRESETS),
                   help="preset: " + "; ".join(f"{k} = {v.description} ({v.steps} steps)" for k, v in PRESETS.items())
                        + " (default sudoku6)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None,
                        help="optimizer steps of each model (default: the preset's, 1000 for sudoku6)")
    budget.add_argument("--train-seconds", type=float, default=None,
                        help="train each model for this many seconds instead of a number of steps")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier demo in --out (any other non-empty directory is refused)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of both models (default 0)")
    side = p.add_mutually_exclusive_group()
    side.add_argument("--parallel", action="store_true", default=None,
                      help="train the two models side by side, one thread each (the default for sudoku6, whose "
                           "small batches gain little from a second thread)")
    side.add_argument("--sequential", dest="parallel", action="store_false",
                      help="train them one after the other, 2 threads each (the default of the other presets)")
    p.add_argument("--hidden-size", type=int, default=0, help="model width D (default: the preset's, 64 for sudoku6)")
    p.add_argument("--sup-steps", type=int, default=0, help="TRM supervision steps N_sup (default: the preset's, 8 for sudoku6)")


def run(args) -> int:
    if args.seed < 0 or args.hidden_size < 0 or args.sup_steps < 0:
        raise RecursaError("--seed, --hidden-size and --sup-steps must be >= 0")
    overrides = {}
    if args.hidden_size:
        overrides["hidden_size"] = args.hidden_size
    if args.sup_steps:
        overrides["halt_max_steps"] = args.sup_steps
    run_demo(args.task, args.out, steps=args.steps, train_seconds=args.train_seconds, seed=args.seed,
             parallel=args.parallel, model_overrides=overrides, overwrite=args.overwrite)
    return 0
