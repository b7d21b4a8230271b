"""The validation split (issue 30): every family's builder makes one (``--num-val N``), seeded and
disjoint from train and test, and every choice made during and after training reads it: in-training
evaluation, ``keep_best``, sweeps, halting calibration. The test split is read for the final report."""

import json

import numpy as np
import pytest

from recursa.cli import main
from recursa.data.format import load_split, resolve_eval_split
from recursa.errors import RecursaError
from recursa.tasks import BUILD_COMMANDS, build_arc, build_maze, build_sorting, build_sudoku, build_sudoku_extreme
from recursa.tasks.arc_grid import crop, parse_version
from recursa.tasks.arc_voting import ArcVoting
from recursa.tasks.grid import dihedral
from recursa.tasks.maze import generate_mazes

from .conftest import data_file, tiny_config
from .test_arc import small_arc  # noqa: F401  (fixture)
from .test_maze import _write_csv

quiet = dict(log=lambda *a: None)


def _rows(split) -> set[bytes]:
    return {r.tobytes() for r in np.asarray(split.inputs)}


def _files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _splits(root):
    return {k: load_split(root, k) for k in ("train", "test", "val")}


def _assert_disjoint(root, n_val):
    s = _splits(root)
    assert len(s["val"].inputs) == n_val
    rows = {k: _rows(v) for k, v in s.items()}
    assert len(rows["val"]) == n_val, "validation puzzles repeat"
    assert not rows["val"] & rows["train"], "a validation puzzle is a training puzzle"
    assert not rows["val"] & rows["test"], "a validation puzzle is a test puzzle"
    return s


def test_every_family_builder_has_a_validation_split():
    """A family added later without --num-val fails here."""
    import argparse
    for name, cmd in BUILD_COMMANDS.items():
        p = argparse.ArgumentParser()
        cmd.add_arguments(p)
        assert "--num-val" in p._option_string_actions, f"recursa build {name} has no --num-val"


@pytest.mark.parametrize("build,kw", [
    (build_sudoku, dict(box_rows=2, box_cols=2, num_train=60, num_test=20, num_aug=3)),
    (build_maze, dict(size=10, min_path=12, num_train=30, num_test=10, aug=True)),
    (build_sorting, dict(length=5, max_value=4, num_train=60, num_test=20, num_aug=2)),
], ids=["sudoku", "maze", "sorting"])
def test_generated_val_is_disjoint_seeded_and_leaves_train_and_test_alone(tmp_path, build, kw):
    build(tmp_path / "v", num_val=15, seed=5, **kw, **quiet)
    build(tmp_path / "v2", num_val=15, seed=5, **kw, **quiet)
    build(tmp_path / "plain", seed=5, **kw, **quiet)
    assert _files(tmp_path / "v") == _files(tmp_path / "v2")  # seeded
    s = _assert_disjoint(tmp_path / "v", 15)
    plain = {k: load_split(tmp_path / "plain", k) for k in ("train", "test")}
    for k in ("train", "test"):
        assert np.array_equal(np.asarray(s[k].inputs), np.asarray(plain[k].inputs))
        assert np.array_equal(np.asarray(s[k].labels), np.asarray(plain[k].labels))
    assert json.loads((tmp_path / "v" / "task.json").read_text())["build_args"]["num_val"] == 15


def test_sorting_val_rearranges_no_training_or_test_list(tmp_path):
    """Training groups hold shuffled copies, so a mere reordering of a training list is not held out."""
    build_sorting(tmp_path / "d", length=4, max_value=5, num_train=40, num_test=10, num_aug=3, num_val=20, **quiet)
    s = _splits(tmp_path / "d")
    seen = {np.sort(r).tobytes() for k in ("train", "test") for r in np.asarray(s[k].inputs)}
    assert not {np.sort(r).tobytes() for r in np.asarray(s["val"].inputs)} & seen
    with pytest.raises(RecursaError, match="--num-val 30: found only"):
        build_sorting(tmp_path / "e", length=2, max_value=2, num_train=5, num_test=2, num_val=30, **quiet)


