"""Choose the --adaptive halting signal and threshold of a checkpoint on held-out puzzles and store
them in the checkpoint (what training does at its end when the dataset has a val/ split).

  recursa calibrate runs/sudoku6 --data data/sudoku6               # on data/sudoku6/val
  recursa calibrate runs/sudoku6 --data data/sudoku6 --dry-run     # print the choice, store nothing

Every puzzle of the split runs the trained number of steps; for each signal (the q head, the
answer's probability) and threshold the adaptive result is read off that one run, and the most
cautious threshold within 5% of the fewest steps that keeps exact accuracy (and the valid rate)
within --tolerance of the fixed protocol is chosen (recursa/evaluation/halting.py). The record goes
into the checkpoint's config.json under "halting" (written atomically; the weights are untouched);
`recursa eval/solve --adaptive` use it. Calibrate on a split that was not trained on and that the
final report does not use: not on test.
"""

from __future__ import annotations

import json

from ..data.format import load_split
from ..device import pick_device
from ..errors import RecursaError
from ..evaluation import halting
from ..evaluation.checkpoints import check_fit
from ..inference.checkpoint import load_checkpoint
from ..tasks import read_task_info


def add_arguments(p) -> None:
    p.add_argument("ckpt", help="run directory (its latest checkpoint) or checkpoint directory")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--split", default="val", help="split to calibrate on (default val)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="accuracy (fraction) the adaptive protocol may lose against the fixed one (default 0.002)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    p.add_argument("--dry-run", action="store_true", help="print the choice without storing it")


def run(args) -> int:

    tolerance = halting.DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not 0.0 <= tolerance < 1.0:
        raise RecursaError(f"--tolerance {args.tolerance}: must be in [0, 1)")
    if args.batch_size <= 0:
        raise RecursaError("--batch-size must be > 0")
    if args.split == "test":
        print("warning: calibrating on the test split: the test numbers of --adaptive are then chosen on themselves")
    device = pick_device(args.device)
    loaded = load_checkpoint(args.ckpt, device)
    split = load_split(args.data, args.split)
    check_fit(loaded, split, args.data, args.split, read_task_info(args.data))
    rec = halting.calibrate(loaded.model, split, loaded.task, split_name=args.split, step=loaded.meta.get("step"),
                            batch_size=args.batch_size, device=device, tolerance=tolerance)
    for name, c in rec["candidates"].items():
        mark = "*" if name == rec["signal"] else " "
        if c["threshold"] is None:
            print(f"{mark} {halting.SIGNAL_WORDS[name]:26s} no threshold keeps the accuracy")
        else:
            print(f"{mark} {halting.SIGNAL_WORDS[name]:26s} threshold {c['threshold']}: exact {c['adaptive_exact']:.3f} "
                  f"in {c['adaptive_mean_steps']:.2f} steps (fixed: {rec['fixed_exact']:.3f} in {rec['max_steps']})")
    if not args.dry_run:
        halting.store(loaded.path, rec)
        print(f"stored in {loaded.path / 'config.json'} (halting)")
    else:
        print(json.dumps(rec))
    return 0
