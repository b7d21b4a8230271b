"""Text display of the model refining its answer: the puzzle and the answer after each supervision
step, side by side (``recursa solve`` and the demo)."""

from __future__ import annotations

import numpy as np


def side_by_side(blocks: list[str], titles: list[str], gap: int = 4) -> str:
    """Lay out multi-line text blocks horizontally under their titles."""
    lines = [b.split("\n") for b in blocks]
    width = max(max(len(x) for x in ls + [t]) for ls, t in zip(lines, titles))
    height = max(len(ls) for ls in lines)
    rows = ["".join(t.ljust(width + gap) for t in titles).rstrip()]
    for i in range(height):
        rows.append("".join((ls[i] if i < len(ls) else "").ljust(width + gap) for ls in lines).rstrip())
    return "\n".join(rows)


def show_refinement(task, inputs: np.ndarray, step_preds: list[np.ndarray], q_halt: list[float],
                    per_row: int = 4) -> tuple[str, bool]:
    """Text showing the answer after each step; returns (text, final answer valid)."""
    ref = task.reference(inputs) if hasattr(task, "reference") else None
    blocks, titles = [task.render(inputs)], ["puzzle"]
    prev = None
    # Once the answer stops changing, one grid stands for all the remaining steps.
    last_change = max([k for k in range(1, len(step_preds)) if (step_preds[k] != step_preds[k - 1]).any()], default=0)
    for k, pred in enumerate(step_preds):
        if k > last_change + 1:
            break
        notes = []
        if prev is not None:
            notes.append(f"{int((pred != prev).sum())} changed")
        if ref is not None:
            notes.append(f"{int((pred != ref).sum())} wrong")
        label = f"step {k + 1}" if k <= last_change or k == len(step_preds) - 1 else f"steps {k + 1}-{len(step_preds)}"
        titles.append(f"{label}: " + ", ".join(notes) if notes else label)
        blocks.append(task.render(pred))
        prev = pred
    out = []
    for i in range(0, len(blocks), per_row):
        out.append(side_by_side(blocks[i:i + per_row], titles[i:i + per_row]))
    valid = bool(task.check(inputs[None], step_preds[-1][None])[0])
    halt = next((k + 1 for k, q in enumerate(q_halt) if q > 0), None)
    out.append(f"final answer after {len(step_preds)} steps: {'VALID' if valid else 'NOT valid'}"
               + (f" (the halting head said 'done' at step {halt})" if halt else ""))
    return "\n\n".join(out), valid
