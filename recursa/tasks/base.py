"""What the trainer, evaluator and CLI need from a puzzle family, in token space.

A task is a small object built from its parameters (stored in the dataset's ``task.json`` and in
every checkpoint), so a checkpoint knows how to parse, check and draw its puzzles.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Task(Protocol):
    name: str  # registry key, e.g. "sudoku"
    vocab_size: int
    seq_len: int

    def params(self) -> dict:
        """Parameters that rebuild this task with ``TASKS[name](**params)``."""

    def describe(self) -> str:
        """Human name, e.g. "6x6 Sudoku (2x3 boxes)"."""

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        """User text -> input tokens (seq_len,), or a RecursaError naming the position."""

    def check(self, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        """(B, L) input tokens, (B, L) predicted tokens -> (B,) bool: the answer obeys the rules."""

    def render(self, tokens: np.ndarray) -> str:
        """Draw input or answer tokens as text."""
