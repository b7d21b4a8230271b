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
from pathlib import Path

import numpy as np

from ..errors import RecursaError


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("ckpt", help="checkpoint or run directory")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--puzzle", help="the puzzle as text")
    g.add_argument("--file", help="a file with one puzzle per line")
    p.add_argument("--steps", type=int, default=0, help="supervision steps (default: as trained)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"],
                   help="compute in this dtype instead of the checkpoint's (e.g. float32 for an imported bf16 model "
                        "on a CPU without fast bf16)")
    p.add_argument("--allow-multiple", action="store_true", help="accept puzzles with more than one solution")
    p.add_argument("--per-row", type=int, default=4, help="answer grids per row of output (default 4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")


def side_by_side(blocks: list[str], titles: list[str], gap: int = 4) -> str:
    """Lay out multi-line text blocks horizontally under their titles."""
    lines = [b.split("\n") for b in blocks]
    width = max(max(len(x) for x in ls + [t]) for ls, t in zip(lines, titles))
    height = max(len(ls) for ls in lines)
    rows = ["".join(t.ljust(width + gap) for t in titles).rstrip()]
    for i in range(height):
        rows.append("".join((ls[i] if i < len(ls) else "").ljust(width + gap) for ls in lines).rstrip())
    return "\n".join(rows)


def show_refinement(task, inputs: np.ndarray, step_preds: list[np.ndarray], q_halt: list[float],
                    per_row: int = 4) -> tuple[str, bool]:
    """Text showing the answer after each step; returns (text, final answer valid)."""
    ref = task.reference(inputs) if hasattr(task, "reference") else None
    blocks, titles = [task.render(inputs)], ["puzzle"]
    prev = None
    # Once the answer stops changing, one grid stands for all the remaining steps.
    last_change = max([k for k in range(1, len(step_preds)) if (step_preds[k] != step_preds[k - 1]).any()], default=0)
    for k, pred in enumerate(step_preds):
        if k > last_change + 1:
            break
        notes = []
        if prev is not None:
            notes.append(f"{int((pred != prev).sum())} changed")
        if ref is not None:
            notes.append(f"{int((pred != ref).sum())} wrong")
        label = f"step {k + 1}" if k <= last_change or k == len(step_preds) - 1 else f"steps {k + 1}-{len(step_preds)}"
        titles.append(f"{label}: " + ", ".join(notes) if notes else label)
        blocks.append(task.render(pred))
        prev = pred
    out = []
    for i in range(0, len(blocks), per_row):
        out.append(side_by_side(blocks[i:i + per_row], titles[i:i + per_row]))
    valid = bool(task.check(inputs[None], step_preds[-1][None])[0])
    halt = next((k + 1 for k, q in enumerate(q_halt) if q > 0), None)
    out.append(f"final answer after {len(step_preds)} steps: {'VALID' if valid else 'NOT valid'}"
               + (f" (the halting head said 'done' at step {halt})" if halt else ""))
    return "\n\n".join(out), valid


def run(args) -> int:
    import torch

    from ..inference import load_checkpoint, pick_device, refine

    if args.steps < 0 or args.per_row < 1:
        raise RecursaError("--steps must be >= 0 and --per-row >= 1")
    loaded = load_checkpoint(args.ckpt, pick_device(args.device), args.dtype)
    task = loaded.task
    if task is None:
        raise RecursaError(f"{loaded.path}: the checkpoint has no task information (trained on a dataset without task.json)")
    if task.name == "arc":
        raise RecursaError("ARC tasks are solved through their puzzle embeddings and voting across views: "
                           "use `recursa eval CKPT --data DATASET --submission FILE`")
    if args.puzzle is not None:
        items = [(args.puzzle, "--puzzle")]
    else:
        from .. import storage
        path = Path(args.file)
        # missing, a directory, unreadable, not UTF-8: one error line naming the file
        lines = storage.read_text(path, "file").splitlines()
        if task.name == "maze":  # blocks of rows separated by blank lines
            items, start = [], None
            for i, line in enumerate(lines + [""]):
                if line.strip() and start is None:
                    start = i
                elif not line.strip() and start is not None:
                    items.append(("\n".join(lines[start:i]), f"{path} lines {start + 1}-{i}"))
                    start = None
        else:
            items = [(line, f"{path} line {i + 1}") for i, line in enumerate(lines)
                     if line.strip() and not line.lstrip().startswith("#")]
        if not items:
            raise RecursaError(f"{path}: no puzzles in the file")
    parse_kw = {"require_unique": not args.allow_multiple} if loaded.task.name == "sudoku" else {}
    parsed = [(task.parse(text, where, **parse_kw), where) for text, where in items]  # all errors before any work
    n_valid = 0
    for inputs, where in parsed:
        batch = {"inputs": torch.from_numpy(inputs[None].astype(np.int64)),
                 "labels": torch.zeros(1, len(inputs), dtype=torch.int64),
                 "puzzle_identifiers": torch.zeros(1, dtype=torch.int64)}
        batch = {k: v.to(next(loaded.model.parameters()).device) for k, v in batch.items()}
        preds, qs = [], []
        for out in refine(loaded.model, batch, args.steps or None):
            preds.append(out["preds"][0].cpu().numpy())
            qs.append(float(out["q_halt"][0]))
        text, valid = show_refinement(task, inputs, preds, qs, args.per_row)
        n_valid += valid
        print(f"== {where}: {task.describe()}")
        print(text)
        print()
    if len(parsed) > 1:
        print(f"{n_valid}/{len(parsed)} answers valid")
    return 0
