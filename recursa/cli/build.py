"""Build a dataset in the official layout (train/ and test/ with dataset.json and all__*.npy,
plus identifiers.json and task.json). Builds are reproducible from (task, --seed, arguments).

Tasks:
  sudoku    generated Sudoku with 2x2, 2x3 or 3x3 boxes (4x4, 6x6, 9x9 grids), unique solutions
  sorting   random lists of values -> the sorted list

Examples:
  recursa build sudoku --box 2x3 --num-train 2000 --num-aug 9 --out data/sudoku6
  recursa build sorting --length 12 --out data/sort12
"""

from __future__ import annotations

import argparse
import time

from ..tasks import build_sorting, build_sudoku
from ..tasks.sudoku import parse_box


def add_arguments(p: argparse.ArgumentParser):
    sub = p.add_subparsers(dest="task", metavar="TASK", required=True)
    s = sub.add_parser("sudoku", help="generated Sudoku puzzles with a unique solution",
                       description="Generate Sudoku puzzles with a unique solution. Cells are removed in random order "
                                   "while the solution stays unique, down to --givens givens (0 = minimal puzzles, "
                                   "the hardest). Training groups hold each puzzle plus --num-aug augmentations "
                                   "(digit relabelling, band/stack and row/column-within permutations, transpose "
                                   "for square boxes); the test set is held out and not augmented.")
    s.add_argument("--out", required=True, help="output dataset directory (replaced atomically if it exists)")
    s.add_argument("--box", default="2x3", help="box shape ROWSxCOLS: 2x2 (4x4 grid), 2x3 (6x6), 3x3 (9x9); default 2x3")
    s.add_argument("--num-train", type=int, default=2000, help="training puzzles before augmentation (default 2000)")
    s.add_argument("--num-test", type=int, default=1000, help="held-out test puzzles (default 1000)")
    s.add_argument("--num-aug", type=int, default=0, help="augmented copies of each training puzzle (default 0)")
    s.add_argument("--givens", type=int, default=0, help="stop removing cells at this many givens; 0 = minimal puzzles (default 0)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.set_defaults(_build=_sudoku)
    r = sub.add_parser("sorting", help="sort a list of values",
                       description="Random lists of --length values in 1..--max-value; the label is the sorted list. "
                                   "Training groups hold each list plus --num-aug shuffled copies.")
    r.add_argument("--out", required=True, help="output dataset directory (replaced atomically if it exists)")
    r.add_argument("--length", type=int, default=8, help="values per list, N (default 8)")
    r.add_argument("--max-value", type=int, default=9, help="values are drawn from 1..max (default 9)")
    r.add_argument("--num-train", type=int, default=10000, help="training lists (default 10000)")
    r.add_argument("--num-test", type=int, default=1000, help="test lists (default 1000)")
    r.add_argument("--num-aug", type=int, default=0, help="shuffled copies per training list (default 0)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.set_defaults(_build=_sorting)


def _check_counts(args):
    from ..errors import RecursaError
    for name in ("num_train", "num_test", "num_aug"):
        if getattr(args, name) < 0:
            raise RecursaError(f"--{name.replace('_', '-')} must be >= 0")
    if args.num_train == 0:
        raise RecursaError("--num-train must be > 0")


def _sudoku(args):
    _check_counts(args)
    rows, cols = parse_box(args.box)
    build_sudoku(args.out, box_rows=rows, box_cols=cols, num_train=args.num_train, num_test=args.num_test,
                 num_aug=args.num_aug, givens=args.givens, seed=args.seed)


def _sorting(args):
    _check_counts(args)
    build_sorting(args.out, length=args.length, max_value=args.max_value, num_train=args.num_train,
                  num_test=args.num_test, num_aug=args.num_aug, seed=args.seed)


def run(args) -> int:
    t = time.perf_counter()
    args._build(args)
    print(f"built in {time.perf_counter() - t:.1f} s")
    return 0
