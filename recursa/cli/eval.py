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
import time
from pathlib import Path

from .. import storage
from ..data.format import load_split, read_task_info
from ..device import pick_device
from ..errors import RecursaError
from ..evaluation import halting
from ..evaluation.evaluate import evaluate
from ..inference import checkpoint
from ..inference.checkpoint import load_checkpoint
from ..inference.display import plot_curves
from ..inference.engine import Protocol
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


def checkpoint_list(args) -> list[Path]:
    """The checkpoints named by CKPT / --checkpoints (/ --all-checkpoints), in order, each once."""

    if (args.ckpt is None) == (args.checkpoints is None):
        raise RecursaError("name the checkpoint: either CKPT or --checkpoints A,B,... (not both)")
    names = [args.ckpt] if args.ckpt is not None else [x.strip() for x in args.checkpoints.split(",")]
    if any(not n for n in names):
        raise RecursaError(f"--checkpoints {args.checkpoints!r}: an empty name (expected A,B,...)")
    out: list[Path] = []
    for name in names:
        path = Path(name)
        steps = checkpoint.step_dirs(path / "checkpoints") if args.all_checkpoints else []
        if args.all_checkpoints and not steps and not (path / "config.json").is_file():
            raise RecursaError(f"{path}: --all-checkpoints needs run directories; no checkpoints/ found there")
        for ckpt in steps or [checkpoint.resolve(path)]:
            if ckpt.resolve() not in [c.resolve() for c in out]:
                out.append(ckpt)
    return out


def check_fit(loaded, split, data, split_name, data_task: dict | None) -> None:
    """A one-line error when the checkpoint cannot read ``data/split_name`` (vocabulary, length,
    puzzle identifiers) or was trained on another task than the dataset's ``task.json`` says."""
    m, spec = split.meta, loaded.spec
    if (m["vocab_size"], m["seq_len"]) != (spec.vocab_size, spec.seq_len):
        raise RecursaError(f"{data}/{split_name}: vocab_size {m['vocab_size']} / seq_len {m['seq_len']} do not match "
                           f"the checkpoint's {spec.vocab_size} / {spec.seq_len} ({loaded.path})")
    if m["num_puzzle_identifiers"] > spec.num_puzzle_identifiers:
        raise RecursaError(f"{data}/{split_name}: {m['num_puzzle_identifiers']} puzzle identifiers, the checkpoint "
                           f"{loaded.path} has embeddings for {spec.num_puzzle_identifiers}")
    mine = loaded.meta.get("task") or {}
    if data_task and mine and (data_task["task"], data_task.get("params", {})) != (mine["task"], mine.get("params", {})):
        raise RecursaError(f"{data}/task.json: the dataset is {data_task['task']} {data_task.get('params', {})}, "
                           f"the checkpoint {loaded.path} was trained on {mine['task']} {mine.get('params', {})}")


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


class _Tee:
    """Feeds one evaluation's rows to a checkpoint's own scorer and to the pooled one."""

    def __init__(self, own, pool):
        self.own, self.pool, self.key = own, pool, own.key

    def update(self, *a) -> None:
        self.own.update(*a)
        self.pool.update(*a)

    def result(self) -> dict:
        return self.own.result()


def run(args) -> int:

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
    paths = checkpoint_list(args)
    if args.record and len(paths) > 1:
        raise RecursaError("--record takes the evaluation of one checkpoint")
    device = pick_device(args.device)
    split = load_split(args.data, args.split)
    data_task = read_task_info(args.data)
    results, pooled, first = [], None, None
    for path in paths:
        loaded = load_checkpoint(path, device, args.dtype)
        check_fit(loaded, split, args.data, args.split, data_task)
        kind = (loaded.spec, loaded.meta.get("task"))
        if first is None:
            first = (kind, loaded.path)
        elif kind != first[0]:
            raise RecursaError(f"{loaded.path}: not the same task and data spec as {first[1]}; "
                               "--checkpoints takes checkpoints of one model")
        scorer = loaded.task.scorer(args.data, split) if loaded.task is not None else None
        if args.submission and not getattr(scorer, "writes_submission", False):
            raise RecursaError("--submission is for ARC datasets (built with `recursa build arc`)")
        if scorer is not None and scorer.pools_checkpoints and len(paths) > 1:
            pooled = pooled or loaded.task.scorer(args.data, split)
            feed = _Tee(scorer, pooled)  # this checkpoint's own votes, and the pool's
        else:
            feed = scorer
        adaptive, threshold, signal, why = halting.adaptive_setting(loaded.meta, args.adaptive, args.halt_threshold,
                                                                    str(loaded.path / "config.json"), args.halt_signal)
        protocol = Protocol.as_trained(loaded.model, args.steps or args.max_steps,
                            adaptive=adaptive, halt_threshold=threshold, halt_signal=signal,
                            trajectories=args.trajectories, noise=args.noise, noise_on=args.noise_on, seed=args.seed,
                            select=args.select, views=args.views)
        t0 = time.perf_counter()
        res = evaluate(loaded.model, split, loaded.task, batch_size=args.batch_size, device=device,
                       limit=args.limit, scorer=feed, protocol=protocol, curve=args.curve, per_puzzle=args.per_puzzle)
        res["seconds"] = round(time.perf_counter() - t0, 3)
        res["puzzles_per_s"] = round(res["n"] / max(res["seconds"], 1e-9), 2)
        res["trained_steps"] = loaded.cfg.model.halt_max_steps
        if why is not None:
            res["protocol"]["halt_threshold_source"] = why
        _print(loaded, res, args.data, args.split, scorer)
        if args.record:
            fig = results_mod.eval_figure(res, loaded.meta, args.data, args.split)
            fig["command"] = results_mod.command_line(getattr(args, "_argv", None))
            if scorer is not None and scorer.key in res:
                fig["metrics"].update(scorer.scalars(res[scorer.key]))
            print(f"  recorded as {args.label!r} in {results_mod.record(args.record, args.label, fig)}")
        results.append({"checkpoint": str(loaded.path), "step": loaded.meta["step"], **res})
        last_scorer = scorer
        del loaded
    out = results[0] if len(results) == 1 else {"checkpoints": results}
    if pooled is not None:
        pooled_res = pooled.result()
        pooled_res["checkpoints"] = len(paths)
        out[pooled.key] = {k: v for k, v in pooled_res.items() if k != "submission"}
        print(f"pooled over {len(paths)} checkpoints:")
        for line in pooled.lines(pooled_res):
            print("  " + line)
    if args.submission:
        final = pooled if pooled is not None else last_scorer
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
    return 0
