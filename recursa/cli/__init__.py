"""Command-line interface: ``recursa <command> ...`` (also ``python -m recursa``).

Each subcommand lives in its own module with ``add_arguments(parser)`` and ``run(args)``; this
module only dispatches and turns input problems (:class:`RecursaError`) into one ``error:``
line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import RecursaError
from . import bench, build, demo, import_official, solve, train
from . import eval as eval_cmd

COMMANDS = {
    "demo": (demo, "build a task, train TRM and a same-size non-recursive baseline, compare them"),
    "build": (build, "build a dataset (official on-disk layout)"),
    "train": (train, "train a model from a TOML recipe"),
    "eval": (eval_cmd, "evaluate a checkpoint on a dataset split"),
    "solve": (solve, "solve one puzzle, showing the answer after every supervision step"),
    "import-official": (import_official, "convert an official TRM/HRM checkpoint into a recursa checkpoint"),
    "bench": (bench, "measure speed targets (dataset builders at the papers' sizes)"),
}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recursa", description="Tiny recursive reasoning models (TRM): "
                                "build puzzle datasets, train, evaluate and solve, on CPU or GPU.")
    p.add_argument("--version", action="version", version=f"recursa {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args._run(args) or 0
    except RecursaError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
