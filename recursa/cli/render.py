"""Draw a puzzle's refinement, step by step: one self-contained HTML page (a slider and a play
button step through the answers, changed cells outlined, the halting confidence per step; no
network, no external script) and/or one PNG of every step.

The puzzle is text (`--puzzle`, as `recursa solve` reads it) or a row of a dataset split
(`--data DIR --index I`: needed for ARC, whose tasks are answered through their puzzle embedding).

Examples:
  recursa render runs/demo/trm --puzzle "..3.......12.6.4..1....3....26..5..." --html think.html --steps 16
  recursa render runs/arc --data data/arc1 --index 0 --html arc.html --png arc.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import storage
from ..data.format import load_split
from ..device import pick_device
from ..errors import RecursaError
from ..inference.checkpoint import load_checkpoint
from ..inference.render import html_page, png, trace
from ..storage import atomic_write_text


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("ckpt", help="checkpoint or run directory")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--puzzle", help="the puzzle as text")
    g.add_argument("--data", help="a dataset directory: render row --index of its --split")
    p.add_argument("--index", type=int, default=0, help="with --data: the row (default 0)")
    p.add_argument("--split", default="test", help="with --data: the split (default test)")
    p.add_argument("--steps", type=int, default=0, help="supervision steps (default: as trained; more = think longer)")
    p.add_argument("--html", help="write the page to this file")
    p.add_argument("--png", help="write every step as one image to this file")
    p.add_argument("--allow-multiple", action="store_true", help="accept puzzles with more than one solution")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")


def run(args) -> int:

    if not args.html and not args.png:
        raise RecursaError("say what to write: --html FILE and/or --png FILE")
    if args.steps < 0:
        raise RecursaError("--steps must be >= 0")
    for flag, path in (("--html", args.html), ("--png", args.png)):
        if path is not None:
            storage.check_file_out(path, flag)
    loaded = load_checkpoint(args.ckpt, pick_device(args.device))
    task = loaded.task
    if task is None:
        raise RecursaError(f"{loaded.path}: the checkpoint has no task information (trained on a dataset without task.json)")
    if args.puzzle is not None:
        refusal = task.solve_refusal()
        if refusal:
            raise RecursaError(refusal + "; or render a dataset row with --data DIR --index I")
        inputs, ident, title = task.parse_for_solve(args.puzzle, "--puzzle", allow_multiple=args.allow_multiple), 0, ""
    else:
        split = load_split(args.data, args.split)
        if not 0 <= args.index < split.num_examples:
            raise RecursaError(f"--index {args.index}: {args.data}/{args.split} has rows 0..{split.num_examples - 1}")
        if split.meta["seq_len"] != loaded.spec.seq_len:
            raise RecursaError(f"{args.data}/{args.split}: seq_len {split.meta['seq_len']} does not match the "
                               f"checkpoint's {loaded.spec.seq_len}")
        inputs = split.inputs[args.index]
        ident = int(split.example_identifiers([args.index])[0])
        if ident >= loaded.spec.num_puzzle_identifiers:
            raise RecursaError(f"{args.data}: puzzle identifier {ident} has no embedding in {loaded.path}")
        title = f"{task.describe()}, {args.data}/{args.split} row {args.index}"
    tr = trace(loaded.model, task, inputs, ident, args.steps or None, title)
    if args.html:
        out = Path(args.html)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, html_page(tr))
        print(f"wrote {out} ({len(tr.steps)} steps)")
    if args.png:
        out = Path(args.png)
        png(tr, out)
        print(f"wrote {out} ({len(tr.steps)} steps)")
    return 0
