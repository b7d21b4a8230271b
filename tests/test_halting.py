"""The calibrated halting threshold (recursa/evaluation/halting.py): the validation split it is
chosen on, the choice itself, that one fixed run predicts every adaptive run, and the threshold's
way from the end of training through the checkpoint to `eval --adaptive` and `solve --adaptive`."""

import json

import numpy as np
import pytest

from recursa import config
from recursa.cli import main
from recursa.data.format import load_split
from recursa.evaluation import halting
from recursa.evaluation.engine import Protocol
from recursa.evaluation.evaluate import evaluate
from recursa.inference import load_checkpoint
from recursa.tasks import build_sudoku
from recursa.tasks.maze import build_maze
from recursa.training.trainer import fit

from .conftest import cli_error, tiny_config


def _rows(split):
    return {row.tobytes() for row in np.asarray(split.inputs)}


def test_sudoku_and_maze_validation_splits_are_disjoint_and_leave_train_and_test_as_they_were(tmp_path):
    kw = dict(box_rows=2, box_cols=2, num_train=60, num_test=30, num_aug=2, seed=4, log=lambda *a: None)
    build_sudoku(tmp_path / "plain", **kw)
    build_sudoku(tmp_path / "val", num_val=40, **kw)
    mkw = dict(size=7, min_path=6, num_train=40, num_test=20, aug=True, seed=2, log=lambda *a: None)
    build_maze(tmp_path / "mplain", **mkw)
    build_maze(tmp_path / "mval", num_val=25, **mkw)
    for plain, val, n in (("plain", "val", 40), ("mplain", "mval", 25)):
        for name in ("train", "test"):
            for f in ("inputs", "labels"):
                assert np.array_equal(getattr(load_split(tmp_path / plain, name), f),
                                      getattr(load_split(tmp_path / val, name), f)), (plain, name, f)
        v = load_split(tmp_path / val, "val")
        assert v.num_examples == n and len(_rows(v)) == n
        assert not _rows(v) & _rows(load_split(tmp_path / val, "train"))
        assert not _rows(v) & _rows(load_split(tmp_path / val, "test"))
        assert not (tmp_path / plain / "val").exists()
    assert json.loads((tmp_path / "val" / "task.json").read_text())["build_args"]["num_val"] == 40
    with pytest.raises(Exception, match="num-val"):
        build_maze(tmp_path / "csv", source=tmp_path / "x.csv", num_val=3, log=lambda *a: None)


def _outcomes(exact, conf, valid=None):
    return {"exact": np.asarray(exact, bool), "confidence": np.asarray(conf, float),
            "valid": None if valid is None else np.asarray(valid, bool)}


def test_the_threshold_is_the_lowest_that_with_every_higher_one_keeps_the_accuracy():
    # 4 puzzles x 3 steps. Puzzle 0 is sure too early (0.6 at step 1, wrong then, right at 3).
    exact = [[0, 0, 1], [1, 1, 1], [0, 1, 1], [0, 0, 0]]
    conf = [[0.6, 0.7, 0.99], [0.9, 0.95, 0.99], [0.2, 0.96, 0.99], [0.1, 0.2, 0.3]]
    o = _outcomes(exact, conf)
    assert halting.adaptive_outcome(o, 0.5) == {"exact": 0.5, "mean_steps": 1.75}  # stops 1, 1, 2, 3
    rec = halting.choose_threshold(o, tolerance=0.0)
    # down to 0.75 puzzle 0 runs to step 3 (0.7 < 0.75) and every answer is the fixed one; 0.7
    # stops it at step 2, wrong: the lowest threshold that holds is 0.75
    assert rec["threshold"] == 0.75 and rec["fixed_exact"] == 0.75 and rec["adaptive_exact"] == 0.75
    assert rec["adaptive_mean_steps"] == pytest.approx((3 + 1 + 2 + 3) / 4)
    for t in halting.GRID:
        if t >= rec["threshold"]:
            assert halting.adaptive_outcome(o, t)["exact"] >= rec["fixed_exact"]
    # a loss of one puzzle in four is allowed with tolerance 0.25: the official 0.5 would then do
    assert halting.choose_threshold(o, tolerance=0.25)["threshold"] <= 0.5
    # the valid rate is kept too where there is a checker
    valid = [[1, 0, 1], [1, 1, 1], [0, 1, 1], [0, 0, 0]]
    assert halting.choose_threshold(_outcomes(exact, conf, valid), 0.0)["threshold"] == 0.75
    # nothing holds when even the most cautious threshold stops a puzzle at a wrong answer
    never = halting.choose_threshold(_outcomes([[0, 1]], [[0.99999, 0.99999]]), 0.0)
    assert never["threshold"] is None and "adaptive_exact" not in never


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    """A tiny Sudoku run on a dataset with a validation split: calibrated at the end of training."""
    root = tmp_path_factory.mktemp("halting")
    data = root / "data"
    build_sudoku(data, box_rows=2, box_cols=2, num_train=300, num_test=40, num_aug=3, num_val=48, seed=0,
                 log=lambda *a: None)
    cfg = tiny_config(data, root / "run", steps=60)
    path = fit(cfg, progress=False, log=lambda *a: None)
    return data, root / "run", path


