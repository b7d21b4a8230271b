"""Sudoku-Extreme builder: CSV and plain sources, solver labelling, splits, subsample,
augmentation, ratings, determinism, and errors that name the file and line."""

import csv
import json

import numpy as np
import pytest

from recursa.cli import main
from recursa.data.format import load_split
from recursa.tasks.sudoku import Sudoku
from recursa.data.ratings import bucket_names
from recursa.tasks.sudoku_extreme import build_sudoku_extreme

from .conftest import collection, data_file

S = Sudoku(3, 3)


def _text(grid, blank="."):
    return "".join(str(int(v)) if v else blank for v in grid)


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(5)
    return [S.generate(rng, givens=28) for _ in range(40)]


def _write_csv(path, pairs, blank=".", ratings=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "question", "answer", "rating"])
        for k, (p, s) in enumerate(pairs):
            w.writerow(["gen", _text(p, blank), _text(s), ratings[k] if ratings is not None else k % 7])
    return path


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_csv_build_splits_augments_and_is_deterministic(tmp_path, pairs):
    src = _write_csv(tmp_path / "train.csv", pairs, blank="0")
    kw = dict(source=src, test_fraction=0.25, subsample_size=20, num_aug=3, seed=1, log=lambda *a: None)
    build_sudoku_extreme(tmp_path / "a", **kw)
    build_sudoku_extreme(tmp_path / "b", **kw)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # byte-identical for the same seed and arguments
    build_sudoku_extreme(tmp_path / "c", **{**kw, "seed": 2})
    assert _files(tmp_path / "a") != _files(tmp_path / "c")

    train, test = load_split(tmp_path / "a", "train"), load_split(tmp_path / "a", "test")
    assert train.meta["vocab_size"] == 11 and train.meta["seq_len"] == 81 and train.inputs.dtype == np.uint8
    assert train.num_groups == 20 and len(train.inputs) == 80 and list(train.group_indices[:3]) == [0, 4, 8]
    q, a = S.decode(np.asarray(train.inputs)), S.decode(np.asarray(train.labels))
    assert S.is_valid(q, a).all()  # every augmented view: a valid puzzle whose label solves it
    assert (S.solve_many(q)[0] == 1).all()
    originals = {_text(p) for p, _ in pairs}
    assert all(_text(x) in originals for x in q[::4])  # each group starts with the original
    assert sum(_text(x) in originals for x in q) == 20  # the views are new puzzles
    # Test: the held-out 10 source puzzles, not augmented, never in training.
    tq = S.decode(np.asarray(test.inputs))
    assert len(tq) == 10 and all(_text(x) in originals for x in tq)
    assert not {_text(x) for x in tq} & {_text(x) for x in q}
    # Ratings come from the CSV column and follow their puzzle (repeated over the group).
    by_puzzle = {_text(p): k % 7 for k, (p, _) in enumerate(pairs)}
    assert [by_puzzle[_text(x)] for x in tq] == test.extras["ratings"].tolist()
    assert np.array_equal(train.extras["ratings"][::4], [by_puzzle[_text(x)] for x in q[::4]])
    assert (train.extras["ratings"].reshape(20, 4) == train.extras["ratings"][::4, None]).all()
    info = json.loads((tmp_path / "a" / "task.json").read_text())
    assert info["task"] == "sudoku" and info["params"] == {"box_rows": 3, "box_cols": 3}
    assert info["rating_buckets"] == [0, 1, 10, 100]


def test_test_source_and_overlap_are_held_out(tmp_path, pairs):
    train_csv = _write_csv(tmp_path / "train.csv", pairs[:30])
    test_csv = _write_csv(tmp_path / "test.csv", pairs[25:])  # 5 puzzles in both files
    msgs = []
    build_sudoku_extreme(tmp_path / "d", source=train_csv, test_source=test_csv, log=msgs.append)
    assert load_split(tmp_path / "d", "train").num_groups == 25 and len(load_split(tmp_path / "d", "test").inputs) == 15
    assert any("leaving out 5 training puzzles" in m for m in msgs)
    # min-rating filters both sets on the rating column.
    build_sudoku_extreme(tmp_path / "e", source=train_csv, test_source=test_csv, min_rating=3, log=lambda *a: None)
    assert (load_split(tmp_path / "e", "test").extras["ratings"] >= 3).all()


def test_plain_file_is_labelled_by_the_solver(tmp_path):
    lines = data_file("sudoku/puzzles5_forum_hardest_1905_11+.txt").read_text().splitlines()[:60]
    src = tmp_path / "hard.txt"
    src.write_text("# a comment\n\n" + "\n".join(lines) + "\n")
    build_sudoku_extreme(tmp_path / "h", source=src, test_fraction=0.2, num_aug=2, workers=2, log=lambda *a: None)
    train, test = load_split(tmp_path / "h", "train"), load_split(tmp_path / "h", "test")
    assert train.num_groups == 48 and len(test.inputs) == 12
    for split in (train, test):
        q, a = S.decode(np.asarray(split.inputs)), S.decode(np.asarray(split.labels))
        assert S.is_valid(q, a).all()
    tq = S.decode(np.asarray(test.inputs))
    assert np.array_equal(test.extras["ratings"], S.solve_many(tq)[2])  # rating = solver guesses
    assert test.extras["ratings"].min() > 0  # these puzzles need search


