"""Command-line interface: ``recursa <command> ...`` (also ``python -m recursa``).

Each subcommand lives in its own module with ``add_arguments(parser)`` and ``run(args)``; this
module only dispatches and turns problems into one ``error:`` line on stderr:

- input problems (:class:`RecursaError`, bad command-line arguments, operating-system errors such
  as a full disk, a read-only directory or a missing permission, running out of memory): exit 2;
- anything unexpected (a bug): a one-line ``error: internal error ...`` and exit 1; ``recursa
  --debug COMMAND ...`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from .. import __version__
from ..errors import RecursaError
from ..perf import tune_allocator
from . import adapt, bench, build, calibrate, demo, import_official, render, solve, sweep, train
from . import eval as eval_cmd

COMMANDS = {
    "demo": (demo, "build a task, train TRM and a same-size non-recursive baseline, compare them"),
    "build": (build, "build a dataset (official on-disk layout)"),
    "train": (train, "train a model from a TOML recipe"),
    "eval": (eval_cmd, "evaluate a checkpoint on a dataset split"),
    "calibrate": (calibrate, "choose a checkpoint's --adaptive halting signal and threshold on held-out puzzles"),
    "solve": (solve, "solve one puzzle, showing the answer after every supervision step"),
    "sweep": (sweep, "train a grid of runs differing only in recursion depth (or any setting) and plot accuracy"),
    "adapt": (adapt, "fit puzzle embeddings for ARC tasks not seen in training, on their demonstrations"),
    "render": (render, "draw a puzzle's refinement step by step: one HTML page (slider, play) or one PNG"),
    "import-official": (import_official, "convert an official TRM/HRM checkpoint into a recursa checkpoint"),
    "bench": (bench, "measure speed targets (dataset builders at the papers' sizes)"),
}


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one ``error:`` line (plus where to find the usage), exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def make_parser() -> argparse.ArgumentParser:
    p = Parser(prog="recursa", description="Tiny recursive reasoning models (TRM): "
               "build puzzle datasets, train, evaluate and solve, on CPU or GPU.")
    p.add_argument("--version", action="version", version=f"recursa {__version__}")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an unexpected error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return p


def _os_error(e: OSError) -> str:
    where = e.filename if e.filename is not None else None
    what = e.strerror or str(e)
    if where is not None and getattr(e, "filename2", None):
        return f"{where} -> {e.filename2}: {what}"
    return f"{where}: {what}" if where is not None else what


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = make_parser().parse_args(argv)
    args._argv = argv  # the command as given, for the records that name it (task.json, results/)
    tune_allocator()  # keep freed activation buffers for reuse (RECURSA_MALLOC=system: don't)
    try:
        return args._run(args) or 0
    except RecursaError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # full disk, read-only or missing directory, permissions...
        if args.debug:
            raise
        print(f"error: {_os_error(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print("error: out of memory (try a smaller model, batch or dataset)", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: say so in one line; --debug shows where
        if args.debug:
            raise
        msg = " ".join(str(e).split())
        if isinstance(e, RuntimeError) and ("can't allocate memory" in msg or "out of memory" in msg.lower()):
            print(f"error: out of memory ({msg[:200]})", file=sys.stderr)
            return 2
        frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        where = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
        print(f"error: internal error: {type(e).__name__}: {msg[:300]}{where} (a bug in recursa; "
              "run `recursa --debug ...` for the traceback)", file=sys.stderr)
        return 1
