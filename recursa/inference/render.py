"""Seeing the model think: the refinement of one puzzle, step by step, as terminal text with the
changed cells highlighted (``solve --trace``), as one self-contained HTML page with a slider, a
play button and the halting confidence per step (``recursa render --html``), or as one PNG
(``--png``).

Every family draws its answers as text (:meth:`Task.render`); a step's changes are the characters
that differ from the previous step's drawing, so nothing here knows any family. A family may give
``palette`` (character -> CSS colour: ARC's ten colours, the maze's walls and path) for the page and
the image.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .display import save_figure
from .engine import Protocol, think_one


@dataclass
class Trace:
    """A puzzle's drawing and its answer's drawing and halting confidence after every step."""

    title: str
    puzzle: str
    steps: list[str]
    confidence: list[float]
    valid: list[bool] | None
    trained_steps: int
    palette: dict[str, str]


def trace(model, task, inputs: np.ndarray, puzzle_identifier: int = 0, steps: int | None = None,
          title: str = "") -> Trace:
    """Run ``model`` on one puzzle (``inputs``: its tokens) for ``steps`` supervision steps (default:
    as trained) and draw every step."""
    drawings, conf, valid = [], [], []
    has_check = hasattr(task, "check")
    for snap in think_one(model, inputs, Protocol.as_trained(model, steps), puzzle_identifier):
        pred = snap.preds[0].cpu().numpy()
        drawings.append(task.render(pred))
        conf.append(float(torch.sigmoid(snap.q_halt[0])))
        if has_check:
            valid.append(bool(task.check(np.asarray(inputs)[None], pred[None])[0]))
    return Trace(title or task.describe(), task.render(np.asarray(inputs)), drawings, conf,
                 valid if has_check else None, model.halt_max_steps, dict(getattr(task, "palette", {}) or {}))


def changed(prev: str | None, cur: str) -> list[list[bool]]:
    """Per line and character of ``cur``: differs from ``prev`` (the previous step's drawing, or
    the puzzle's for step 1); all True where the drawing's shape changed (an ARC grid of another
    size); all False without ``prev``."""
    lines = cur.split("\n")
    if prev is None:
        return [[False] * len(x) for x in lines]
    old = prev.split("\n")
    if len(old) != len(lines) or any(len(a) != len(b) for a, b in zip(old, lines)):
        return [[ch != " " for ch in x] for x in lines]
    return [[a != b for a, b in zip(o, x)] for o, x in zip(old, lines)]


# ---------------------------------------------------------------------- terminal
def terminal_trace(tr: Trace, color: bool) -> str:
    """The steps one below the other; changed characters in reverse video (``color``) or listed."""
    out = [f"== {tr.title}", "puzzle", tr.puzzle, ""]
    prev = tr.puzzle  # step 1's changes: what it filled in
    for k, (text, conf) in enumerate(zip(tr.steps, tr.confidence)):
        marks = changed(prev, text)
        n = sum(map(sum, marks))
        head = f"step {k + 1}: {n} changed, halting confidence {conf:.3f}"
        if tr.valid is not None:
            head += ", valid" if tr.valid[k] else ", not valid"
        if k + 1 > tr.trained_steps:
            head += " (beyond training)"
        out.append(head)
        if color:
            out.append("\n".join("".join(f"\x1b[7;1m{ch}\x1b[0m" if m else ch for ch, m in zip(line, mk))
                                 for line, mk in zip(text.split("\n"), marks)))
        else:
            out.append(text)
        out.append("")
        prev = text
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------- HTML
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.row { display: flex; gap: 2.5em; align-items: flex-start; flex-wrap: wrap; }
pre { font: 18px/1.25 ui-monospace, monospace; margin: 0.3em 0; }
pre span { display: inline-block; min-width: 0.62em; text-align: center; }
pre span.chg { outline: 2px solid #e6550d; background: #fdd0a2; }
#controls { margin: 1em 0; display: flex; gap: 1em; align-items: center; }
#step { width: 22em; }
#info { font-variant-numeric: tabular-nums; }
svg rect.now { stroke: #e6550d; stroke-width: 2; }
.note { color: #666; font-size: 0.9em; }
</style></head>
<body>
<h2>__TITLE__</h2>
<div class="row">
 <div><div>puzzle</div><pre id="puzzle"></pre></div>
 <div><div id="label">answer</div><pre id="grid"></pre></div>
 <div><div>halting confidence per step</div><svg id="conf" width="320" height="130"></svg></div>
</div>
<div id="controls">
 <button id="play" type="button">play</button>
 <input id="step" type="range" min="1" max="1" value="1" aria-label="supervision step">
 <span id="info"></span>
</div>
<p class="note">Each supervision step runs the model's recursion once more on its own previous answer.
Outlined cells changed at that step. Steps beyond the trained depth (dashed line) are the model thinking longer
than it was trained to.</p>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
window.addEventListener("error", function (e) {
  document.body.dataset.errors = (document.body.dataset.errors || "") + e.message + ";";
});
const D = JSON.parse(document.getElementById("data").textContent);
const grid = document.getElementById("grid"), slider = document.getElementById("step");
const info = document.getElementById("info"), label = document.getElementById("label");
const svg = document.getElementById("conf"), play = document.getElementById("play");
function draw(el, text, prev) {
  el.textContent = "";
  const lines = text.split("\\n"), old = prev === null ? null : prev.split("\\n");
  const same = old !== null && old.length === lines.length && old.every((l, i) => l.length === lines[i].length);
  lines.forEach(function (line, i) {
    for (let j = 0; j < line.length; j++) {
      const s = document.createElement("span"), ch = line[j];
      s.textContent = ch;
      if (D.palette[ch]) { s.style.background = D.palette[ch]; s.style.color = D.palette[ch]; }
      if (old !== null && (same ? old[i][j] !== ch : ch !== " ")) s.className = "chg";
      el.appendChild(s);
    }
    if (i < lines.length - 1) el.appendChild(document.createTextNode("\\n"));
  });
}
function bars(k) {
  const n = D.steps.length, w = 300 / n, ns = "http://www.w3.org/2000/svg";
  svg.textContent = "";
  D.confidence.forEach(function (c, i) {
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", 10 + i * w); r.setAttribute("width", Math.max(w - 2, 1));
    r.setAttribute("y", 110 - 100 * c); r.setAttribute("height", 100 * c + 0.5);
    r.setAttribute("fill", c >= 0.5 ? "#31a354" : "#9ecae1");
    if (i === k - 1) r.setAttribute("class", "now");
    svg.appendChild(r);
  });
  const half = document.createElementNS(ns, "line");
  half.setAttribute("x1", 10); half.setAttribute("x2", 310); half.setAttribute("y1", 60); half.setAttribute("y2", 60);
  half.setAttribute("stroke", "#999"); half.setAttribute("stroke-dasharray", "3 3");
  svg.appendChild(half);
  if (D.trained < n) {
    const t = document.createElementNS(ns, "line"), x = 10 + D.trained * w - 1;
    t.setAttribute("x1", x); t.setAttribute("x2", x); t.setAttribute("y1", 5); t.setAttribute("y2", 115);
    t.setAttribute("stroke", "#e6550d"); t.setAttribute("stroke-dasharray", "4 3");
    svg.appendChild(t);
  }
}
function show(k) {
  draw(grid, D.steps[k - 1], k > 1 ? D.steps[k - 2] : D.puzzle);
  let changed = grid.querySelectorAll("span.chg").length;
  label.textContent = "answer after step " + k + (k > D.trained ? " (beyond training)" : "");
  info.textContent = "step " + k + " / " + D.steps.length + " \u00b7 halting confidence " +
    D.confidence[k - 1].toFixed(3) + " \u00b7 " + changed + " changed" +
    (D.valid ? (D.valid[k - 1] ? " \u00b7 valid" : " \u00b7 not valid") : "");
  bars(k);
}
let timer = null;
play.addEventListener("click", function () {
  if (timer !== null) { clearInterval(timer); timer = null; play.textContent = "play"; return; }
  if (+slider.value >= D.steps.length) slider.value = 1;
  play.textContent = "pause";
  show(+slider.value);
  timer = setInterval(function () {
    if (+slider.value >= D.steps.length) { clearInterval(timer); timer = null; play.textContent = "play"; return; }
    slider.value = +slider.value + 1; show(+slider.value);
  }, 700);
});
slider.addEventListener("input", function () { show(+slider.value); });
draw(document.getElementById("puzzle"), D.puzzle, null);
slider.max = D.steps.length;
show(1);
if (location.hash === "#selftest") {
  const first = grid.textContent;
  slider.value = D.steps.length;
  slider.dispatchEvent(new Event("input"));
  document.body.dataset.selftest = (grid.textContent !== first ? "changed" : "unchanged") + ":" + D.steps.length;
}
</script>
</body></html>
"""


def html_page(tr: Trace) -> str:
    """One self-contained page (no network, no external script) stepping through ``tr``."""
    data = {"puzzle": tr.puzzle, "steps": tr.steps, "confidence": [round(c, 4) for c in tr.confidence],
            "valid": tr.valid, "trained": tr.trained_steps, "palette": tr.palette}
    blob = json.dumps(data).replace("</", "<\\/")
    return _PAGE.replace("__TITLE__", html.escape(f"recursa: {tr.title}")).replace("__DATA__", blob)


# ---------------------------------------------------------------------- PNG
def png(tr: Trace, path: Path, per_row: int = 8) -> None:
    """The puzzle and every step as one image (changed cells outlined), written atomically."""
    import matplotlib  # late: matplotlib takes ~0.3 s to import; only figures need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # late: matplotlib takes ~0.3 s to import; only figures need it
    from matplotlib.patches import Rectangle  # late: matplotlib takes ~0.3 s to import; only figures need it

    panels = [("puzzle", tr.puzzle, None)]
    prev = tr.puzzle
    for k, text in enumerate(tr.steps):
        panels.append((f"step {k + 1}  conf {tr.confidence[k]:.2f}", text, changed(prev, text)))
        prev = text
    cols = min(per_row, len(panels))
    rows = -(-len(panels) // cols)
    height = max(len(t.split("\n")) for _, t, _ in panels)
    width = max(max(len(x) for x in t.split("\n")) for _, t, _ in panels)
    scale = 0.13  # inches per character cell (square cells)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * (width * scale + 0.3), rows * (height * scale + 0.5)),
                             dpi=120, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, text, marks) in zip(axes.flat, panels):
        lines = text.split("\n")
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_aspect("equal")
        for i, line in enumerate(lines):
            for j, ch in enumerate(line):
                colour = tr.palette.get(ch)
                if colour:
                    ax.add_patch(Rectangle((j, i), 1, 1, color=colour))
                elif ch != " ":
                    ax.text(j + 0.5, i + 0.5, ch, ha="center", va="center", fontsize=7, family="monospace")
                if marks is not None and marks[i][j]:
                    ax.add_patch(Rectangle((j + 0.05, i + 0.05), 0.9, 0.9, fill=False, edgecolor="#e6550d", lw=1.2))
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
