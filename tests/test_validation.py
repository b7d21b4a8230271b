"""Hostile inputs (QA report: L1, L3-L6, M3, M4): every one is a single `error:` line naming the
file, key or position, exit code 2, and nothing left behind."""

import json
import shutil

import numpy as np
import pytest
import torch

from recursa.cli import main
from recursa.data.format import check_task_matches, load_split
from recursa.errors import RecursaError
from recursa.tasks import MazeTask, SortingTask, SudokuTask, build_sorting, build_sudoku, read_task_info

from .conftest import cli_error

TOML = """version = 1
[model]
hidden_size = 32
H_cycles = 1
L_cycles = 1
halt_max_steps = 2
mlp_t = true
pos_encodings = "none"
puzzle_emb_len = 1
[train]
data = "{data}"
out = "{out}"
batch_size = 16
steps = 2
lr = 1e-3
lr_warmup_steps = 1
log_interval = 1
eval_interval = -1
num_threads = 1
device = "cpu"
[eval]
limit = 8
"""


_err = cli_error


def _argparse_err(capsys, argv) -> str:
    """argparse refuses the value itself: SystemExit(2) with one `error:` line."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """A 2-step checkpoint on the tiny 4x4 Sudoku dataset, and its recipe."""
    root = tmp_path_factory.mktemp("val")
    cfg = root / "tiny.toml"
    cfg.write_text(TOML.format(data=tiny_data.as_posix(), out=(root / "run").as_posix()))
    assert main(["train", str(cfg), "--quiet"]) == 0
    run = root / "run"
    return cfg, run, run / (run / "latest").read_text().strip()


# ---------------------------------------------------------------------- config (M4, L3, L4, H2)
@pytest.mark.parametrize("override,msg", [
    ("train.lr=nan", "train.lr: expected a finite number, got nan"),
    ("train.max_time_s=inf", "train.max_time_s: expected a finite number, got inf"),
    ("train.weight_decay=-inf", "train.weight_decay: expected a finite number, got -inf"),
    ("model.expansion=nan", "model.expansion: expected a finite number, got nan"),
    ("train.lr=1" + "0" * 400, "train.lr: expected a finite number, got an integer of 401 digits"),
    ("train.epochs=1" + "0" * 30, "train.epochs: an integer of 31 digits is out of range (64-bit integers only)"),
    ("model.rope_theta=0", "model.rope_theta=0.0 must be > 0"),
    ("model.rms_norm_eps=-1e-5", "model.rms_norm_eps=-1e-05 must be > 0"),
    ("model.hidden_size=1099511627776", "model.hidden_size=1099511627776 is too large (the limit is 65536)"),
    ("model.L_cycles=1000000", "model.L_cycles=1000000 is too large (the limit is 10000)"),
    ("model.halt_max_steps=1000000", "model.halt_max_steps=1000000 is too large (the limit is 100000)"),
    ("model.num_heads=64", "model.num_heads = 64 has no effect with model.mlp_t = true"),  # no attention here
    ("model.expansion=1e9", "model.expansion=1000000000.0 is too large (the limit is 64.0)"),
    ("train.num_threads=-1", "train.num_threads=-1 must be >= 0"),
    ("train.checkpoint_interval=-5", "train.checkpoint_interval=-5 must be >= 0"),
    ("train.eval_interval=-2", "train.eval_interval=-2 must be >= -1"),
    ("train.seed=-1", "train.seed=-1 must be >= 0"),
    ("train.max_nonfinite_skips=0", "train.max_nonfinite_skips=0 must be > 0"),
    ("eval.batch_size=0", "eval.batch_size=0 must be > 0"),
    ("eval.batch_size=-1", "eval.batch_size=-1 must be > 0"),
    ("eval.limit=-1", "eval.limit=-1 must be >= 0"),
])
def test_bad_config_numbers(trained, capsys, tmp_path, override, msg):
    cfg, _, _ = trained
    out = tmp_path / "newrun"
    err = _err(capsys, ["train", str(cfg), "--set", f'train.out="{out.as_posix()}"', "--set", override])
    assert msg in err and str(cfg) in err
    assert not out.exists()


def test_config_file_that_is_a_directory_binary_or_missing(capsys, tmp_path):
    d = tmp_path / "cfgdir"
    d.mkdir()
    assert f"{d}: config file is a directory" in _err(capsys, ["train", str(d)])
    b = tmp_path / "bin.toml"
    b.write_bytes(b"version = 1\n[train]\nout = \"\xff\"\n")
    assert f"{b}: not UTF-8 text (byte 0xff at offset 27, line 3)" in _err(capsys, ["train", str(b)])
    assert "config file not found" in _err(capsys, ["train", str(tmp_path / "none.toml")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin.toml", "cfgdir"]


# ---------------------------------------------------------------------- build options (L3, M3)
@pytest.mark.parametrize("argv,flag", [
    (["sudoku", "--box", "2x2", "--seed", "-1"], "--seed"),
    (["sudoku", "--box", "2x2", "--num-train", "-5"], "--num-train"),
    (["sudoku", "--box", "2x2", "--num-aug", "-1"], "--num-aug"),
    (["sudoku", "--box", "2x2", "--givens", "-3"], "--givens"),
    (["sudoku", "--box", "2x2", "--num-test", "ten"], "--num-test"),
    (["sorting", "--seed", "-1"], "--seed"),
    (["maze", "--seed", "-2"], "--seed"),
    (["maze", "--num-test", "-1"], "--num-test"),
    (["arc", "--seed", "-1"], "--seed"),
    (["sudoku-extreme", "--source", "x.txt", "--seed", "-1"], "--seed"),
    (["sudoku-extreme", "--source", "x.txt", "--workers", "-1"], "--workers"),
])
def test_negative_seeds_and_counts_are_refused(capsys, tmp_path, argv, flag):
    out = tmp_path / "o"
    err = _argparse_err(capsys, ["build", *argv, "--out", str(out)])
    assert flag in err and "expected a whole number >= 0" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv,msg", [
    # only 288 complete 4x4 grids exist: refused up front
    (["--givens", "16", "--num-train", "289", "--num-test", "1"], "only 288 distinct 4x4 Sudoku (2x2 boxes) grids exist"),
    (["--givens", "16", "--num-train", "200", "--num-test", "100"], "--num-train 200 + --num-test 100 = 300 is too many"),
    # the training views take most grids: the test set cannot be filled; the generator gives up
    (["--givens", "16", "--num-train", "100", "--num-aug", "5", "--num-test", "150"],
     "--num-test 150: found only 36 distinct test puzzles that are not training views"),
    (["--num-train", "50", "--num-test", "0"], "--num-test 0: a dataset needs at least one test puzzle"),
    (["--num-train", "10", "--num-test", "10", "--num-aug", "1000000000000"], "GiB of memory, but this machine has"),
])
def test_impossible_sudoku_builds_fail_fast(capsys, tmp_path, argv, msg):
    out = tmp_path / "o"
    assert msg in _err(capsys, ["build", "sudoku", "--box", "2x2", *argv, "--out", str(out)])
    assert not list(tmp_path.iterdir())


def test_empty_test_split_is_refused_by_every_generator(capsys, tmp_path):
    out = tmp_path / "o"
    assert "--num-test 0: a dataset needs at least one test list" in _err(
        capsys, ["build", "sorting", "--num-train", "5", "--num-test", "0", "--out", str(out)])
    assert "--num-test 0: a dataset needs at least one test maze" in _err(
        capsys, ["build", "maze", "--size", "8", "--min-path", "4", "--num-train", "5", "--num-test", "0",
                 "--out", str(out)])
    assert "GiB of memory" in _err(capsys, ["build", "sorting", "--num-train", "10", "--num-aug", str(10**12),
                                            "--out", str(out)])
    assert "--num-aug 99999999: a task has at most 2,903,039 distinct augmented versions" in _err(
        capsys, ["build", "arc", "--files", str(tmp_path / "none"), "--num-aug", "99999999", "--out", str(out)])
    assert not list(tmp_path.iterdir())


def test_the_last_of_all_288_grids_is_still_found(tmp_path):
    build_sudoku(tmp_path / "d", box_rows=2, box_cols=2, givens=16, num_train=250, num_test=38, log=lambda *a: None)
    train, test = load_split(tmp_path / "d", "train"), load_split(tmp_path / "d", "test")
    grids = {r.tobytes() for r in np.asarray(train.inputs)} | {r.tobytes() for r in np.asarray(test.inputs)}
    assert len(grids) == 288


# ---------------------------------------------------------------------- puzzle text (L5)
@pytest.mark.parametrize("digit", ["²", "٢", "２", "𝟐"])
def test_only_ascii_digits_are_digits(digit):
    """str.isdigit() is True for all of these, and int() fails on some or reads others."""
    with pytest.raises(RecursaError, match=f"position 16 \\(row 4, column 4\\): '{digit}' is not a digit 1-4"):
        SudokuTask(2, 2).parse("2..1...2....1.." + digit)
    with pytest.raises(RecursaError, match=f"position 3: '{digit}' is not an integer in 1..9"):
        SortingTask(4, 9).parse(f"1 2 {digit} 4")


def test_sorting_values_are_bounded_before_int():
    with pytest.raises(RecursaError, match=r"position 2: '999999999999'\.\.\. \(5000 characters\) is not an integer"):
        SortingTask(2, 9).parse("1 " + "9" * 5000)
    with pytest.raises(RecursaError, match="length .* must be <= 65536"):
        SortingTask(10**9, 9)


def test_maze_characters_beyond_latin1_are_shown_as_themselves():
    text = ("S" + "." * 6 + "€" + "\n") + "\n".join(["." * 8] * 6) + "\n" + "." * 7 + "G"
    with pytest.raises(RecursaError, match="maze: position 8 \\(row 1, column 8\\): '€' is not a maze cell"):
        MazeTask(8).parse(text)


def test_maze_csv_with_a_non_latin1_character(capsys, tmp_path):
    q = "S" + " " * 14 + "G"
    bad = tmp_path / "bad.csv"
    bad.write_text("source,question,answer,rating\n" + f"x,{q},{q.replace(' ', 'o')},0\n"
                   + f"x,{q[:5]}→{q[6:]},{q.replace(' ', 'o')},0\n", encoding="utf-8")
    err = _err(capsys, ["build", "maze", "--source", str(bad), "--out", str(tmp_path / "o")])
    assert f"{bad}:3: question: position 6 (row 2, column 2): '→' is not a maze cell" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_solve_rejects_superscripts_and_unreadable_files(trained, capsys, tmp_path):
    _, run, _ = trained
    err = _err(capsys, ["solve", str(run), "--puzzle", "2..1...2....1..²"])
    assert "--puzzle: position 16 (row 4, column 4): '²' is not a digit 1-4" in err
    f = tmp_path / "sup.txt"
    f.write_text("2..1...2....1..²\n", encoding="utf-8")
    assert f"{f} line 1: position 16" in _err(capsys, ["solve", str(run), "--file", str(f)])
    b = tmp_path / "bin.txt"
    b.write_bytes(b"2..1...2....1..4\n" + bytes(range(128, 256)))
    assert f"{b}: not UTF-8 text (byte 0x80 at offset 17, line 2)" in _err(capsys, ["solve", str(run), "--file", str(b)])
    assert f"{tmp_path}: file is a directory" in _err(capsys, ["solve", str(run), "--file", str(tmp_path)])
    assert f"{tmp_path / 'no.txt'}: file not found" in _err(capsys, ["solve", str(run), "--file", str(tmp_path / "no.txt")])


def test_benchmark_files_that_are_directories_or_not_utf8(capsys, tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    out = tmp_path / "o"
    assert f"{d}: file is a directory" in _err(capsys, ["build", "sudoku-extreme", "--source", str(d), "--out", str(out)])
    b = tmp_path / "bin.txt"
    b.write_bytes(b"1" + b"." * 80 + b"\n\xfe\n")
    assert f"{b}: not UTF-8 text (byte 0xfe at offset 82, line 2)" in _err(
        capsys, ["build", "sudoku-extreme", "--source", str(b), "--out", str(out)])
    s = tmp_path / "sup.txt"
    s.write_text("1" + "." * 80 + "\n" + "." * 80 + "²\n", encoding="utf-8")
    assert f"{s}:2: position 81 (row 9, column 9): '²' is not a digit 1-9" in _err(
        capsys, ["build", "sudoku-extreme", "--source", str(s), "--out", str(out)])
    c = tmp_path / "x_training_challenges.json"
    c.write_bytes(b'{"a": \xff}')
    assert f"{c}: not UTF-8 text" in _err(capsys, ["build", "arc", "--files", str(tmp_path / "x"), "--subsets",
                                                   "training", "--test-set", "training", "--out", str(out)])
    assert not out.exists()


# ---------------------------------------------------------------------- devices (L3)
def test_unknown_and_missing_devices(trained, capsys, monkeypatch):
    _, run, _ = trained
    puzzle = "2..1...2....1..4"
    err = _err(capsys, ["solve", str(run), "--puzzle", puzzle, "--device", "bogus"])
    assert "--device 'bogus': unknown device (choose from auto, cpu, cuda, cuda:N, mps)" in err
    if not torch.cuda.is_available():
        err = _err(capsys, ["solve", str(run), "--puzzle", puzzle, "--device", "cuda"])
        assert "--device 'cuda': this torch has no usable CUDA device (torch " in err
    if not (torch.backends.mps.is_available()):
        assert "no usable MPS device" in _err(capsys, ["solve", str(run), "--puzzle", puzzle, "--device", "mps"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    err = _err(capsys, ["solve", str(run), "--puzzle", puzzle, "--device", "cuda:3"])
    assert "--device 'cuda:3': there is only 1 CUDA device (cuda:0..cuda:0)" in err


# ---------------------------------------------------------------------- checkpoint config.json (L6)
@pytest.mark.parametrize("edit,msg", [
    (lambda m: m["spec"].update(vocab_size="six"), "spec.vocab_size must be an integer >= 1, got 'six'"),
    (lambda m: m["spec"].update(seq_len=0), "spec.seq_len must be an integer >= 1, got 0"),
    (lambda m: m.update(spec="4x4"), "'spec' must be an object"),
    (lambda m: m.update(task={"task": "sudoku", "params": {"box_rows": 3, "box_cols": 3}}),
     "the task (9x9 Sudoku (3x3 boxes)) has vocab_size 11 / seq_len 81, but the model's spec says 6 / 16"),
    (lambda m: m.update(task=["sudoku"]), "'task' must be an object"),
    (lambda m: m.update(task={"task": "chess"}), "unknown task 'chess'"),
])
def test_inconsistent_checkpoint_config(trained, tiny_data, capsys, tmp_path, edit, msg):
    _, _, ckpt = trained
    bad = tmp_path / "ckpt"
    shutil.copytree(ckpt, bad)
    meta = json.loads((bad / "config.json").read_text())
    edit(meta)
    (bad / "config.json").write_text(json.dumps(meta))
    err = _err(capsys, ["eval", str(bad), "--data", str(tiny_data)])
    assert f"{bad / 'config.json'}: " in err and msg in err


# ---------------------------------------------------------------------- dataset files (L1, L6)
def _meta(key, value):
    def edit(d):
        p = d / "test" / "dataset.json"
        meta = json.loads(p.read_text())
        meta[key] = value
        p.write_text(json.dumps(meta))
    return edit


def _array(name, fn):
    def edit(d):
        p = d / "test" / f"all__{name}.npy"
        np.save(p, fn(np.load(p)))
    return edit


@pytest.mark.parametrize("edit,msg", [
    (_array("inputs", lambda a: a.astype(np.float64) + 0.7), "test/all__inputs.npy: dtype float64, expected integers"),
    (_array("inputs", lambda a: a.astype(np.complex128)), "test/all__inputs.npy: dtype complex128, expected integers"),
    (_array("labels", lambda a: a > 3), "test/all__labels.npy: dtype bool, expected integers"),
    (_array("puzzle_indices", lambda a: a.astype(np.float32)), "test/all__puzzle_indices.npy: dtype float32"),
    (_array("group_indices", lambda a: a.astype(np.float64)), "test/all__group_indices.npy: dtype float64"),
    (_array("puzzle_identifiers", lambda a: a[:, None]), "test/all__puzzle_identifiers.npy: shape (40, 1), expected a 1-D array"),
    (_array("puzzle_indices", lambda a: a.astype(np.uint32)[::-1].copy()), "test/all__puzzle_indices.npy: expected 41 offsets"),
    (_array("puzzle_indices", lambda a: np.r_[0, 2, 1, a[3:]].astype(np.uint32)),  # unsigned: diff wraps around
     "test/all__puzzle_indices.npy: offsets are not increasing"),
    (lambda d: np.save(d / "test" / "all__ratings.npy", np.ones(40, np.complex64)),
     "test/all__ratings.npy: dtype complex64, expected numbers"),
    (_meta("vocab_size", "six"), "test/dataset.json: 'vocab_size' must be an integer >= 1, got 'six'"),
    (_meta("seq_len", 16.0), "'seq_len' must be an integer >= 1, got 16.0"),
    (_meta("num_puzzle_identifiers", "1"), "'num_puzzle_identifiers' must be an integer >= 1, got '1'"),
    (_meta("vocab_size", True), "'vocab_size' must be an integer >= 1, got True"),
    (_meta("ignore_label_id", "x"), "'ignore_label_id' must be an integer or null, got 'x'"),
    (_meta("pad_id", None), "'pad_id' must be an integer, got None"),
    (_meta("mean_puzzle_examples", "x"), "'mean_puzzle_examples' must be a finite number >= 0, got 'x'"),
    (_meta("total_groups", -1), "'total_groups' must be an integer >= 0, got -1"),
    (_meta("total_groups", 7), "test/dataset.json: 'total_groups' is 7, but"),
    (_meta("total_puzzles", 5), "test/dataset.json: 'total_puzzles' is 5, but"),
    (_meta("sets", "all"), "'sets' must be a non-empty list of set names, got 'all'"),
    (_meta("sets", []), "'sets' must be a non-empty list of set names, got []"),
    (_meta("sets", ["../../train/all"]), "'sets': '../../train/all' is not a set name"),
    (_meta("sets", [".."]), "'sets': '..' is not a set name"),
    (_meta("sets", ["all", "all"]), "'sets' must be a list without repeats"),
    (lambda d: (d / "test" / "dataset.json").write_bytes(b'{"pad_id": \xff}'),
     "test/dataset.json: not UTF-8 text (byte 0xff at offset 11, line 1)"),
    (lambda d: (d / "test" / "dataset.json").write_text("[1, 2]"), "test/dataset.json: expected a JSON object, got list"),
    (lambda d: (d / "task.json").write_bytes(b"\xff"), "task.json: not UTF-8 text"),
    (lambda d: (d / "task.json").write_text('["sudoku"]'), "task.json: expected a JSON object, got list"),
    (lambda d: (d / "task.json").write_text('{"task": 3}'), "task.json: 'task' must be a task name"),
    (lambda d: (d / "task.json").write_text('{"task": "sudoku", "params": [2, 2]}'), "task.json: 'params' must be a JSON object"),
    (lambda d: (d / "task.json").write_text('{"task": "chess"}'), "task.json: unknown task 'chess'"),
    (lambda d: (d / "task.json").write_text('{"task": "sudoku", "params": {"box_rows": "2"}}'),
     "task.json: task 'sudoku': bad parameters"),
    (lambda d: (d / "task.json").write_text('{"task": "sudoku", "rating_buckets": ["a"]}'),
     "task.json: 'rating_buckets' must be a list of increasing numbers"),
])
def test_damaged_dataset_files(trained, tiny_data, capsys, tmp_path, edit, msg):
    _, _, ckpt = trained
    d = tmp_path / "data"
    shutil.copytree(tiny_data, d)
    edit(d)
    err = _err(capsys, ["eval", str(ckpt), "--data", str(d), "--limit", "4"])
    assert msg in err and str(d) in err


def test_multi_set_dataset_names_the_set(tiny_data, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(tiny_data, d)
    for f in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"):
        shutil.copy(d / "test" / f"all__{f}.npy", d / "test" / f"b__{f}.npy")
    np.save(d / "test" / "b__labels.npy", np.load(d / "test" / "b__labels.npy")[:3])
    meta = json.loads((d / "test" / "dataset.json").read_text())
    meta["sets"] = ["all", "b"]
    (d / "test" / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(RecursaError, match="40 inputs but 3 labels in set 'b'"):
        load_split(d, "test")
    shutil.copy(d / "test" / "all__labels.npy", d / "test" / "b__labels.npy")
    assert load_split(d, "test").num_examples == 80  # total_groups/total_puzzles are per-build sums: not checked


def test_task_json_that_disagrees_with_the_dataset(tiny_data, tmp_path):
    info = read_task_info(tiny_data)
    meta = load_split(tiny_data, "train").meta
    check_task_matches(SudokuTask(**info["params"]), meta, tiny_data)  # agrees
    with pytest.raises(RecursaError) as e:
        check_task_matches(SudokuTask(3, 3), meta, tiny_data)
    assert str(e.value) == (f"{tiny_data / 'task.json'}: the task (9x9 Sudoku (3x3 boxes)) has vocab_size 11 / seq_len 81, "
                            f"but {tiny_data / 'train' / 'dataset.json'} says 6 / 16")


def test_sorting_builder_still_round_trips(tmp_path):
    build_sorting(tmp_path / "s", length=4, max_value=5, num_train=8, num_test=2, num_aug=1, log=lambda *a: None)
    assert load_split(tmp_path / "s", "train").num_examples == 16
