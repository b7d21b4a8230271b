"""Train a model from a TOML recipe (see configs/), with dotted overrides.

Examples:
  recursa train configs/sudoku6_trm_cpu.toml
  recursa train configs/sudoku6_trm_cpu.toml --set train.lr=3e-4 --set train.out=runs/lr3e-4
  recursa train configs/sudoku6_trm_cpu.toml --resume        # continue the run in train.out

Every key of the recipe is documented in recursa/config.py. The run directory (train.out) gets
config.toml (resolved), metrics.jsonl and checkpoints/ (see `recursa eval` and `recursa solve`).
"""

from __future__ import annotations

import argparse
import sys

from .. import config
from ..training.trainer import fit


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("config", help="TOML recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value (repeatable), e.g. --set train.steps=1000; SECTION.KEY= (nothing after =) gives the key its default")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in train.out")
    p.add_argument("--quiet", action="store_true", help="no progress line (metrics still go to metrics.jsonl)")


def run(args) -> int:

    cfg = config.load(args.config, args.overrides)
    fit(cfg, resume=args.resume, progress=not args.quiet, log=_quiet_log if args.quiet else print)
    return 0


def _quiet_log(text: str = "", *a, **k) -> None:
    """--quiet: no progress or summary lines, but notes (a lock taken over, leftovers removed,
    settings changed on resume) still reach stderr."""
    if str(text).startswith("note:"):
        print(text, file=sys.stderr)
