"""Evaluate a checkpoint on a dataset split: token accuracy, exact accuracy, valid-solution rate
(task checker), steps, and exact accuracy after each supervision step.

CKPT is a checkpoint directory or a run directory (its latest checkpoint is used).

Examples:
  recursa eval runs/demo/trm --data runs/demo/data
  recursa eval runs/demo/trm --data runs/demo/data --steps 16 --json deeper.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import storage
from ..errors import RecursaError


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("ckpt", help="checkpoint or run directory")
    p.add_argument("--data", required=True, help="dataset directory (official layout)")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--json", dest="json_out", help="also write the metrics to this JSON file")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N puzzles (default all)")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default 256)")
    p.add_argument("--steps", type=int, default=0, help="supervision steps to run (default: as trained; more = think longer)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"],
                   help="compute in this dtype instead of the checkpoint's (e.g. float32 for an imported bf16 model "
                        "on a CPU without fast bf16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--submission", help="ARC datasets: write the Kaggle submission.json (attempt_1/attempt_2 per "
                                        "test input, from voting across augmented views) to this file")


def run(args) -> int:
    from ..data.format import load_split
    from ..evaluation.evaluate import evaluate
    from ..inference import load_checkpoint, pick_device
    from ..training.checkpoint import atomic_write_text

    if args.steps < 0 or args.batch_size <= 0 or args.limit < 0:
        raise RecursaError("--steps and --limit must be >= 0, --batch-size > 0")
    for flag, path in (("--json", args.json_out), ("--submission", args.submission)):
        if path is not None:
            storage.check_file_out(path, flag)
    device = pick_device(args.device)
    loaded = load_checkpoint(args.ckpt, device, args.dtype)
    split = load_split(args.data, args.split)
    m, spec = split.meta, loaded.spec
    if (m["vocab_size"], m["seq_len"]) != (spec.vocab_size, spec.seq_len):
        raise RecursaError(f"{args.data}/{args.split}: vocab_size {m['vocab_size']} / seq_len {m['seq_len']} do not match "
                           f"the checkpoint's {spec.vocab_size} / {spec.seq_len}")
    if m["num_puzzle_identifiers"] > spec.num_puzzle_identifiers:
        raise RecursaError(f"{args.data}/{args.split}: {m['num_puzzle_identifiers']} puzzle identifiers, the checkpoint "
                           f"has embeddings for {spec.num_puzzle_identifiers}")
    from ..data.format import read_task_info
    buckets = read_task_info(args.data).get("rating_buckets")
    voting = loaded.task.scorer(args.data, split) if loaded.task is not None else None
    if args.submission and not getattr(voting, "writes_submission", False):
        raise RecursaError("--submission is for ARC datasets (built with `recursa build arc`)")
    res = evaluate(loaded.model, split, loaded.task, batch_size=args.batch_size, device=device,
                   limit=args.limit, steps=args.steps or None, rating_buckets=buckets, voting=voting)
    name = loaded.task.describe() if loaded.task else "dataset"
    print(f"{loaded.path}  ({loaded.cfg.model.arch}, step {loaded.meta['step']}) on {args.data}/{args.split}: {res['n']} {name} puzzles")
    print(f"  token accuracy   {res['token_accuracy']:.4f}")
    print(f"  exact accuracy   {res['exact_accuracy']:.4f}")
    if res["valid_rate"] is not None:
        print(f"  valid solutions  {res['valid_rate']:.4f}")
    print(f"  steps            {res['mean_steps']:.0f} (model's own halting step: mean {res['halt_step_mean']:.2f})")
    print("  exact by step    " + "  ".join(f"{i + 1}:{x:.3f}" for i, x in enumerate(res["exact_by_step"])))
    if "exact_by_rating" in res:
        print("  exact by rating  " + "  ".join(f"{k}: {v['exact']:.3f} (n={v['n']})" for k, v in res["exact_by_rating"].items()
                                               if v["n"]))
    if "arc" in res and res["arc"].get("tasks"):
        a = res["arc"]
        print(f"  ARC ({a['tasks']} tasks, {a['test_inputs']} test inputs, voting over views): "
              + "  ".join(f"{k} {a[k]:.4f}" for k in ("pass@1", "pass@2", "pass@5", "pass@10", "pass@100", "pass@1000")))
    if args.submission:
        out = Path(args.submission)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(voting.result().get("submission", {})) + "\n")
        print(f"  wrote {out}")
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(res, indent=1) + "\n")
    return 0