def test_several_sources_are_one_collection_and_errors_name_each_file(tmp_path, capsys):
    """--source given twice (the 17-clue and the forum-hardest files): one collection, split and
    labelled as one; a bad puzzle in either file is named by its own file and line; CSV and plain
    files do not mix."""
    hard = data_file("sudoku/puzzles5_forum_hardest_1905_11+.txt").read_text().splitlines()[:30]
    pairs = [S.generate(np.random.default_rng(100 + k), givens=26) for k in range(30)]
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(hard) + "\n")
    b.write_text("# generated\n" + "\n".join(_text(p) for p, _ in pairs) + "\n")
    out = tmp_path / "ab"
    assert main(["build", "sudoku-extreme", "--source", str(a), "--source", str(b), "--out", str(out),
                 "--test-fraction", "0.2", "--num-val", "6", "--workers", "1"]) == 0
    train, test, val = (load_split(out, x) for x in ("train", "test", "val"))
    assert (train.num_groups, len(test.inputs), len(val.inputs)) == (42, 12, 6)
    seen = [{_text(x) for x in S.decode(np.asarray(d.inputs))} for d in (train, test, val)]
    assert len(seen[0] | seen[1] | seen[2]) == 60 and not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert seen[0] & set(hard) and seen[0] & {_text(p) for p, _ in pairs}  # both files reach training
    for d in (train, test, val):
        assert S.is_valid(S.decode(np.asarray(d.inputs)), S.decode(np.asarray(d.labels))).all()
    info = json.loads((out / "task.json").read_text())
    assert info["build_args"]["source"] == [str(a), str(b)]
    # a puzzle with two solutions on line 4 of b (after its comment line): named by b, not a
    serg = [x for x in data_file("sudoku/puzzles7_serg_benchmark.txt").read_text().splitlines()
            if x and not x.startswith("#")][0]
    b.write_text("# generated\n" + "\n".join([_text(p) for p, _ in pairs[:2]] + [serg]) + "\n")
    assert main(["build", "sudoku-extreme", "--source", str(a), "--source", str(b), "--out", str(tmp_path / "x"),
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{b}: 1 with more than one solution (line 4)" in err and f"{a}:" not in err and "\n" not in err
    assert main(["build", "sudoku-extreme", "--source", str(a), "--source", str(b), "--out", str(tmp_path / "x"),
                 "--workers", "1", "--on-invalid", "skip"]) == 0
    assert (tmp_path / "x" / "rejected.txt").read_text() == f"{b}:4\tmore than one solution\n"
    c = _write_csv(tmp_path / "c.csv", pairs[:5])
    assert main(["build", "sudoku-extreme", "--source", str(a), "--source", str(c), "--out", str(tmp_path / "y")]) == 2
    assert "mixes CSV (answers) and plain (unlabelled) files" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


@pytest.mark.parametrize("whole", [False, True], ids=["excerpt", "whole-collection"])
def test_multi_solution_puzzles_are_reported_with_their_lines(tmp_path, capsys, whole):
    name = "sudoku/puzzles7_serg_benchmark.txt"
    src, n = (collection(name), 10000) if whole else (data_file(name), 20)
    out = tmp_path / "serg"
    assert main(["build", "sudoku-extreme", "--source", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(src) in err
    assert f"{n} with more than one solution (line 3, 4, 5, 6, 7, 8, 9, 10, ... ({n} in all))" in err
    assert not out.exists() and not list(tmp_path.iterdir())
    # --on-invalid skip keeps the valid ones and lists the others in rejected.txt.
    pairs = [S.generate(np.random.default_rng(k), givens=30) for k in range(12)]
    mixed = tmp_path / "mixed.txt"
    serg = [x for x in src.read_text().splitlines() if x and not x.startswith("#")][:3]
    mixed.write_text("\n".join([_text(p) for p, _ in pairs] + serg) + "\n")
    assert main(["build", "sudoku-extreme", "--source", str(mixed), "--out", str(out), "--on-invalid", "skip",
                 "--test-fraction", "0.25"]) == 0
    rejected = (out / "rejected.txt").read_text().splitlines()
    assert rejected == [f"{mixed}:{n}\tmore than one solution" for n in (13, 14, 15)]


@pytest.mark.parametrize("content,msg", [
    ("." * 80, "bad.txt:2: 80 cells, expected 81"),
    ("77" + "." * 79, "bad.txt:2: digit 7 appears twice in row 1 (positions 1 and 2)"),
    ("x" + "." * 80, "bad.txt:2: position 1 (row 1, column 1): 'x' is not a digit 1-9"),
])
def test_malformed_plain_lines_name_file_and_line(tmp_path, capsys, content, msg):
    src = tmp_path / "bad.txt"
    src.write_text("1" + "." * 80 + "\n" + content + "\n")
    assert main(["build", "sudoku-extreme", "--source", str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]  # nothing half-built


def test_malformed_csv_rows_name_file_and_line(tmp_path, capsys, pairs):
    good = _write_csv(tmp_path / "good.csv", pairs[:3])
    rows = good.read_text().splitlines()
    p, s = pairs[0]
    wrong = s.copy()
    i = int(np.flatnonzero(p == 0)[0])
    wrong[i] = wrong[i] % 9 + 1
    cases = {
        "answer": (rows + [f"gen,{_text(p)},{_text(wrong)},3"], "bad.csv:5: the answer is not a solution of the question"),
        "short": (rows + [f"gen,{_text(p)[:80]},{_text(s)},3"], "bad.csv:5: question: 80 cells, expected 81"),
        "blank": (rows + [f"gen,{_text(p)},{_text(p)},3"], "bad.csv:5: answer: position"),
        "fields": (rows + ["gen,1,2"], "bad.csv:5: 3 fields, expected 4"),
        "header": (["a,b,c"] + rows[1:], "bad.csv:1: header 'a,b,c' lacks column(s) question, answer"),
        "rating": (rows + [f"gen,{_text(p)},{_text(s)},hard"], "bad.csv:5: rating 'hard' is not a number"),
    }
    for name, (lines, msg) in cases.items():
        bad = tmp_path / "bad.csv"
        bad.write_text("\n".join(lines) + "\n")
        if name == "header":  # without a question column the file reads as plain text: still a clear error
            assert main(["build", "sudoku-extreme", "--source", str(bad), "--out", str(tmp_path / "o")]) == 2
            assert "bad.csv:1:" in capsys.readouterr().err
            continue
        assert main(["build", "sudoku-extreme", "--source", str(bad), "--out", str(tmp_path / "o")]) == 2, name
        assert msg in capsys.readouterr().err, name
        assert not (tmp_path / "o").exists()


def test_rating_buckets_and_eval_by_rating(tmp_path, pairs):
    from recursa.config import ModelConfig
    from recursa.evaluation.evaluate import evaluate
    from recursa.models import DataSpec, build_model
    assert bucket_names((0, 1, 10, 100)) == ["0", "1-9", "10-99", "100+"]
    src = _write_csv(tmp_path / "t.csv", pairs, ratings=[0, 5, 50, 500] * 10)
    build_sudoku_extreme(tmp_path / "r", source=src, test_fraction=0.5, log=lambda *a: None)
    test = load_split(tmp_path / "r", "test")
    model = build_model(ModelConfig(hidden_size=16, num_heads=2, H_cycles=1, L_cycles=1, halt_max_steps=2,
                                    mlp_t=True, pos_encodings="none", puzzle_emb_ndim=0),
                        DataSpec(11, 81, 1)).eval()
    from recursa.tasks import SudokuTask
    scorer = SudokuTask(3, 3).scorer(tmp_path / "r", test)  # the family's scorer, buckets from task.json
    res = evaluate(model, test, None, batch_size=7, scorer=scorer)
    import dataclasses
    assert SudokuTask(3, 3).scorer(tmp_path / "r", dataclasses.replace(test, extras={})) is None  # no ratings
    by = res["exact_by_rating"]
    assert list(by) == ["0", "1-9", "10-99", "100+"]
    counts = np.bincount(np.searchsorted([0, 1, 10, 100], test.extras["ratings"], side="right") - 1, minlength=4)
    assert [by[k]["n"] for k in by] == counts.tolist() and sum(counts) == res["n"] == 20


def test_check_unique_proves_csv_answers(tmp_path, capsys, pairs):
    """--check-unique: a CSV puzzle with several solutions is reported even though its answer
    obeys the rules; with --on-invalid skip it is left out and listed."""
    p, s = pairs[0]
    loose = p.copy()
    loose[np.flatnonzero(p)[:12]] = 0
    assert S.solve(loose)[0] == 2
    src = _write_csv(tmp_path / "u.csv", [(loose, s)] + pairs[1:12])
    out = tmp_path / "u"
    assert main(["build", "sudoku-extreme", "--source", str(src), "--out", str(out)]) == 0  # rules only: accepted
    assert main(["build", "sudoku-extreme", "--source", str(src), "--check-unique", "--out", str(out), "--overwrite"]) == 2
    assert "u.csv: 1 with more than one solution (line 2)" in capsys.readouterr().err
    assert main(["build", "sudoku-extreme", "--source", str(src), "--check-unique", "--on-invalid", "skip",
                 "--test-fraction", "0.2", "--out", str(out), "--overwrite"]) == 0
    assert (out / "rejected.txt").read_text() == f"{src}:2\tmore than one solution\n"
    assert len(load_split(out, "train").inputs) + len(load_split(out, "test").inputs) == 11
