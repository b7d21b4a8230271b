"""Task registry: one module per puzzle family.

A family's module owns everything puzzle-specific: its builder and ``recursa build`` options
(``BUILD``), its token-space task (parse, check, render, the solver's input, the evaluation-time
scorer, see :class:`~recursa.tasks.base.Task`). Adding a family = that module + its lines in
``TASKS`` / ``BUILDERS`` / ``BUILD_COMMANDS`` + its tests.
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

TASKS = {"sudoku": SudokuTask, "maze": MazeTask, "arc": ArcTask, "sorting": SortingTask}
BUILDERS = {"sudoku": build_sudoku, "sudoku-extreme": build_sudoku_extreme, "maze": build_maze, "arc": build_arc,
            "sorting": build_sorting}
#: `recursa build NAME` subcommands, in help order; each module declares its own options.
BUILD_COMMANDS: dict[str, BuildCommand] = {m.BUILD.name: m.BUILD for m in (sudoku, sudoku_extreme, maze, arc, sorting)}


def load_task(info: dict) -> Task:
    """Rebuild a task from ``{"task": name, "params": {...}}`` (task.json / checkpoint)."""
    name = info.get("task")
    if name not in TASKS:
        raise RecursaError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    try:
        return TASKS[name](**info.get("params", {}))
    except TypeError as e:
        raise RecursaError(f"task {name!r}: bad parameters {info.get('params')}: {e}") from None


__all__ = ["Task", "TaskBase", "TASKS", "BUILDERS", "BUILD_COMMANDS", "load_task", "SudokuTask", "MazeTask", "ArcTask", "SortingTask"]
