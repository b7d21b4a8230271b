"""Task registry: one module per puzzle family.

A family's module owns everything puzzle-specific: its builder and ``recursa build`` options
(``BUILD``, a :class:`~recursa.tasks.base.BuildCommand`), and its token-space task ``TASK`` (parse,
check, render, the solver's input, the evaluation-time scorer, see
:class:`~recursa.tasks.base.Task`; None for a family that builds another family's puzzles, as
Sudoku-Extreme builds 9x9 Sudoku). Adding a family = that module + its line in ``FAMILIES`` + its
tests.
"""

from __future__ import annotations

from ..errors import RecursaError
from . import arc, maze, sorting, sudoku, sudoku_extreme
from .arc import ArcTask, build_arc
from .base import BuildCommand, Task, TaskBase
from .maze import MazeTask, build_maze
from .sorting import SortingTask, build_sorting
from .sudoku import SudokuTask, build_sudoku
from .sudoku_extreme import build_sudoku_extreme

#: The registry: one line per family, in `recursa build` help order.
FAMILIES = (sudoku, sudoku_extreme, maze, arc, sorting)

TASKS: dict[str, type] = {m.TASK.name: m.TASK for m in FAMILIES if m.TASK is not None}
BUILDERS = {m.BUILD.name: m.BUILD.builder for m in FAMILIES}
#: `recursa build NAME` subcommands; each module declares its own options.
BUILD_COMMANDS: dict[str, BuildCommand] = {m.BUILD.name: m.BUILD for m in FAMILIES}


def load_task(info: dict) -> Task:
    """Rebuild a task from ``{"task": name, "params": {...}}`` (task.json / checkpoint)."""
    name = info.get("task")
    if name not in TASKS:
        raise RecursaError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    try:
        return TASKS[name](**info.get("params", {}))
    except TypeError as e:
        raise RecursaError(f"task {name!r}: bad parameters {info.get('params')}: {e}") from None


__all__ = ["Task", "TaskBase", "TASKS", "BUILDERS", "BUILD_COMMANDS", "FAMILIES", "load_task", "SudokuTask", "MazeTask",
           "ArcTask", "SortingTask", "build_arc", "build_maze", "build_sorting", "build_sudoku", "build_sudoku_extreme"]
