"""recursa sweep: a grid of runs differing only in the varied settings, evaluated alike, resumable."""

import json

import pytest

from recursa import config
from recursa.cli import main

from .conftest import tiny_config


def test_sweep_trains_the_grid_evaluates_plots_and_resumes(tiny_data, tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(config.to_toml(tiny_config(tiny_data, tmp_path / "unused", steps=6)))
    out = tmp_path / "sw"
    argv = ["sweep", str(recipe), "--vary", "model.L_cycles=1,2", "--vary", "model.H_cycles=1,2", "--out", str(out),
            "--eval-limit", "20"]
    assert main(argv) == 0
    res = json.loads((out / "sweep.json").read_text())
    runs = res["runs"]
    assert [(r["L_cycles"], r["H_cycles"]) for r in runs] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for r in runs:  # the same recipe, data and budget; only the varied settings differ
        assert r["train_steps"] == 6 and r["n"] == 20 and r["eval_steps"] == 3
        assert r["calls_per_puzzle"] == 3 * r["H_cycles"] * (r["L_cycles"] + 1)
        saved = config.load(out / r["run"] / "config.toml")
        assert (saved.model.L_cycles, saved.model.H_cycles) == (r["L_cycles"], r["H_cycles"])
    assert len({r["params"] for r in runs}) == 1  # depth changes compute, not size
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    # resumable: a finished sweep trains nothing again; a row removed is redone from its run
    capsys.readouterr()
    res["runs"] = runs[:3]
    (out / "sweep.json").write_text(json.dumps(res))
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "3 already done" in printed and "[4/4]" in printed and "[1/4]" not in printed
    assert len(json.loads((out / "sweep.json").read_text())["runs"]) == 4


@pytest.mark.parametrize("vary,msg", [("model.L_cycles", "expected SECTION.KEY=V1,V2"),
                                      ("L_cycles=1,2", "expected SECTION.KEY=V1,V2"),
                                      ("model.nope=1,2", "nope")])
def test_sweep_errors_before_any_training(tiny_data, tmp_path, capsys, vary, msg):
    recipe = tmp_path / "r.toml"
    recipe.write_text(config.to_toml(tiny_config(tiny_data, tmp_path / "unused", steps=2)))
    assert main(["sweep", str(recipe), "--vary", vary, "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert not (tmp_path / "sw").exists()


def test_sweep_variants_are_named_bundles_of_settings_with_accuracy_time_curves(tiny_data, tmp_path):
    """--variant NAME=K=V;K=V (a method is several settings at once) x --vary x seeds; each row
    carries its held-out accuracy during training against training time (evaluations not counted)."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(config.to_toml(tiny_config(tiny_data, tmp_path / "unused", steps=8, eval_interval=4)))
    out = tmp_path / "sw"
    assert main(["sweep", str(recipe), "--variant", "plain=", "--variant",
                 "cgar=train.step_weights=0.7;train.depth_curriculum=[[0.0,1,1],[0.5,2,2]]",
                 "--vary", "model.L_cycles=1,2", "--seeds", "0,1", "--out", str(out), "--eval-limit", "10"]) == 0
    res = json.loads((out / "sweep.json").read_text())
    runs = res["runs"]
    assert [(r["variant"], r["L_cycles"], r["seed"]) for r in runs] == [
        (v, L, s) for v in ("plain", "cgar") for L in (1, 2) for s in (0, 1)]
    assert runs[0]["run"] == "variant=plain,L_cycles=1,seed=0"
    for r in runs:
        saved = config.load(out / r["run"] / "config.toml")
        assert saved.train.step_weights == (0.7 if r["variant"] == "cgar" else 1.0)
        assert (saved.train.depth_curriculum != []) == (r["variant"] == "cgar") and saved.model.L_cycles == r["L_cycles"]
        assert len(r["curve"]) == 2 and r["curve"][0][0] <= r["curve"][1][0] == r["train_s"]  # steps 4 and 8
        assert r["train_s"] <= r["wall_s"]
    assert res["variants"]["cgar"] == ["train.step_weights=0.7", "train.depth_curriculum=[[0.0,1,1],[0.5,2,2]]"]
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("variant,msg", [("=model.L_cycles=1", "expected NAME="), ("a b=", "expected NAME="),
                                         ("x=L_cycles=1", "is not SECTION.KEY=VALUE"),
                                         ("x=model.nope=1", "run variant=x,seed=0: "),
                                         ("x=model.L_cycles=0", "run variant=x,seed=0: ")])
def test_sweep_variant_errors_before_any_training(tiny_data, tmp_path, capsys, variant, msg):
    recipe = tmp_path / "r.toml"
    recipe.write_text(config.to_toml(tiny_config(tiny_data, tmp_path / "unused", steps=2)))
    assert main(["sweep", str(recipe), "--variant", variant, "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert not (tmp_path / "sw").exists()


def test_study_report_tables_and_plot_from_sweeps(tiny_data, tmp_path):
    """scripts/study_report.py (docs/study.md): one table row per run and a mean per method, the
    longer runs with the time they first reached the target, a plot; a task not run yet says so."""
    import importlib.util

    from .conftest import REPO
    recipe = tmp_path / "r.toml"
    recipe.write_text(config.to_toml(tiny_config(tiny_data, tmp_path / "unused", steps=6, eval_interval=2)))
    study = tmp_path / "study"
    assert main(["sweep", str(recipe), "--variant", "trm=", "--variant", "cgar=train.step_weights=0.7",
                 "--seeds", "0,1", "--eval-steps", "4", "--out", str(study / "sudoku9"), "--eval-limit", "10"]) == 0
    assert main(["sweep", str(recipe), "--variant", "cgar=train.step_weights=0.7", "--eval-steps", "4",
                 "--out", str(study / "sudoku9-long"), "--eval-limit", "10"]) == 0
    assert main(["sweep", str(recipe), "--variant", "trm=", "--eval-steps", "4",
                 "--out", str(study / "sudoku9-trm-recipe"), "--eval-limit", "10"]) == 0
    spec = importlib.util.spec_from_file_location("study_report", REPO / "scripts" / "study_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    report.SUDOKU_TARGET = -1.0  # any accuracy reaches it: the first evaluation's time is reported
    md, png = tmp_path / "study.md", tmp_path / "study.png"
    report.main(study, md, png)
    text = md.read_text()
    rows = json.loads((study / "sudoku9" / "sweep.json").read_text())["runs"]
    for r in rows:
        name = {"trm": "TRM", "cgar": "CGAR-style"}[r["variant"]]
        cells = [f"| {name} | {r['seed']} | {r['params']:,} | {r['train_steps']} |",
                 f"{100 * r['exact_by_step'][2]:.1f} | {100 * r['exact_by_step'][3]:.1f} |"]  # trained 3, and 4 steps
        line = next(x for x in text.splitlines() if x.startswith(cells[0]))
        assert cells[1] in line, line
    assert text.count("**TRM, mean**") == 1 and text.count("**CGAR-style, mean**") == 1
    long_row = json.loads((study / "sudoku9-long" / "sweep.json").read_text())["runs"][0]
    first = long_row["curve"][0][0] / 60
    assert f"| longer, seed 0 | CGAR-style | 6 |" in text and f"| {first:.1f} min |" in text
    recipe_first = json.loads((study / "sudoku9-trm-recipe" / "sweep.json").read_text())["runs"][0]["curve"][0][0]
    assert (f"TRM's full recipe first reached the target after {recipe_first / 60:.1f} minutes of training; "
            f"half of that is {recipe_first / 120:.1f} minutes.") in text
    assert "## 15x15 mazes" in text and "(not run yet)" in text
    assert png.read_bytes()[:4] == b"\x89PNG"