def test_maze_val_from_a_csv_is_carved_out_of_training(tmp_path):
    q, a = generate_mazes(np.random.default_rng(0), 50, 10, 12, 0.05)
    src = _write_csv(tmp_path / "train.csv", np.concatenate([q[:40], q[:3]]), np.concatenate([a[:40], a[:3]]))
    tst = _write_csv(tmp_path / "test.csv", q[40:], a[40:])
    build_maze(tmp_path / "m", source=src, test_source=tst, num_val=8, aug=True, **quiet)
    s = _assert_disjoint(tmp_path / "m", 8)
    train = np.asarray(s["train"].inputs)
    views = {dihedral(v.reshape(10, 10), t).tobytes() for v in np.asarray(s["val"].inputs) for t in range(8)}
    assert not views & {r.tobytes() for r in train}, "a training view is a validation maze"
    # the CSV's 43 rows: 3 repeated, 8 held out (with their repeats): the rest train, 8 views each
    assert len(train) % 8 == 0 and 40 - 8 <= len(train) // 8 <= 43 - 8
    with pytest.raises(RecursaError, match="--num-val 60: .* has only"):
        build_maze(tmp_path / "m2", source=src, test_source=tst, num_val=60, **quiet)


def test_sudoku_extreme_val_is_carved_out_of_training(tmp_path):
    src = data_file("sudoku/puzzles5_forum_hardest_1905_11+.txt")
    build_sudoku_extreme(tmp_path / "x", source=src, test_fraction=0.3, num_val=10, num_aug=1, seed=2, workers=1, **quiet)
    build_sudoku_extreme(tmp_path / "y", source=src, test_fraction=0.3, num_val=10, num_aug=1, seed=2, workers=1, **quiet)
    assert _files(tmp_path / "x") == _files(tmp_path / "y")
    s = _assert_disjoint(tmp_path / "x", 10)
    base = {p.tobytes() for p in np.asarray(s["val"].inputs)}
    # augmented views join their original in a group; no group starts from a validation puzzle
    starts = np.asarray(s["train"].inputs)[np.asarray(s["train"].puzzle_indices)[:-1]]
    assert not {p.tobytes() for p in starts} & base
    assert "ratings" in s["val"].extras and len(s["val"].extras["ratings"]) == 10
    build_sudoku_extreme(tmp_path / "p", source=src, test_fraction=0.3, seed=2, workers=1, **quiet)
    assert np.array_equal(np.asarray(load_split(tmp_path / "p", "test").inputs), np.asarray(s["test"].inputs))


def test_arc_val_holds_out_training_tasks_like_test_tasks(tmp_path, small_arc):  # noqa: F811
    build_arc(tmp_path / "d", files=str(small_arc), subsets=["training", "evaluation"], num_aug=3, num_val=2,
              seed=4, **quiet)
    root = tmp_path / "d"
    s = _splits(root)
    val_truth = json.loads((root / "val_puzzles.json").read_text())
    test_truth = json.loads((root / "test_puzzles.json").read_text())
    train_ids = set(json.loads(small_arc.with_name("x_training_challenges.json").read_text()))
    assert len(val_truth) == 2 and set(val_truth) <= train_ids and not set(val_truth) & set(test_truth)
    names = json.loads((root / "identifiers.json").read_text())
    task_of = lambda split: {parse_version(names[i])[0] for i in np.asarray(split.puzzle_identifiers)}  # noqa: E731
    assert task_of(s["val"]) == set(val_truth) and task_of(s["test"]) == set(test_truth)
    # a held-out task trains on its demonstrations only: its test outputs are in no training row
    ch = json.loads(small_arc.with_name("x_training_challenges.json").read_text())
    labels = {crop(r[None])[0].tobytes() for r in np.asarray(s["train"].labels)}
    for tid, t in val_truth.items():
        for pair in t["test"]:
            out = np.array(pair["output"], np.uint8)
            assert out.tobytes() not in labels or any(np.array_equal(out, np.array(d["output"])) for d in ch[tid]["train"])
    # scored by its own truth: the true outputs through every view score 1
    v = ArcVoting.for_split(root, s["val"])
    lab = np.asarray(s["val"].labels)
    v.update(np.arange(len(lab)), lab, np.zeros(len(lab)))
    res = v.result()
    assert res["tasks"] == 2 and res["pass@1"] == 1.0
    with pytest.raises(RecursaError, match="--num-val 7: only"):
        build_arc(tmp_path / "e", files=str(small_arc), subsets=["training", "evaluation"], num_aug=0, num_val=7, **quiet)


