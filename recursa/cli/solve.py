"""Solve puzzles with a trained checkpoint, printing the answer after every supervision step,
how many cells changed and how many are still wrong (against the exact solver), and whether the
final answer is valid.

Examples:
  recursa solve runs/demo/trm --puzzle "..3.5.  ....."
  recursa solve runs/demo/trm --file puzzles.txt --steps 16
A Sudoku is given row by row (whitespace ignored); blanks are '.', '0' or '_'. In a --file, each
non-empty line not starting with '#' is one puzzle. A maze is its grid ('#' wall, ' ' or '.' open,
'S', 'G'), as one line of size*size characters or as rows; in a --file, mazes are separated by
blank lines. (ARC tasks need their puzzle embeddings: evaluate them with `recursa eval`.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from .. import storage
from ..device import pick_device
from ..errors import RecursaError
from ..evaluation import halting
from ..inference.checkpoint import load_checkpoint
from ..inference.display import show_refinement
from ..inference.engine import Protocol, think_one
from ..inference.render import Trace, terminal_trace


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("ckpt", help="checkpoint or run directory")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--puzzle", help="the puzzle as text")
    g.add_argument("--file", help="a file with one puzzle per line")
    p.add_argument("--steps", type=int, default=0, help="supervision steps (default: as trained; more = think longer)")
    p.add_argument("--adaptive", action="store_true",
                   help="stop when the halting confidence reaches --halt-threshold (at most --steps)")
    p.add_argument("--halt-signal", choices=["head", "answer"], default=None,
                   help="with --adaptive: the q head's confidence, or the model's probability of its own answer "
                        "(default: the checkpoint's calibrated signal, else the q head)")
    p.add_argument("--halt-threshold", type=float, default=None,
                   help="with --adaptive (default: the checkpoint's calibrated threshold, else 0.5)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"],
                   help="compute in this dtype instead of the checkpoint's (e.g. float32 for an imported bf16 model "
                        "on a CPU without fast bf16)")
    p.add_argument("--allow-multiple", action="store_true", help="accept puzzles with more than one solution")
    p.add_argument("--trace", action="store_true",
                   help="print the answer after every step, one below the other, with the changed cells highlighted")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="--trace: highlight in colour (auto: when the output is a terminal and NO_COLOR is unset)")
    p.add_argument("--per-row", type=int, default=4, help="answer grids per row of output (default 4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")


def run(args) -> int:
    if args.steps < 0 or args.per_row < 1:
        raise RecursaError("--steps must be >= 0 and --per-row >= 1")
    loaded = load_checkpoint(args.ckpt, pick_device(args.device), args.dtype)
    adaptive, threshold, signal, why = halting.adaptive_setting(loaded.meta, args.adaptive, args.halt_threshold,
                                                                str(loaded.path / "config.json"), args.halt_signal)
    if why is not None:
        print(f"halting threshold {why}")
    protocol = Protocol.as_trained(loaded.model, args.steps, adaptive=adaptive,
                        halt_threshold=threshold, halt_signal=signal)
    task = loaded.task
    if task is None:
        raise RecursaError(f"{loaded.path}: the checkpoint has no task information (trained on a dataset without task.json)")
    refusal = task.solve_refusal()
    if refusal:
        raise RecursaError(refusal)
    if args.puzzle is not None:
        items = [(args.puzzle, "--puzzle")]
    else:
        path = Path(args.file)
        # missing, a directory, unreadable, not UTF-8: one error line naming the file
        items = task.split_puzzles(storage.read_text(path, "file").splitlines(), path)
        if not items:
            raise RecursaError(f"{path}: no puzzles in the file")
    # every puzzle parsed (and every error raised) before any work
    parsed = [(task.parse_for_solve(text, where, allow_multiple=args.allow_multiple), where) for text, where in items]
    n_valid = 0
    for inputs, where in parsed:
        snaps = think_one(loaded.model, inputs, protocol)
        preds, qs = [s.preds[0].cpu().numpy() for s in snaps], [float(s.q_halt[0]) for s in snaps]
        if args.trace:
            tr = Trace(f"{where}: {task.describe()}", task.render(inputs), [task.render(x) for x in preds],
                       [1.0 / (1.0 + float(np.exp(-q))) for q in qs],
                       [bool(task.check(inputs[None], x[None])[0]) for x in preds], loaded.model.halt_max_steps, {})
            print(terminal_trace(tr, _use_color(args.color)))
            n_valid += tr.valid[-1]
            continue
        text, valid = show_refinement(task, inputs, preds, qs, args.per_row)
        n_valid += valid
        print(f"== {where}: {task.describe()}")
        print(text)
        print()
    if len(parsed) > 1:
        print(f"{n_valid}/{len(parsed)} answers valid")
    return 0


def _use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
