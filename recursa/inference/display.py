"""Text display of the model refining its answer: the puzzle and the answer after each supervision
step, side by side (``recursa solve`` and the demo)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..storage import atomic_write_bytes


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


def save_figure(fig, path) -> None:
    """Write a matplotlib figure as PNG atomically (no half-written image on a crash or a full
    disk) and close it."""

    import matplotlib.pyplot as plt  # late: matplotlib takes ~0.3 s to import; only figures need it


    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(path, results: list[dict], trained_steps: int | None = None) -> None:
    """The recursion curves of one or more evaluations (``evaluate(..., curve=True)`` results, each
    with an optional "checkpoint" label) as one PNG, written atomically: exact accuracy and valid
    rate after every supervision step; when the model's halting head first says "done"; exact
    accuracy against network applications per puzzle."""

    import matplotlib  # late: matplotlib takes ~0.3 s to import; only figures need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # late: matplotlib takes ~0.3 s to import; only figures need it

    path = Path(path)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3), dpi=110)
    for i, res in enumerate(results):
        label = Path(str(res.get("checkpoint", ""))).name or f"run {i + 1}"
        colour = f"C{i % 10}"
        exact = 100 * np.asarray(res["exact_by_step"])
        steps = np.arange(1, len(exact) + 1)
        axes[0].plot(steps, exact, "o-", ms=3, color=colour, label=f"{label}: exact")
        if res.get("valid_by_step"):
            axes[0].plot(steps, 100 * np.asarray(res["valid_by_step"]), "s--", ms=3, color=colour, alpha=0.6,
                         label=f"{label}: valid")
        hist = np.asarray(res["halt_histogram"])
        width = 0.8 / len(results)
        axes[1].bar(np.arange(1, len(hist) + 1) + i * width - 0.4 + width / 2, hist, width=width, color=colour,
                    label=label)
        per = np.asarray(res["calls_by_step"]) / max(res["n"], 1)
        axes[2].plot(per, exact, "o-", ms=3, color=colour, label=label)
    axes[0].set(xlabel="supervision steps (recursion depth)", ylabel="held-out puzzles (%)", ylim=(0, 100),
                title="accuracy after each step")
    if trained_steps:
        axes[0].axvline(trained_steps, color="grey", linestyle=":", label=f"trained depth ({trained_steps})")
    axes[1].set(xlabel="step at which the halting head first says 'done' (last bar: never)", ylabel="puzzles",
                title="halting")
    axes[2].set(xlabel="network applications per puzzle", ylabel="exact (%)", ylim=(0, 100),
                title="accuracy against compute")
    pr = results[0].get("protocol", {})
    if pr.get("trajectories", 1) > 1:
        axes[2].set_title(f"accuracy against compute ({pr['trajectories']} trajectories)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
