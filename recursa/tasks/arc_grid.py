"""ARC grids in token space, shared by the builder and task (:mod:`.arc`) and the voting scorer
(:mod:`.arc_voting`): the 30x30 canvas's tokens (PAD 0, EOS 1, colours 0..9 -> 2..11), a puzzle
version's name (``task|||t{t}|||{perm}``), undoing a version's augmentation, and cropping a
predicted canvas back to a grid."""

from __future__ import annotations

import re

import numpy as np

from ..errors import RecursaError
from .grid import DIHEDRAL_INVERSE, dihedral

SIZE = 30
PAD, EOS = 0, 1
VOCAB = 12
SEP = "|||"

_HRM_NAME = re.compile(r"^(.+)_t([0-7])_(\d{10})$")


def parse_version(name: str) -> tuple[str, int, np.ndarray]:
    """``task|||t{t}|||{perm}`` (TRM and recursa), ``task_t{t}_{perm}`` (HRM's builder) or a plain
    task id -> (task id, t, colour map)."""
    parts = name.split(SEP)
    if len(parts) == 1:
        m = _HRM_NAME.match(name)
        if m:
            return m.group(1), int(m.group(2)), np.array([int(c) for c in m.group(3)], dtype=np.uint8)
        return name, 0, np.arange(10, dtype=np.uint8)
    if len(parts) != 3 or not parts[1].startswith("t") or len(parts[2]) != 10:
        raise RecursaError(f"puzzle identifier {name!r}: expected TASK{SEP}tT{SEP}PERMUTATION")
    return parts[0], int(parts[1][1:]), np.array([int(c) for c in parts[2]], dtype=np.uint8)


def invert_grid(grid: np.ndarray, t: int, mapping: np.ndarray) -> np.ndarray:
    """Undo a version's augmentation: inverse transform, then inverse colour map."""
    return np.argsort(mapping).astype(np.uint8)[dihedral(grid, DIHEDRAL_INVERSE[t])]


def crop(tokens: np.ndarray) -> list[np.ndarray]:
    """Predicted canvases (n, 900) -> grids: the largest-area top-left rectangle whose tokens are
    all colours, minus 2 (the official crop), vectorised over rows."""
    g = np.asarray(tokens).reshape(-1, SIZE, SIZE)
    colour = (g >= 2) & (g <= 11)
    run = np.where(colour.all(2), SIZE, (~colour).argmax(2))  # colour run from column 0, per row
    width = np.minimum.accumulate(run, axis=1)
    area = width * np.arange(1, SIZE + 1)
    best = area.argmax(1)
    out = []
    for i in range(len(g)):
        r, c = best[i] + 1, width[i, best[i]]
        out.append((g[i, :r, :c] - 2).astype(np.uint8) if area[i, best[i]] > 0 else np.zeros((0, 0), np.uint8))
    return out
