"""Train a grid of runs that differ only in the settings you vary, evaluate each on the same
validation puzzles (val/; test when the dataset has none), and plot accuracy against the varied setting, against parameter count and
against test-time compute (sweep.json + sweep.png in --out). Resumable: run it again to continue.

Examples (the "recursion scaling" figure on a laptop, about 5 minutes per run):
  recursa build sudoku --box 2x3 --num-train 3000 --num-aug 9 --num-test 500 --num-val 500 --out data/sudoku6
  recursa sweep configs/sudoku6_trm_cpu.toml --vary model.L_cycles=1,2,4,6 --vary model.H_cycles=1,3 \\
      --set train.max_time_s=300 --set train.steps=0 --out runs/sweep-depth
  recursa sweep configs/sudoku6_trm_cpu.toml --vary model.hidden_size=32,64,128 --seeds 0,1 --out runs/sweep-width
  recursa sweep configs/sudoku6_trm_cpu.toml --variant trm= --variant "cgar=train.step_weights=0.7" --seeds 0,1 \
      --set train.max_time_s=300 --set train.steps=0 --set train.eval_interval=200 --out runs/sweep-methods
"""

from __future__ import annotations

import argparse

from .. import storage
from ..errors import RecursaError
from ..tools import results
from ..tools.sweep import parse_variants, parse_vary, record_rows, sweep


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("config", help="TOML recipe every run starts from")
    p.add_argument("--vary", action="append", default=[], metavar="SECTION.KEY=V1,V2,...",
                   help="a setting and its values (repeatable: the grid is every combination)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=SECTION.KEY=VALUE;...",
                   help="a named bundle of settings (a method: several settings at once; NAME= alone is the recipe "
                        "as it is); repeatable: the grid is every variant x every --vary combination")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value for every run (repeatable)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, one run each per point (default 0)")
    p.add_argument("--out", required=True, help="sweep directory (runs, sweep.json, sweep.png)")
    p.add_argument("--eval-steps", type=int, default=0, help="evaluate at this depth (default: each run's trained depth)")
    p.add_argument("--record", metavar="FILE",
                   help="also write every run as a figure of this results file (results/NAME.json, "
                        "recursa/tools/results.py), named by the run")
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate the first N puzzles of the evaluation split (default all)")


def run(args) -> int:
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise RecursaError(f"--seeds {args.seeds!r}: expected integers separated by commas") from None
    if not seeds or any(s < 0 for s in seeds) or args.eval_steps < 0 or args.eval_limit < 0:
        raise RecursaError("--seeds must be integers >= 0; --eval-steps and --eval-limit >= 0")
    variants = parse_variants(args.variant)
    if args.record:
        storage.check_file_out(args.record, "--record")
    rows = sweep(args.config, parse_vary(args.vary) if args.vary or not variants else [], args.out,
                 overrides=args.overrides, seeds=seeds, eval_steps=args.eval_steps, eval_limit=args.eval_limit,
                 variants=variants)
    if args.record:
        print(f"recorded {len(rows)} runs in {record_rows(args.record, rows, args.out, results.command_line(args._argv))}")
    return 0
