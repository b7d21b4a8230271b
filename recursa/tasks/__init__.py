"""Task registry: one module per puzzle family.

A family's module owns everything puzzle-specific: its builder and ``recursa build`` options
(``BUILD``, a :class:`~recursa.tasks.base.BuildCommand`), and its token-space task ``TASK`` (parse,
check, render, the solver's input, the evaluation-time scorer, see
:class:`~recursa.tasks.base.Task`; None for a family that builds another family's puzzles, as
Sudoku-Extreme builds 9x9 Sudoku). Adding a family = that module + its line in ``FAMILIES`` + its
tests.
"""

from __future__ import annotations

from pathlib import Path

from ..data.format import read_task_json
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



def read_task_info(root: str | Path) -> dict:
    """The ``task.json`` of a recursa-built dataset ({} for a dataset built elsewhere), checked: a
    known task whose parameters build it (every error names the file)."""
    info = read_task_json(root)
    if not info:
        return info
    path = Path(root) / "task.json"
    try:
        load_task(info)
    except RecursaError as e:
        raise RecursaError(f"{path}: {e}") from None
    except (ValueError, IndexError, OverflowError, MemoryError) as e:  # e.g. a float where an int belongs
        raise RecursaError(f"{path}: task {info['task']!r}: bad parameters {info.get('params')}: {e}") from None
    return info


__all__ = ["Task", "TaskBase", "TASKS", "BUILDERS", "BUILD_COMMANDS", "FAMILIES", "load_task", "read_task_info", "SudokuTask", "MazeTask",
           "ArcTask", "SortingTask", "build_arc", "build_maze", "build_sorting", "build_sudoku", "build_sudoku_extreme"]
