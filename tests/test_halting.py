"""The calibrated halting threshold (recursa/evaluation/halting.py): the validation split it is
chosen on, the choice itself, that one fixed run predicts every adaptive run, and the threshold's
way from the end of training through the checkpoint to `eval --adaptive` and `solve --adaptive`;
the halting signals (the q head, the answer's probability: recursa/models/base.py:answer_log_odds)."""

import json

import numpy as np
import pytest
import torch

from recursa import config
from recursa.cli import main
from recursa.data.format import load_split
from recursa.evaluation import halting
from recursa.inference.engine import Protocol
from recursa.evaluation.evaluate import evaluate
from recursa.inference.checkpoint import load_checkpoint
from recursa.models.base import ANSWER_LOG_ODDS_CAP, answer_log_odds
from recursa.tasks import build_sudoku
from recursa.tasks.maze import build_maze
from recursa.training.trainer import fit

from .conftest import cli_error, tiny_config


def _rows(split):
    return {row.tobytes() for row in np.asarray(split.inputs)}


def _outcomes(exact, conf, valid=None):
    return {"exact": np.asarray(exact, bool), "confidence": np.asarray(conf, float),
            "valid": None if valid is None else np.asarray(valid, bool)}


def _reference_log_odds(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    lse = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    log_p = (x.max(-1) - lse).sum(-1)
    return log_p - np.log(-np.expm1(log_p))


def test_the_answer_log_odds_keep_their_precision_where_the_answer_is_near_certain():
    g = torch.Generator().manual_seed(0)
    # unsure, fairly sure, near certain (margins ~20: 1 - P ~ 1e-8 per cell, lost in float32 softmax)
    for scale, shift in ((1.0, 0.0), (3.0, 4.0), (1.0, 20.0)):
        logits = torch.randn(16, 36, 7, generator=g) * scale
        logits[..., 2] += shift
        want = _reference_log_odds(logits.numpy())
        got = answer_log_odds(logits).double().numpy()
        # float32: each cell's -log1p(rest) has relative error ~1e-7, their sum keeps it; log(1 - P) from
        # expm1 of that sum likewise; 1e-5 relative leaves 100x for the 36-term sums
        assert np.allclose(got, np.clip(want, -ANSWER_LOG_ODDS_CAP, ANSWER_LOG_ODDS_CAP), rtol=1e-5, atol=1e-5), scale
    naive = torch.log_softmax(logits, -1).max(-1).values.sum(-1)  # what float32 log_softmax gives
    assert (naive == 0).any()  # ... log P = 0: P = 1, infinite log-odds, every threshold met
    # a tie for the top class: that cell's top probability is 1/2; one certain cell and one tied: P = 1/2
    tie = torch.tensor([[[5.0, 5.0, -1e4], [1e4, 0.0, 0.0]]])
    assert answer_log_odds(tie).item() == pytest.approx(0.0, abs=1e-6)
    # a certain answer is capped, not infinite (the training loss's BCE stays finite)
    assert answer_log_odds(torch.tensor([[[1e4, 0.0]]])).item() == ANSWER_LOG_ODDS_CAP


def test_a_model_that_halts_on_its_answer_returns_its_log_odds_and_trains(tmp_path):
    data = tmp_path / "data"
    build_sudoku(data, box_rows=2, box_cols=2, num_train=60, num_test=20, num_aug=1, seed=0, log=lambda *a: None)
    cfg = tiny_config(data, tmp_path / "run", steps=6)
    cfg = config.from_dict({**config.to_dict(cfg), "model": {**config.to_dict(cfg)["model"], "halt_signal": "answer"}})
    fit(cfg, progress=False, log=lambda *a: None)
    loaded = load_checkpoint(tmp_path / "run")
    inner = loaded.model.inner
    batch = {k: torch.as_tensor(np.array(v[:5])) for k, v in
             (("inputs", load_split(data, "test").inputs), ("labels", load_split(data, "test").labels))}
    batch["puzzle_identifiers"] = torch.zeros(5, dtype=torch.int32)
    with torch.no_grad():
        _, logits, q_halt, _ = inner(inner.initial_state(5, "cpu"), batch)
    assert torch.equal(q_halt, answer_log_odds(logits))
    # in training it is a function of detached logits: no gradient into the model
    loaded.model.train()
    _, logits, q_halt, _ = inner(inner.initial_state(5, "cpu"), batch)
    assert logits.requires_grad and not q_halt.requires_grad
    loaded.model.eval()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
    # its q head never learned to halt: asking for it is an error, not a silent meaningless halting
    test = load_split(data, "test")
    with pytest.raises(Exception, match="never learned to halt"):
        evaluate(loaded.model, test, loaded.task, protocol=Protocol(max_steps=3, adaptive=True, halt_signal="head"))
    with pytest.raises(config.RecursaError, match="q_continue"):
        config.ModelConfig(halt_signal="answer", q_continue=True)
    with pytest.raises(config.RecursaError, match="halt_detach does nothing"):
        config.ModelConfig(halt_signal="answer", halt_detach=True)


def test_the_signal_that_saves_the_most_steps_wins():
    rec = lambda t, steps: {"threshold": t, "adaptive_mean_steps": steps}  # noqa: E731
    assert halting.choose_signal({"head": rec(0.5, 7.9), "answer": rec(0.97, 2.4)}) == "answer"
    assert halting.choose_signal({"head": rec(0.5, 2.4), "answer": rec(0.97, 2.4)}) == "head"  # a tie: the first
    assert halting.choose_signal({"head": rec(None, 0), "answer": rec(0.9, 8.0)}) == "answer"
    assert halting.choose_signal({"head": rec(None, 0), "answer": rec(None, 0)}) == "head"


def test_the_threshold_is_the_most_cautious_near_the_fewest_steps_that_keeps_the_accuracy():
    # 4 puzzles x 3 steps. Puzzle 0 is sure too early (0.6 at step 1, wrong then, right at 3).
    exact = [[0, 0, 1], [1, 1, 1], [0, 1, 1], [0, 0, 0]]
    conf = [[0.6, 0.7, 0.99], [0.9, 0.95, 0.99], [0.2, 0.96, 0.99], [0.1, 0.2, 0.3]]
    o = _outcomes(exact, conf)
    assert halting.adaptive_outcome(o, 0.5) == {"exact": 0.5, "mean_steps": 1.75}  # stops 1, 1, 2, 3
    rec = halting.choose_threshold(o, tolerance=0.0, slack=0.0)
    # down to 0.75 puzzle 0 runs to step 3 (0.7 < 0.75) and every answer is the fixed one; 0.7
    # stops it at step 2, wrong: the lowest threshold that holds is 0.75 (2.25 steps); 0.9 stops
    # every puzzle where 0.75 does: the most cautious of the fewest steps is chosen
    assert rec["lowest_threshold"] == 0.75 and rec["threshold"] == 0.9
    assert rec["fixed_exact"] == 0.75 and rec["adaptive_exact"] == 0.75
    assert rec["adaptive_mean_steps"] == pytest.approx((3 + 1 + 2 + 3) / 4)
    # with the 5% slack the same (0.95 would take puzzle 1 to step 2: 2.5 steps); with 12%, 0.95
    assert halting.choose_threshold(o, tolerance=0.0)["threshold"] == 0.9
    assert halting.choose_threshold(o, tolerance=0.0, slack=0.12)["threshold"] == 0.95  # 2.5 <= 2.25 * 1.12
    for t in halting.GRID:
        if t >= rec["lowest_threshold"]:
            assert halting.adaptive_outcome(o, t)["exact"] >= rec["fixed_exact"]
    # a loss of one puzzle in four is allowed with tolerance 0.25: the official 0.5 would then do
    assert halting.choose_threshold(o, tolerance=0.25)["lowest_threshold"] <= 0.5
    # the valid rate is kept too where there is a checker
    valid = [[1, 0, 1], [1, 1, 1], [0, 1, 1], [0, 0, 0]]
    assert halting.choose_threshold(_outcomes(exact, conf, valid), 0.0)["lowest_threshold"] == 0.75
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
    # both signals measured; the stored one is the candidate that saves the most steps
    assert set(rec["candidates"]) == {"head", "answer"} and rec["signal"] == halting.choose_signal(
        {k: {"adaptive_mean_steps": float("inf"), **v} for k, v in rec["candidates"].items()})
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
    for signal in ("head", "answer"):
        o = halting.step_outcomes(loaded.model, val, loaded.task, signal=signal)
        for t in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
            res = evaluate(loaded.model, val, loaded.task,
                           protocol=Protocol(max_steps=3, adaptive=True, halt_threshold=t, halt_signal=signal))
            want = halting.adaptive_outcome(o, t)
            assert res["exact_accuracy"] == pytest.approx(want["exact"]), (signal, t)
            assert res["mean_steps"] == pytest.approx(want["mean_steps"]) and res["valid_rate"] == pytest.approx(want["valid"])
    # the answer signal is the answer's log-odds, step by step
    head, answer = (halting.step_outcomes(loaded.model, val, loaded.task, signal=s) for s in ("head", "answer"))
    assert np.array_equal(head["exact"], answer["exact"]) and not np.array_equal(head["confidence"], answer["confidence"])


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
        assert pr["halt_signal"] == rec["signal"]
    # the other signal than the calibrated one: the official 0.5, and eval says why
    other = {"head": "answer", "answer": "head"}[rec["signal"]]
    assert main(["eval", str(run), "--data", str(data), "--adaptive", "--halt-signal", other, "--json", str(out)]) == 0
    pr = json.loads(out.read_text())["protocol"]
    assert pr["halt_threshold"] == 0.5 and pr["halt_signal"] == other and "not for this signal" in capsys.readouterr().out
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


def test_calibrate_stores_a_choice_that_eval_then_uses(calibrated_run, tmp_path, capsys):
    """`recursa calibrate` on a checkpoint trained without a validation split: the record is the
    one training would have stored, eval --adaptive uses it; --dry-run stores nothing."""
    import shutil
    data, run, path = calibrated_run
    ckpt = tmp_path / "ckpt"
    shutil.copytree(path, ckpt)
    meta = json.loads((ckpt / "config.json").read_text())
    rec = meta.pop("halting")
    (ckpt / "config.json").write_text(json.dumps(meta))
    assert main(["calibrate", str(ckpt), "--data", str(data), "--dry-run"]) == 0
    assert "halting" not in json.loads((ckpt / "config.json").read_text()) and "threshold" in capsys.readouterr().out
    assert main(["calibrate", str(ckpt), "--data", str(data)]) == 0
    assert json.loads((ckpt / "config.json").read_text())["halting"] == rec  # the same computation, weights untouched
    assert "stored in" in capsys.readouterr().out
    out = tmp_path / "e.json"
    assert main(["eval", str(ckpt), "--data", str(data), "--adaptive", "--json", str(out)]) == 0
    assert "calibrated on 48 val puzzles" in capsys.readouterr().out
    # a split that is not there, a dataset of another shape: one line naming it
    assert "val2" in cli_error(capsys, ["calibrate", str(ckpt), "--data", str(data), "--split", "val2"])
    other = tmp_path / "maze"
    build_maze(other, size=7, min_path=6, num_train=20, num_test=10, num_val=10, seed=0, log=lambda *a: None)
    assert "do not match" in cli_error(capsys, ["calibrate", str(ckpt), "--data", str(other)])
    assert "--tolerance" in cli_error(capsys, ["calibrate", str(ckpt), "--data", str(data), "--tolerance", "2"])