def test_resolve_eval_split(tmp_path, tiny_data):
    assert resolve_eval_split(tiny_data) == "test"
    assert resolve_eval_split(tiny_data, "test") == "test"
    with pytest.raises(RecursaError, match="no validation split"):
        resolve_eval_split(tiny_data, "val")
    build_sudoku(tmp_path / "v", box_rows=2, box_cols=2, num_train=20, num_test=5, num_val=5, **quiet)
    assert resolve_eval_split(tmp_path / "v") == "val" and resolve_eval_split(tmp_path / "v", "test") == "test"


@pytest.fixture(scope="module")
def val_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("vdata") / "sudoku4"
    build_sudoku(out, box_rows=2, box_cols=2, num_train=200, num_test=24, num_val=16, num_aug=3, **quiet)
    return out


def _metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_chooses_on_val_and_reports_on_test(tmp_path, val_data):
    from recursa import config as config_mod
    from recursa.training.trainer import fit
    cfg = tiny_config(val_data, tmp_path / "run", steps=20, eval_interval=10, keep_best="exact_accuracy")
    cfg = config_mod.replace(cfg, eval={"limit": 0})
    logs = []
    fit(cfg, progress=False, log=logs.append)
    rows = _metrics(tmp_path / "run")
    evals = [r for r in rows if "eval/exact_accuracy" in r]
    tests = [r for r in rows if "test/exact_accuracy" in r]
    assert [r["step"] for r in evals] == [10, 20] and all(r["eval/split"] == "val" and r["eval/n"] == 16 for r in evals)
    assert len(tests) == 1 and tests[0]["test/n"] == 24 and tests[0]["step"] == 20
    from recursa.training.run_dir import read_best
    best = read_best(tmp_path / "run", "exact_accuracy", "val")  # kept by the validation evaluations
    assert best["split"] == "val" and read_best(tmp_path / "run", "exact_accuracy", "test") is None
    assert best["value"] == max(r["eval/exact_accuracy"] for r in evals)
    assert best["step"] == next(r["step"] for r in evals if r["eval/exact_accuracy"] == best["value"])
    assert any(m.startswith("final: exact accuracy") and "on 24 test puzzles" in m for m in logs)
    assert not any("has no val/ split" in m for m in logs)


def test_training_without_val_says_it_evaluates_on_test(tmp_path, tiny_data):
    from recursa.training.trainer import fit
    logs = []
    fit(tiny_config(tiny_data, tmp_path / "run", steps=10, eval_interval=5), progress=False, log=logs.append)
    assert any("has no val/ split" in m for m in logs)
    evals = [r for r in _metrics(tmp_path / "run") if "eval/exact_accuracy" in r]
    assert evals and all(r["eval/split"] == "test" for r in evals)
    with pytest.raises(RecursaError, match="no validation split"):
        fit(tiny_config(tiny_data, tmp_path / "run2", steps=2, eval_interval=0, eval_split="val"), progress=False,
            log=lambda *a: None)


def test_sweep_reads_the_validation_split(tmp_path, val_data):
    recipe = tmp_path / "r.toml"
    cfg = tiny_config(val_data, tmp_path / "unused", steps=4)
    from recursa import config as config_mod
    recipe.write_text(config_mod.to_toml(cfg))
    assert main(["sweep", str(recipe), "--vary", "model.L_cycles=1", "--out", str(tmp_path / "sw")]) == 0
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())["runs"]
    assert [r["split"] for r in rows] == ["val"] and rows[0]["n"] == 16


def test_a_dataset_with_a_validation_split_is_replaced_with_overwrite(tmp_path, small_arc):  # noqa: F811
    for argv in (["sudoku", "--box", "2x2", "--num-train", "20", "--num-test", "5", "--num-val", "5"],
                 ["arc", "--files", str(small_arc), "--subsets", "training,evaluation", "--num-aug", "0",
                  "--num-val", "1"]):
        out = tmp_path / argv[0]
        assert main(["build", *argv, "--out", str(out)]) == 0
        assert main(["build", *argv, "--seed", "1", "--out", str(out), "--overwrite"]) == 0
        assert json.loads((out / "task.json").read_text())["seed"] == 1 and (out / "val").is_dir()
