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
