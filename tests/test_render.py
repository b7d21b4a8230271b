"""Seeing the model think: solve --trace, recursa render --html (tested in a real headless
browser) and --png."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from recursa.cli import main
from recursa.inference.checkpoint import load_checkpoint
from recursa.inference.render import changed, html_page, trace

from .conftest import tiny_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run_and_row(tiny_data, tmp_path_factory):
    """A briefly trained 4x4 Sudoku model and a test row whose answer changes between step 1 and
    step 6 (so that moving the slider must change the grid)."""
    from recursa.data.format import load_split
    from recursa.training.trainer import fit
    run = tmp_path_factory.mktemp("render") / "run"
    fit(tiny_config(tiny_data, run, steps=30), progress=False, log=lambda *a: None)
    loaded = load_checkpoint(run)
    test = load_split(tiny_data, "test")
    for i in range(test.num_examples):
        tr = trace(loaded.model, loaded.task, test.inputs[i], 0, 6)
        if tr.steps[0] != tr.steps[-1]:
            return run, i, tr
    pytest.fail("no test puzzle whose answer changes over 6 steps")


def test_changes_are_the_characters_that_differ():
    assert changed(None, "ab\ncd") == [[False, False], [False, False]]
    assert changed("ab\ncd", "ab\nxd") == [[False, False], [True, False]]
    assert changed("ab", "a b\nc") == [[True, False, True], [True]]  # another shape: everything drawn


def test_solve_trace_highlights_the_changed_cells(run_and_row, tiny_data, capsys):
    run, i, tr = run_and_row
    from recursa.data.format import load_split
    from recursa.tasks import SudokuTask
    task = SudokuTask(2, 2)
    text = task.puzzle_text(load_split(tiny_data, "test").inputs[i])
    assert main(["solve", str(run), "--puzzle", text, "--trace", "--steps", "6", "--color", "always",
                 "--allow-multiple"]) in (0,)
    out = capsys.readouterr().out
    heads = re.findall(r"step (\d+): (\d+) changed, halting confidence ([0-9.]+)", out)
    assert [int(h[0]) for h in heads] == [1, 2, 3, 4, 5, 6]
    prev = tr.puzzle
    for (step, n, _), drawing in zip(heads, tr.steps):
        assert int(n) == sum(map(sum, changed(prev, drawing)))
        prev = drawing
    assert out.count("\x1b[7;1m") == sum(int(h[1]) for h in heads)
    assert "(beyond training)" in out  # trained with 3 steps
    assert main(["solve", str(run), "--puzzle", text, "--trace", "--steps", "6", "--color", "never",
                 "--allow-multiple"]) == 0
    assert "\x1b[" not in capsys.readouterr().out


SVG_NS = '"http://www.w3.org/2000/svg"'  # the SVG namespace's name (createElementNS), never fetched

# What would make a page reach the network: a URL with a scheme or a protocol-relative one, an
# external stylesheet, script, frame or image, CSS that loads, or script that requests.
OFFLINE_RULES = {
    "a URL": re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|(?:src|href|action|data)\s*=\s*[\"']?//", re.I),
    "<link>": re.compile(r"<link\b", re.I),
    "@import": re.compile(r"@import\b", re.I),
    "CSS url()": re.compile(r"\burl\s*\(", re.I),
    "an element loading a resource": re.compile(r"<(?:script|img|iframe|embed|object|source|video|audio)\b[^>]*\s(?:src|data)\s*=", re.I),
    "a request from script": re.compile(r"\bfetch\s*\(|XMLHttpRequest|\bimport\s*\(|WebSocket|EventSource|sendBeacon", re.I),
}


def offline_problems(text: str) -> list[str]:
    """The rules a page breaks (empty: it works offline); the SVG namespace name is allowed once per use."""
    text = text.replace(SVG_NS, '""')
    return [name for name, rule in OFFLINE_RULES.items() if rule.search(text)]


@pytest.mark.parametrize("snippet", ['<script src="a.js"></script>', '<img src="//cdn.example/x.png">',
                                     '<link rel="stylesheet" href="s.css">', "<style>@import 'x.css';</style>",
                                     "<style>body{background:url(x.png)}</style>", "<script>fetch('/x')</script>",
                                     "<a href='https://example.org'>x</a>", "<script>import('./m.js')</script>",
                                     '<iframe src="x.html"></iframe>'])
def test_the_offline_check_catches_what_would_reach_the_network(snippet):
    page = "<!doctype html><html><body>" + snippet + "</body></html>"
    assert offline_problems(page), snippet


def test_render_png_and_html_files(run_and_row, tiny_data, tmp_path, capsys):
    run, i, tr = run_and_row
    page, image = tmp_path / "t.html", tmp_path / "t.png"
    assert main(["render", str(run), "--data", str(tiny_data), "--index", str(i), "--steps", "6",
                 "--html", str(page), "--png", str(image)]) == 0
    raw = image.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    assert w > 4 * h  # the puzzle and 6 steps side by side
    text = page.read_text()
    assert offline_problems(text) == []
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S).group(1))
    assert data["steps"] == tr.steps and data["trained"] == 3 and len(data["confidence"]) == 6
    capsys.readouterr()
    for argv, msg in ((["--data", str(tiny_data)], "--html FILE and/or --png FILE"),
                      (["--data", str(tiny_data), "--index", "999", "--png", str(image)], "--index 999"),
                      (["--puzzle", "1234", "--png", str(image)], "")):
        assert main(["render", str(run), *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: install Debian's chromium (.ci/run does) for the browser test")
def test_page_in_a_headless_browser(run_and_row, tmp_path):
    """The page loads in a real browser with no error, and moving the slider changes the grid."""
    _, _, tr = run_and_row
    page = tmp_path / "t.html"
    page.write_text(html_page(tr))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}",
           "--dump-dom", page.as_uri() + "#selftest"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'data-selftest="changed:6"' in r.stdout, r.stdout[-2000:]
    assert "data-errors" not in r.stdout
    console = [x for x in r.stderr.splitlines() if "CONSOLE" in x or "Uncaught" in x]
    assert not console, console
    # the grid after the slider moved is the last step's drawing
    grid = re.search(r'<pre id="grid">(.*?)</pre>', r.stdout, re.S).group(1)
    assert re.sub(r"<[^>]+>", "", grid).replace("&nbsp;", " ") == tr.steps[-1]