def test_training_stores_the_threshold_chosen_on_the_validation_split(calibrated_run, tmp_path):
    data, run, path = calibrated_run
    loaded = load_checkpoint(run)
    rec = loaded.meta["halting"]
    assert rec["split"] == "val" and rec["n"] == 48 and rec["max_steps"] == 3 and rec["step"] == 60
    again = halting.calibrate(loaded.model, load_split(data, "val"), loaded.task, step=60)
    assert again == rec  # the same computation on the saved weights
    # no val/ split, or train.calibrate_halt = false: nothing is stored, --adaptive keeps 0.5
    plain = tmp_path / "plain"
    build_sudoku(plain, box_rows=2, box_cols=2, num_train=300, num_test=40, num_aug=3, seed=0, log=lambda *a: None)
    for d, extra in ((plain, {}), (data, {"calibrate_halt": False})):
        out = tmp_path / f"run{len(extra)}"
        fit(tiny_config(d, out, steps=10, **extra), progress=False, log=lambda *a: None)
        assert "halting" not in load_checkpoint(out).meta
        assert halting.resolve_threshold(load_checkpoint(out).meta, None)[0] == 0.5


def test_one_fixed_run_gives_what_every_adaptive_run_gives(calibrated_run):
    data, run, _ = calibrated_run
    loaded = load_checkpoint(run)
    val = load_split(data, "val")
    o = halting.step_outcomes(loaded.model, val, loaded.task)
    for t in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        res = evaluate(loaded.model, val, loaded.task, protocol=Protocol(max_steps=3, adaptive=True, halt_threshold=t))
        want = halting.adaptive_outcome(o, t)
        assert res["exact_accuracy"] == pytest.approx(want["exact"]) and res["mean_steps"] == pytest.approx(want["mean_steps"])
        assert res["valid_rate"] == pytest.approx(want["valid"])


def test_eval_and_solve_use_the_calibrated_threshold_and_say_so(calibrated_run, tmp_path, capsys):
    data, run, path = calibrated_run
    rec = load_checkpoint(run).meta["halting"]
    out = tmp_path / "a.json"
    assert main(["eval", str(run), "--data", str(data), "--adaptive", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    pr = json.loads(out.read_text())["protocol"]
    if rec["threshold"] is None:
        assert not pr["adaptive"] and "no threshold kept the accuracy" in text
    else:
        assert pr["halt_threshold"] == rec["threshold"] and "calibrated on 48 val puzzles" in text
    assert main(["eval", str(run), "--data", str(data), "--adaptive", "--halt-threshold", "0.8", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["protocol"]["halt_threshold"] == 0.8 and "0.8 (--halt-threshold)" in capsys.readouterr().out
    puzzle = load_checkpoint(run).task.puzzle_text(np.asarray(load_split(data, "test").inputs[0]))
    assert main(["solve", str(run), "--puzzle", puzzle, "--adaptive"]) == 0
    assert "halting threshold" in capsys.readouterr().out
    # a broken record is a one-line error naming the file
    meta = json.loads((path / "config.json").read_text())
    meta["halting"]["threshold"] = 7
    bad = tmp_path / "bad"
    import shutil
    shutil.copytree(path, bad)
    (bad / "config.json").write_text(json.dumps(meta))
    err = cli_error(capsys, ["eval", str(bad), "--data", str(data), "--adaptive"])
    assert "config.json" in err and "halting.threshold" in err
