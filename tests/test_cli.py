"""The command line end to end on a tiny config, and its bad-input errors (one line, exit 2,
no partial files)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from recursa.cli import main

from .conftest import REPO, cli_error

TINY_TOML = """version = 1
[model]
hidden_size = 32
H_cycles = 2
L_cycles = 1
halt_max_steps = 3
mlp_t = true
pos_encodings = "none"
puzzle_emb_len = 1
[train]
data = "{data}"
out = "{out}"
batch_size = 16
steps = 12
lr = 1e-3
lr_warmup_steps = 3
log_interval = 4
device = "cpu"
[eval]
limit = 10
"""


_err = cli_error


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """build -> train through the CLI, once for the module."""
    root = tmp_path_factory.mktemp("cli")
    data, out = root / "data", root / "run"
    assert main(["build", "sudoku", "--box", "2x2", "--num-train", "100", "--num-test", "20", "--num-aug", "1",
                 "--out", str(data)]) == 0
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_TOML.format(data=data.as_posix(), out=out.as_posix()))
    assert main(["train", str(cfg), "--quiet"]) == 0
    return root, data, out, cfg


def test_build_train_eval_solve(run, capsys):
    root, data, out, cfg = run
    assert (out / "latest").is_file() and (out / "metrics.jsonl").is_file() and (out / "config.toml").is_file()
    js = root / "eval.json"
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(data), "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert set(res) >= {"token_accuracy", "exact_accuracy", "valid_rate", "mean_steps", "exact_by_step", "n"}
    assert res["n"] == 20 and len(res["exact_by_step"]) == 3 and 0 <= res["token_accuracy"] <= 1
    assert "exact by step" in capsys.readouterr().out
    # Think longer than trained.
    assert main(["eval", str(out), "--data", str(data), "--json", str(js), "--steps", "5"]) == 0
    assert len(json.loads(js.read_text())["exact_by_step"]) == 5
    assert main(["solve", str(out), "--puzzle", "1...  ..2.  .3..  ...4"]) == 0
    text = capsys.readouterr().out
    assert "step 1" in text and "step 3" in text and "final answer after 3 steps" in text
    f = root / "puzzles.txt"
    test_inputs = np.load(data / "test" / "all__inputs.npy")[:2]  # tokens: 1 = blank, 2.. = digits
    lines = ["".join("." if t == 1 else str(t - 1) for t in row) for row in test_inputs]
    f.write_text("# two puzzles\n" + "\n".join(lines) + "\n")
    assert main(["solve", str(out), "--file", str(f)]) == 0
    assert "answers valid" in capsys.readouterr().out


def test_resume_continues_the_run(run, tmp_path):
    root, data, out, cfg = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    assert main(["train", str(cfg), "--quiet", "--resume", "--set", f'train.out="{copy.as_posix()}"',
                 "--set", "train.steps=16"]) == 0
    assert (copy / "latest").read_text().strip().endswith("step_0000016")


def test_python_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "recursa", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "demo" in r.stdout and "solve" in r.stdout


@pytest.mark.parametrize("puzzle,msg", [
    ("1...  ..2.  .3..  ..4", "--puzzle: 15 cells, expected 16"),
    ("1...  ..2.  .3..  ..x4", "position 15 (row 4, column 3): 'x' is not a digit 1-4"),
    ("1..1  ..2.  .3..  ...4", "digit 1 appears twice in row 1"),
    ("12..  ....  ...3  ...4", "has no solution"),
    ("....  ....  ....  ....", "more than one solution"),
])
def test_malformed_puzzles(run, capsys, puzzle, msg):
    _, _, out, _ = run
    assert msg in _err(capsys, ["solve", str(out), "--puzzle", puzzle])


def test_malformed_puzzle_in_a_file_names_the_line(run, capsys, tmp_path):
    _, _, out, _ = run
    f = tmp_path / "p.txt"
    f.write_text("1...  ..2.  .3..  ...4\n\n1.1.  ..2.  .3..  ...4\n")
    assert f"{f} line 3: digit 1 appears twice in row 1" in _err(capsys, ["solve", str(out), "--file", str(f)])


@pytest.mark.parametrize("override,msg", [
    ("train.lr=fast", "train.lr: expected a number, got 'fast'"),
    ("train.speed=3", "unknown config key 'train.speed'"),
    ("model.mlp_t=3", "model.mlp_t: expected true/false"),
    ("model.pos_encodings=\"alibi\"", "model.pos_encodings: 'alibi' is not one of"),
    ("foo.bar=1", "unknown config section 'foo'"),
    ("train.batch_size=0", "train.batch_size=0 must be > 0"),
])
def test_bad_config_values(run, capsys, tmp_path, override, msg):
    _, _, _, cfg = run
    out = tmp_path / "newrun"
    err = _err(capsys, ["train", str(cfg), "--set", f'train.out="{out.as_posix()}"', "--set", override])
    assert msg in err and str(cfg) in err
    assert not out.exists()


def test_unknown_key_in_the_toml_file(capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nhiden_size = 3\n")
    assert "unknown config key 'model.hiden_size'" in _err(capsys, ["train", str(cfg)])
    cfg.write_text("[model\n")
    assert "invalid TOML" in _err(capsys, ["train", str(cfg)])
    assert "config file not found" in _err(capsys, ["train", str(tmp_path / "none.toml")])


def test_missing_or_inconsistent_dataset(run, capsys, tmp_path):
    _, data, out, cfg = run
    err = _err(capsys, ["train", str(cfg), "--set", f'train.data="{(tmp_path / "nodata").as_posix()}"',
                        "--set", f'train.out="{(tmp_path / "r").as_posix()}"'])
    assert "dataset directory not found" in err and not (tmp_path / "r").exists()
    assert "dataset directory not found" in _err(capsys, ["eval", str(out), "--data", str(tmp_path / "nodata")])
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    np.save(bad / "test" / "all__labels.npy", np.zeros((3, 16), np.int32))
    assert "20 inputs but 3 labels" in _err(capsys, ["eval", str(out), "--data", str(bad)])
    other = tmp_path / "six"
    assert main(["build", "sudoku", "--box", "2x3", "--num-train", "5", "--num-test", "5", "--out", str(other)]) == 0
    assert "do not match the checkpoint" in _err(capsys, ["eval", str(out), "--data", str(other)])


def test_checkpoint_shape_mismatch_names_the_keys(run, capsys, tmp_path):
    _, data, out, _ = run
    ckpt = tmp_path / "ckpt"
    shutil.copytree(out / (out / "latest").read_text().strip(), ckpt)
    meta = json.loads((ckpt / "config.json").read_text())
    meta["config"]["model"]["hidden_size"] = 64
    (ckpt / "config.json").write_text(json.dumps(meta))
    err = _err(capsys, ["eval", str(ckpt), "--data", str(data)])
    assert "inner.lm_head.weight: checkpoint (6, 32) vs model (6, 64)" in err
    assert "not a checkpoint" in _err(capsys, ["eval", str(tmp_path), "--data", str(data)])


def test_bad_build_arguments_leave_nothing(capsys, tmp_path):
    out = tmp_path / "d"
    assert "--box '2by3'" in _err(capsys, ["build", "sudoku", "--box", "2by3", "--out", str(out)])
    assert "N = rows*cols must be in 2..9" in _err(capsys, ["build", "sudoku", "--box", "4x4", "--out", str(out)])
    assert "--givens 99" in _err(capsys, ["build", "sudoku", "--box", "2x2", "--givens", "99", "--out", str(out)])
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("recipe", ["sudoku6_hrm_cpu", "sudoku6_trm_att_cpu"])
def test_hrm_and_trm_attention_recipes_train_200_steps_and_evaluate(tiny_data, tmp_path, recipe):
    """The issue-3 acceptance run, shrunk to seconds: the recipe file (HRM with the continue loss;
    TRM attention + RoPE + 16-position prefix) trains 200 CPU steps with the loss going down, and
    `recursa eval` reads the checkpoint."""
    out = tmp_path / "run"
    sets = ["model.hidden_size=32", "model.halt_max_steps=4", "train.batch_size=16", "train.log_interval=50",
            "train.checkpoint_interval=0", "train.eval_interval=-1", "train.num_threads=1", "train.device='cpu'",
            f"train.data='{tiny_data}'", f"train.out='{out}'"]
    args = ["train", str(REPO / "configs" / f"{recipe}.toml")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "train/loss" in r]
    assert rows[-1]["step"] == 200 and rows[-1]["train/loss"] < 0.8 * rows[0]["train/loss"]
    if "hrm" in recipe:
        assert all(r["train/q_continue_loss"] > 0 for r in rows)  # the Q-learning continue path ran
    report = tmp_path / "eval.json"
    assert main(["eval", str(out), "--data", str(tiny_data), "--json", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["n"] == 40 and len(r["exact_by_step"]) == 4 and 0.3 < r["token_accuracy"] <= 1.0
