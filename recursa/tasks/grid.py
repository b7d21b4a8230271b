"""Symmetries of square grids, shared by every family that lives on one (mazes, Sudoku, ARC).

The 8 dihedral transforms, numbered as the official code numbers them, their inverses, and the
same on flattened rows of grid tokens.
"""

from __future__ import annotations

import numpy as np


def dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """The official 8 dihedral transforms on the last two axes: 0 identity, 1 rot90, 2 rot180,
    3 rot270, 4 flip left-right, 5 flip up-down, 6 transpose, 7 anti-transpose."""
    g = np.asarray(grid)
    if t == 0:
        return g
    if t in (1, 2, 3):
        return np.rot90(g, k=t, axes=(-2, -1))
    if t == 4:
        return g[..., :, ::-1]
    if t == 5:
        return g[..., ::-1, :]
    if t == 6:
        return np.swapaxes(g, -1, -2)
    if t == 7:
        return np.rot90(g, k=1, axes=(-2, -1))[..., :, ::-1]
    raise ValueError(f"dihedral transform {t} not in 0..7")


DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral_rows(tokens: np.ndarray, side: int, t: int) -> np.ndarray:
    """Rows of side*side grid tokens (B, side*side) -> the same rows after dihedral transform ``t``."""
    tokens = np.asarray(tokens)
    return np.ascontiguousarray(dihedral(tokens.reshape(-1, side, side), t)).reshape(len(tokens), -1)
