"""Task registry: one module per puzzle family."""

from __future__ import annotations

from ..errors import RecursaError
from .arc import ArcTask, build_arc
from .base import Task
from .maze import MazeTask, build_maze
from .sorting import SortingTask, build_sorting
from .sudoku import SudokuTask, build_sudoku
from .sudoku_extreme import build_sudoku_extreme

TASKS = {"sudoku": SudokuTask, "maze": MazeTask, "arc": ArcTask, "sorting": SortingTask}
BUILDERS = {"sudoku": build_sudoku, "sudoku-extreme": build_sudoku_extreme, "maze": build_maze, "arc": build_arc,
            "sorting": build_sorting}


def load_task(info: dict) -> Task:
    """Rebuild a task from ``{"task": name, "params": {...}}`` (task.json / checkpoint)."""
    name = info.get("task")
    if name not in TASKS:
        raise RecursaError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    try:
        return TASKS[name](**info.get("params", {}))
    except TypeError as e:
        raise RecursaError(f"task {name!r}: bad parameters {info.get('params')}: {e}") from None


__all__ = ["Task", "TASKS", "BUILDERS", "load_task", "SudokuTask", "MazeTask", "ArcTask", "SortingTask"]
