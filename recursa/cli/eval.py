"""Evaluate a checkpoint on a dataset split: token accuracy, exact accuracy, valid-solution rate
(task checker), steps, exact accuracy after each supervision step, and the family's own metric
(ARC: voting across views, pass@K under TRM's and HRM's rules; Sudoku-Extreme: exact by rating).

CKPT is a checkpoint directory or a run directory (its latest checkpoint is used).
``--checkpoints A,B,...`` evaluates several checkpoints of the same model on the same data; where
the family's metric pools (ARC), their votes are pooled into one result, which is what the
official ARC evaluator reports (it accumulates votes over every evaluation of a run). recursa's
default, one checkpoint, scores that checkpoint alone.

Test-time compute (the papers' protocol, every puzzle runs the trained number of supervision steps,
is the default so that numbers stay comparable):
  --steps N / --max-steps M    think deeper: N steps, or at most M (may exceed training)
  --adaptive                   stop each puzzle when its halting confidence >= --halt-threshold (default:
                               the signal and threshold calibrated on the dataset's val/ split after
                               training and stored in the checkpoint, else the official q head at 0.5);
                               the finished puzzles leave the batch, so compute follows difficulty
  --halt-signal head|answer    the confidence: the q head's sigmoid(q_halt), or the model's
                               probability of its own answer (product of the cells' top probabilities)
  --trajectories K --noise S   think wider: K copies per puzzle, batched, copies 1..K-1 with noise S
                               on the latent; the answer: a valid one first, then the most confident
  --views K                    think wider: K symmetric views per puzzle (mazes: the 8 rotations and
                               reflections; Sudoku: 8, or 4 for non-square boxes), batched; answers
                               mapped back, the one most views agree on wins (no checker consulted)
  --curve [--plot F.png]       accuracy and valid rate after every step, halting histogram,
                               accuracy against network applications (JSON; plots to F.png)

Examples:
  recursa eval runs/demo/trm --data runs/demo/data
  recursa eval runs/demo/trm --data runs/demo/data --steps 16 --json deeper.json
  recursa eval runs/demo/trm --data runs/demo/data --adaptive --max-steps 32
  recursa eval runs/demo/trm --data runs/demo/data --trajectories 16 --noise 0.3 --adaptive
  recursa eval runs/maze15_conv_muon --data data/maze15_32k --steps 16 --views 8
  recursa eval runs/demo/trm --data runs/demo/data --curve --max-steps 32 --plot curve.png
  recursa eval --checkpoints runs/arc/checkpoints/step_0050000,runs/arc --data data/arc1 --submission sub.json
  recursa eval --checkpoints runs/arc --all-checkpoints --data data/arc1     # every kept checkpoint
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import storage
from ..device import pick_device
from ..errors import RecursaError
from ..evaluation.checkpoints import CheckpointEvaluation, Depth, checkpoint_list
from ..inference.display import plot_curves
from ..storage import atomic_write_text
from ..tools import results as results_mod
from ..tools.results import check_label


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("ckpt", nargs="?", help="checkpoint or run directory")
    p.add_argument("--checkpoints", metavar="A,B,...",
                   help="several checkpoints (or run directories) of one model, comma-separated: each is scored, "
                        "and ARC votes are pooled across them (the official evaluator's protocol)")
    p.add_argument("--all-checkpoints", action="store_true",
                   help="with run directories: use every checkpoint the run kept, not just its latest")
    p.add_argument("--data", required=True, help="dataset directory (official layout)")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--json", dest="json_out", help="also write the metrics to this JSON file")
    p.add_argument("--record", metavar="FILE",
                   help="add this evaluation as a figure to a results file (results/NAME.json: metrics, protocol, "
                        "command, the data's build command, the checkpoint's step, seed and config hash, the machine; "
                        "recursa/tools/results.py), under --label")
    p.add_argument("--label", help="with --record: the figure's name in the file (replaced when it exists)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N puzzles (default all)")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default 256)")
    p.add_argument("--steps", type=int, default=0, help="supervision steps to run (default: as trained; more = think longer)")
    p.add_argument("--max-steps", type=int, default=0,
                   help="at most this many steps (with --adaptive; without, the same as --steps); may exceed training")
    p.add_argument("--adaptive", action="store_true",
                   help="stop each puzzle when its halting confidence reaches --halt-threshold; finished puzzles "
                        "leave the batch")
    p.add_argument("--halt-threshold", type=float, default=None,
                   help="confidence that stops a puzzle (default: the checkpoint's calibrated threshold, else 0.5)")
    p.add_argument("--halt-signal", choices=["head", "answer"], default=None,
                   help="what the confidence is: the q head's sigmoid(q_halt), or the model's probability of its "
                        "own answer (default: the checkpoint's calibrated signal, else the model's own, the q head)")
    p.add_argument("--trajectories", type=int, default=1, help="K noisy copies of every puzzle, batched (default 1)")
    p.add_argument("--noise", type=float, default=0.0, help="std of the Gaussian noise on copies 1..K-1 (default 0)")
    p.add_argument("--noise-on", choices=["z_L", "z_H", "both"], default="z_L", help="which state gets the noise")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--views", type=int, default=1,
                   help="K symmetric views of every puzzle (mazes, Sudoku), batched; the answer most views agree on, "
                        "mapped back, wins, ties to the most confident (default 1)")
    p.add_argument("--select", choices=["valid", "confidence"], default="valid",
                   help="answer of a puzzle among its trajectories: a valid one first (the task's rule checker), "
                        "then the most confident (default), or the most confident only")
    p.add_argument("--curve", action="store_true", help="also the valid rate after every step (JSON: valid_by_step)")
    p.add_argument("--plot", help="with --curve: write the recursion curves (accuracy and valid rate by step, halting "
                                  "histogram, accuracy against network applications) to this PNG")
    p.add_argument("--per-puzzle", action="store_true", help="JSON: the steps, final confidence and exactness of "
                                                             "every puzzle")
    p.add_argument("--dtype", choices=["float32", "bfloat16"],
                   help="compute in this dtype instead of the checkpoint's (e.g. float32 for an imported bf16 model "
                        "on a CPU without fast bf16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--submission", help="ARC datasets: write the Kaggle submission.json (attempt_1/attempt_2 per "
                                        "test input, from voting across augmented views) to this file")


def _print(loaded, res: dict, data, split_name: str, scorer) -> None:
    name = loaded.task.describe() if loaded.task else "dataset"
    print(f"{loaded.path}  ({loaded.cfg.model.arch}, step {loaded.meta['step']}) on {data}/{split_name}: {res['n']} {name} puzzles")
    print(f"  token accuracy   {res['token_accuracy']:.4f}")
    print(f"  exact accuracy   {res['exact_accuracy']:.4f}")
    if res["valid_rate"] is not None:
        print(f"  valid solutions  {res['valid_rate']:.4f}")
    pr = res["protocol"]
    how = (f"adaptive (stop at confidence >= {pr['halt_threshold']}, at most {pr['max_steps']})" if pr["adaptive"]
           else f"fixed {pr['max_steps']}")
    if pr["trajectories"] > 1:
        how += f", {pr['trajectories']} trajectories (noise {pr['noise']} on {pr['noise_on']})"
    if pr.get("views", 1) > 1:
        how += f", {pr['views']} views, majority vote"
    print(f"  protocol         {how}")
    if pr.get("halt_threshold_source"):
        print(f"  halting          threshold {pr['halt_threshold_source']}")
    print(f"  steps            {res['mean_steps']:.2f} per puzzle (model's own halting step: mean "
          f"{res['halt_step_mean']:.2f}); {res['network_calls']:,} network applications; "
          f"{res['puzzles_per_s']:.1f} puzzles/s")
    print("  exact by step    " + "  ".join(f"{i + 1}:{x:.3f}" for i, x in enumerate(res["exact_by_step"])))
    if res.get("valid_by_step"):
        print("  valid by step    " + "  ".join(f"{i + 1}:{x:.3f}" for i, x in enumerate(res["valid_by_step"])))
    if scorer is not None and scorer.key in res:
        for line in scorer.lines(res[scorer.key]):
            print("  " + line)


def _record(args, ev) -> None:
    fig = results_mod.eval_figure(ev.res, ev.loaded.meta, args.data, args.split)
    fig["command"] = results_mod.command_line(getattr(args, "_argv", None))
    fig["run"]["train_s"] = results_mod.train_seconds(ev.loaded.path, ev.loaded.meta["step"])
    if ev.scorer is not None and ev.scorer.key in ev.res:
        fig["metrics"].update(ev.scorer.scalars(ev.res[ev.scorer.key]))
    print(f"  recorded as {args.label!r} in {results_mod.record(args.record, args.label, fig)}")


def _check(args) -> None:
    """Every argument problem, before any work."""
    if args.steps < 0 or args.max_steps < 0 or args.batch_size <= 0 or args.limit < 0:
        raise RecursaError("--steps, --max-steps and --limit must be >= 0, --batch-size > 0")
    if args.steps and args.max_steps:
        raise RecursaError("give --steps (fixed depth) or --max-steps (a cap), not both")
    if args.plot and not args.curve:
        raise RecursaError("--plot draws the recursion curves: add --curve")
    if args.trajectories > 1 and args.noise == 0:
        raise RecursaError(f"--trajectories {args.trajectories} without --noise: the copies would all think alike")
    if (args.record is None) != (args.label is None):
        raise RecursaError("--record FILE and --label NAME go together")
    if args.label is not None:
        check_label(args.label)  # before the evaluation, not after it
    for flag, path in (("--json", args.json_out), ("--submission", args.submission), ("--plot", args.plot),
                       ("--record", args.record)):
        if path is not None:
            storage.check_file_out(path, flag)


def run(args) -> int:
    _check(args)
    paths = checkpoint_list(args.ckpt, args.checkpoints, args.all_checkpoints)
    if args.record and len(paths) > 1:
        raise RecursaError("--record takes the evaluation of one checkpoint")
    run = CheckpointEvaluation(
        paths, args.data, args.split, device=pick_device(args.device), dtype=args.dtype,
        depth=Depth(args.steps or args.max_steps, args.adaptive, args.halt_threshold, args.halt_signal),
        width=dict(trajectories=args.trajectories, noise=args.noise, noise_on=args.noise_on, seed=args.seed,
                   select=args.select, views=args.views),
        batch_size=args.batch_size, limit=args.limit, curve=args.curve, per_puzzle=args.per_puzzle,
        submission=bool(args.submission))
    results = []
    for ev in run:
        _print(ev.loaded, ev.res, args.data, args.split, ev.scorer)
        if args.record:
            _record(args, ev)
        results.append({"checkpoint": str(ev.loaded.path), "step": ev.loaded.meta["step"], **ev.res})
    _outputs(args, run, results)
    return 0


def _outputs(args, run: CheckpointEvaluation, results: list[dict]) -> None:
    """The pooled score, and the files asked for: --submission, --plot, --json."""
    pooled, paths = run.pooled, run.paths
    out = results[0] if len(results) == 1 else {"checkpoints": results}
    if pooled is not None:
        pooled_res = pooled.result()
        pooled_res["checkpoints"] = len(paths)
        out[pooled.key] = {k: v for k, v in pooled_res.items() if k != "submission"}
        print(f"pooled over {len(paths)} checkpoints:")
        for line in pooled.lines(pooled_res):
            print("  " + line)
    if args.submission:
        final = pooled if pooled is not None else run.last_scorer
        dest = Path(args.submission)
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dest, json.dumps(final.result().get("submission", {})) + "\n")
        print(f"  wrote {dest}")
    if args.plot:
        plot_curves(Path(args.plot), results, trained_steps=results[0]["trained_steps"])
        print(f"  wrote {args.plot}")
    if args.json_out:
        dest = Path(args.json_out)
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dest, json.dumps(out, indent=1) + "\n")
