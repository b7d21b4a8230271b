"""Hostile-input suite (issue 8): every failure class of the QA report on hostile inputs (318
cases; its sections H1-H4, M1-M4, L1-L9), table-driven.

Each bad input must give exactly one ``error: ...`` line on stderr naming the problem, exit code
2, no traceback, no partial files, and leave the previous files intact. Classes:

  (1) --out deletion/refusal (build, import-official, demo; library check_out)
  (2) the final checkpoint comes before the final evaluation; eval errors lose nothing
  (3) divergence (injected NaN, a real lr blow-up, skip_step, non-finite config numbers)
  (4) two trainers on one run directory (two processes; in-process lock; stale lock; kill -9)
  (5) atomic replacement of directories and cleanup of stale temporaries
  (6) --resume errors (changed settings, damaged or missing train state, latest, config.json)
  (7) build sudoku: no hang on impossible counts, --num-test 0, absurd sizes
  (8) tracebacks turned into errors: non-UTF-8 files, OS errors (read-only disk, full disk, a file
      or '.' as --out, --json naming a directory), --device cuda on CPU-only torch, negative
      num_threads / seed, '²' in a puzzle, wrong JSON types in dataset.json/task.json/config.json
  (9) silent acceptance: .npy of wrong dtype/shape, garbled weights (checksum), duplicate metrics
      rows after a resume

Full disk and read-only disks use a small tmpfs mounted inside ``unshare --mount`` (run by
tests/hostile_helpers/in_mount.py); where no mount namespace is allowed those variants are
skipped and the fault-injecting writer (RLIMIT_FSIZE, EFBIG) still runs.

Number of cases: 320 collected test items: class (1) 57, (2) 22, (3) 25, (4) 4, (5) 18, (6) 23,
(7) 17, (8) 116 (full disk 2, failing writer 2, read-only 6 among them), (9) 38. Property-based
tests of every parser of user text (18 tests, up to 100 generated inputs each) are in
tests/test_properties.py.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from recursa import storage
from recursa.cli import main
from recursa.data.format import load_split
from recursa.errors import RecursaError
from recursa.inference.checkpoint import load_checkpoint
from recursa.tasks import build_sudoku
from recursa.inference import checkpoint

from .conftest import REPO
from .test_cli import TINY_TOML

HELPER = Path(__file__).resolve().parent / "hostile_helpers" / "in_mount.py"
PY = sys.executable


# ====================================================================== helpers
def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (Path, str)):
        return json.dumps(str(v))
    return str(v)


def sets(**kw) -> list[str]:
    """--set options for [train] keys (``eval__limit=3`` for another section)."""
    out = []
    for k, v in kw.items():
        key = k.replace("__", ".") if "__" in k else f"train.{k}"
        out += ["--set", f"{key}={_toml(v)}"]
    return out


def call(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        return e.code


def expect_error(capsys, argv, *fragments, code=2) -> tuple[str, str]:
    """Run the CLI in-process: exit ``code``, exactly one ``error:`` line on stderr that contains
    every fragment, no traceback, no internal error. Returns (error line, stdout)."""
    rc = call(argv)
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert rc == code, f"exit {rc} (expected {code}); stderr: {cap.err!r}"
    assert "Traceback" not in cap.err + cap.out, cap.err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one 'error:' line, got {cap.err!r}"
    if code == 2:
        assert "internal error" not in err, err
    for f in fragments:
        assert f in err, f"{f!r} not in {err!r}"
    return err, cap.out


def expect_ok(capsys, argv) -> str:
    rc = call(argv)
    cap = capsys.readouterr()
    assert rc == 0, f"exit {rc}; stderr: {cap.err!r}"
    return cap.out + cap.err


def snapshot(root: Path, ignore=(".lock",)) -> dict:
    """Every entry under ``root`` (hidden ones too): file bytes, 'dir' or the link target."""
    snap = {}
    root = Path(root)
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            if n in ignore:
                continue
            rel = str(p.relative_to(root))
            if p.is_symlink():
                snap[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                snap[rel] = "dir"
            else:
                snap[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return snap


def leftovers(parent: Path) -> list[str]:
    """recursa's temporary names (staging or set-aside dirs, temp files) under ``parent``."""
    found = []
    for dirpath, dirs, files in os.walk(parent):
        for n in dirs + files:
            if ".tmp-" in n or ".old-" in n or n.startswith((".latest.", ".config.toml.", ".metrics.jsonl.")):
                found.append(str(Path(dirpath, n).relative_to(parent)))
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def latest_ckpt(run: Path) -> Path:
    return run / (run / "latest").read_text().strip()


def all_finite(ckpt: Path) -> bool:
    for name in ("model.safetensors", "train_state.safetensors"):
        for t in load_file(str(ckpt / name)).values():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return False
    return True


def metric_rows(run: Path) -> list[dict]:
    """Every line of metrics.jsonl parsed (a torn line fails the test)."""
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def train_steps(run: Path) -> list[int]:
    return [r["step"] for r in metric_rows(run) if "train/loss" in r]


def rehash(ckpt: Path, name: str) -> None:
    """Record the current SHA-256 of ``name`` in the checkpoint's config.json (a deliberate edit)."""
    meta = json.loads((ckpt / "config.json").read_text())
    meta["files"][name] = sha256(ckpt / name)
    (ckpt / "config.json").write_text(json.dumps(meta))


class Hang(BaseException):
    """Raised by the deadline: a BaseException, so the CLI cannot turn a hang into an error line."""


@contextlib.contextmanager
def deadline(seconds: int):
    def on_alarm(*_):
        raise Hang(f"no answer within {seconds} s: the command hangs")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def one_error_line(stderr: str, *fragments) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [x for x in stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one 'error:' line, got {stderr!r}"
    assert "internal error" not in lines[0], lines[0]
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    return lines[0]


ON_CUDA = torch.cuda.is_available()
NEEDS_NO_CUDA = pytest.mark.skipif(ON_CUDA, reason="this torch sees a CUDA device: --device cuda is valid here")


def cases(rows, needs_no_cuda=()):
    """Table rows as pytest params with their first column as id; rows named in ``needs_no_cuda``
    only run where torch has no CUDA device."""
    return [pytest.param(*r[1:], id=r[0], marks=[NEEDS_NO_CUDA] if r[0] in needs_no_cuda else []) for r in rows]


# ====================================================================== shared artefacts
@dataclass
class World:
    root: Path
    data: Path      # 4x4 Sudoku dataset
    cfg: Path       # tiny TOML recipe
    good: Path      # a finished run: checkpoints at steps 4 and 8

    def train(self, out, *extra, resume=False, cfg=None, **train):
        argv = ["train", str(cfg or self.cfg), "--quiet", *sets(out=out, **train), *extra]
        return argv + (["--resume"] if resume else [])

    def run_copy(self, dst: Path) -> Path:
        shutil.copytree(self.good, dst)
        return dst

    def data_copy(self, dst: Path) -> Path:
        shutil.copytree(self.data, dst)
        return dst


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data4"
    build_sudoku(data, box_rows=2, box_cols=2, num_train=100, num_test=20, num_aug=1, seed=0, num_val=20, log=lambda *a: None)
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_TOML.format(data=data.as_posix(), out=(root / "default-run").as_posix()))
    w = World(root, data, cfg, root / "good")
    assert call(w.train(w.good, steps=8, checkpoint_interval=4, log_interval=2)) == 0
    assert (w.good / "latest").read_text().strip() == "checkpoints/step_0000008"
    return w


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """An official-style checkpoint file + all_config.yaml, and a recursa checkpoint imported from
    another official model (to be replaced)."""
    from .test_official import _official_files
    d = tmp_path_factory.mktemp("official")
    ckpt, cfg = _official_files(d, "trm_mlp_t")
    other = d / "other"
    other.mkdir()
    ckpt2, cfg2 = _official_files(other, "trm_att_rope")
    imported = d / "imported"
    assert call(["import-official", ckpt2, "--config", cfg2, "--seq-len", "81", "--out", imported]) == 0
    return ckpt, cfg, imported


# ---------------------------------------------------------------------- targets for --out
def _user_dir(p: Path, w: World):
    p.mkdir()
    (p / "notes.txt").write_text("important")
    (p / "sub").mkdir()
    (p / "sub" / "x.txt").write_text("x")


def _a_file(p: Path, w: World):
    p.write_text("precious")


def _a_dataset(p: Path, w: World):
    w.data_copy(p)


def _dataset_plus_user_file(p: Path, w: World):
    w.data_copy(p)
    (p / "notes.txt").write_text("mine")


def _a_run(p: Path, w: World):
    w.run_copy(p)


def _a_checkpoint(p: Path, w: World):
    shutil.copytree(latest_ckpt(w.good), p)


def _symlink_to_user_dir(p: Path, w: World):
    _user_dir(p.with_name("real"), w)
    p.symlink_to(p.with_name("real"))


def _a_demo(p: Path, w: World):
    p.mkdir()
    (p / "demo.json").write_text('{"task": "sudoku4"}\n')
    (p / "trm.log").write_text("old demo\n")


def _parent_is_file(p: Path, w: World):
    p.parent.write_text("a file")


# ====================================================================== (1) --out deletion / refusal
BUILD_OUT = [
    ("user-dir", _user_dir, [], ["exists and is not a recursa dataset", "refusing to replace it"]),
    ("user-dir+overwrite", _user_dir, ["--overwrite"], ["exists and is not a recursa dataset", "refusing to replace it"]),
    ("dataset-without-overwrite", _a_dataset, [], ["already holds a recursa dataset", "pass --overwrite"]),
    ("dataset+user-file", _dataset_plus_user_file, ["--overwrite"], ["exists and is not a recursa dataset"]),
    ("run-dir+overwrite", _a_run, ["--overwrite"], ["exists and is not a recursa dataset"]),
    ("checkpoint+overwrite", _a_checkpoint, ["--overwrite"], ["exists and is not a recursa dataset"]),
    ("file", _a_file, [], ["exists and is not a directory", "refusing"]),
    ("file+overwrite", _a_file, ["--overwrite"], ["exists and is not a directory", "refusing"]),
    ("symlink", _symlink_to_user_dir, ["--overwrite"], ["exists and is not a directory"]),
    ("parent-is-file", _parent_is_file, [], ["is not a directory"]),
]


@pytest.mark.parametrize("task", ["sudoku", "sorting"])
@pytest.mark.parametrize("name,setup,flags,fragments", BUILD_OUT, ids=[c[0] for c in BUILD_OUT])
def test_build_refuses_to_replace_what_it_did_not_write(world, tmp_path, capsys, task, name, setup, flags, fragments):
    target = tmp_path / ("afile/d" if name == "parent-is-file" else "target")
    setup(target, world)
    before = snapshot(tmp_path)
    size = ["--box", "2x2", "--num-train", "20"] if task == "sudoku" else ["--length", "4", "--num-train", "20"]
    _, out = expect_error(capsys, ["build", task, *size, "--num-test", "5", "--out", target, *flags], *fragments)
    assert snapshot(tmp_path) == before  # untouched, and nothing new (no staging dir, nothing set aside)
    assert "wrote" not in out


@pytest.mark.parametrize("out,fragment", [
    (".", "name a directory to create"), ("", "name a directory to create"), ("./", "name a directory to create"),
    ("..", "name a directory to create"), ("CWD", "current directory"), ("CWD_PARENT", "current directory"),
])
def test_build_out_naming_the_working_directory_is_refused(tmp_path, capsys, monkeypatch, out, fragment):
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("mine")
    monkeypatch.chdir(work)
    out = {"CWD": str(work), "CWD_PARENT": str(tmp_path)}.get(out, out)
    before = snapshot(tmp_path)
    expect_error(capsys, ["build", "sudoku", "--box", "2x2", "--num-train", "10", "--num-test", "5", "--out", out], fragment)
    assert snapshot(tmp_path) == before


def test_build_overwrite_replaces_a_dataset_atomically(world, tmp_path, capsys):
    target = world.data_copy(tmp_path / "d")
    old = np.load(target / "train" / "all__inputs.npy")
    expect_ok(capsys, ["build", "sudoku", "--box", "2x2", "--num-train", "30", "--num-test", "5", "--seed", "1",
                       "--out", target, "--overwrite"])
    new = load_split(target, "train")
    assert new.num_groups == 30 and not np.array_equal(np.asarray(new.inputs)[: len(old)], old)
    assert leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_ok(capsys, ["build", "sudoku", "--box", "2x2", "--num-train", "10", "--num-test", "5", "--out", empty])
    assert load_split(empty, "test").num_examples == 5


IMPORT_OUT = [
    ("user-dir", _user_dir, [], ["exists and is not a recursa checkpoint directory", "refusing to replace it"]),
    ("user-dir+overwrite", _user_dir, ["--overwrite"], ["exists and is not a recursa checkpoint", "refusing"]),
    ("dataset+overwrite", _a_dataset, ["--overwrite"], ["exists and is not a recursa checkpoint"]),
    ("run-dir+overwrite", _a_run, ["--overwrite"], ["exists and is not a recursa checkpoint"]),
    ("checkpoint-without-overwrite", None, [], ["already holds a recursa checkpoint", "pass --overwrite"]),
    ("file", _a_file, ["--overwrite"], ["exists and is not a directory", "refusing"]),
    ("dot", None, [], ["name a directory to create"]),
]


@pytest.mark.parametrize("name,setup,flags,fragments", IMPORT_OUT, ids=[c[0] for c in IMPORT_OUT])
def test_import_official_refuses_to_replace_what_it_did_not_write(world, official, tmp_path, capsys, monkeypatch,
                                                                   name, setup, flags, fragments):
    ckpt, cfg, imported = official
    monkeypatch.chdir(tmp_path)
    target = Path("target")
    if name == "dot":
        target = Path(".")
    elif setup is None:
        shutil.copytree(imported, target)
    else:
        setup(tmp_path / "target", world)
    before = snapshot(tmp_path)
    expect_error(capsys, ["import-official", ckpt, "--config", cfg, "--seq-len", "81", "--out", target, *flags],
                 *fragments)
    assert snapshot(tmp_path) == before


def test_import_official_overwrite_replaces_a_checkpoint(official, tmp_path, capsys):
    ckpt, cfg, imported = official
    target = tmp_path / "ckpt"
    shutil.copytree(imported, target)
    assert load_checkpoint(target).cfg.model.mlp_t is False
    expect_ok(capsys, ["import-official", ckpt, "--config", cfg, "--seq-len", "81", "--out", target, "--overwrite"])
    assert load_checkpoint(target).cfg.model.mlp_t is True
    assert leftovers(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["ckpt"]


DEMO_OUT = [
    ("user-dir", _user_dir, ["--overwrite"], ["exists and is not a recursa demo output", "refusing to replace it"]),
    ("dataset", _a_dataset, ["--overwrite"], ["exists and is not a recursa demo output"]),
    ("run-dir", _a_run, ["--overwrite"], ["exists and is not a recursa demo output"]),
    ("demo-without-overwrite", _a_demo, [], ["already holds a recursa demo output", "pass --overwrite"]),
    ("file", _a_file, ["--overwrite"], ["exists and is not a directory", "refusing"]),
]


@pytest.mark.parametrize("name,setup,flags,fragments", DEMO_OUT, ids=[c[0] for c in DEMO_OUT])
def test_demo_refuses_to_replace_what_it_did_not_write(world, tmp_path, capsys, name, setup, flags, fragments):
    target = tmp_path / "target"
    setup(target, world)
    before = snapshot(tmp_path)
    expect_error(capsys, ["demo", "--task", "sudoku4", "--train-seconds", "1", "--out", target, *flags], *fragments)
    assert snapshot(tmp_path) == before


def test_demo_out_dot_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("mine")
    expect_error(capsys, ["demo", "--task", "sudoku4", "--train-seconds", "1", "--out", ".", "--overwrite"],
                 "name a directory to create")
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_a_failing_demo_puts_the_previous_demo_back(world, tmp_path, capsys, monkeypatch):
    import recursa.tools.demo as demo_mod

    def fail(*a, **k):
        raise RecursaError("injected demo failure")

    monkeypatch.setattr(demo_mod, "_run", fail)
    target = tmp_path / "demo"
    _a_demo(target, world)
    before = snapshot(tmp_path)
    expect_error(capsys, ["demo", "--task", "sudoku4", "--train-seconds", "1", "--out", target, "--overwrite"],
                 "injected demo failure")
    assert snapshot(tmp_path) == before


CHECK_OUT = [
    # (what is there, kind, overwrite, expected: True/False (replace or not) or an error fragment)
    ("missing", "dataset", False, False),
    ("empty", "dataset", False, False),
    ("empty", "checkpoint", True, False),
    ("dataset", "dataset", True, True),
    ("dataset", "dataset", False, "pass --overwrite"),
    ("dataset", "checkpoint", True, "is not a recursa checkpoint directory"),
    ("checkpoint", "checkpoint", True, True),
    ("checkpoint", "checkpoint", False, "pass --overwrite"),
    ("checkpoint", "dataset", True, "is not a recursa dataset"),
    ("run", "checkpoint", True, "is not a recursa checkpoint directory"),
    ("demo", "demo", True, True),
    ("demo", "dataset", True, "is not a recursa dataset"),
    ("user", "dataset", True, "refusing to replace it"),
    ("user", "demo", True, "refusing to replace it"),
    ("file", "dataset", True, "exists and is not a directory"),
]


@pytest.mark.parametrize("what,kind,overwrite,expected", CHECK_OUT)
def test_check_out_decides_what_may_be_replaced(world, tmp_path, what, kind, overwrite, expected):
    p = tmp_path / "out"
    {"missing": lambda: None, "empty": p.mkdir, "dataset": lambda: _a_dataset(p, world),
     "checkpoint": lambda: _a_checkpoint(p, world), "run": lambda: _a_run(p, world), "demo": lambda: _a_demo(p, world),
     "user": lambda: _user_dir(p, world), "file": lambda: _a_file(p, world)}[what]()
    before = snapshot(tmp_path)
    if isinstance(expected, bool):
        assert storage.check_out(p, kind, overwrite) is expected
    else:
        with pytest.raises(RecursaError, match=expected):
            storage.check_out(p, kind, overwrite)
    assert snapshot(tmp_path) == before


# ====================================================================== (2) final eval after the final save
@pytest.fixture
def failing_eval(monkeypatch):
    import recursa.training.evals as tr

    def install(exc: BaseException):
        def boom(*a, **k):
            raise exc
        monkeypatch.setattr(tr, "evaluate", boom)
    return install


@pytest.mark.parametrize("exc", [RuntimeError("injected evaluation failure"), ValueError("range() arg 3 must not be zero"),
                                 IndexError("index 16 is out of bounds"), RecursaError("injected evaluation failure")],
                         ids=["RuntimeError", "ValueError", "IndexError", "RecursaError"])
def test_a_failing_final_evaluation_keeps_the_final_checkpoint(world, tmp_path, capsys, failing_eval, exc):
    failing_eval(exc)
    run = tmp_path / "run"
    expect_error(capsys, world.train(run, steps=6, checkpoint_interval=0, eval_interval=0),
                 "evaluation at step 6 failed", str(exc), "the final checkpoint", "was written before it")
    assert (run / "latest").read_text().strip() == "checkpoints/step_0000006"
    assert load_checkpoint(run).meta["step"] == 6
    assert train_steps(run)[-1] == 6


def test_a_failing_periodic_evaluation_saves_the_weights_first(world, tmp_path, capsys, failing_eval):
    failing_eval(RuntimeError("injected evaluation failure"))
    run = tmp_path / "run"
    expect_error(capsys, world.train(run, steps=6, checkpoint_interval=0, eval_interval=2),
                 "evaluation at step 2 failed", "the weights were saved first")
    assert (run / "latest").read_text().strip() == "checkpoints/step_0000002"
    expect_ok(capsys, ["eval", run, "--data", world.data, "--limit", "5"])  # the saved run is usable


@pytest.mark.parametrize("override,fragments", [
    (sets(eval__batch_size=0), ["eval.batch_size=0 must be > 0"]),
    (sets(eval__batch_size=-1), ["eval.batch_size=-1 must be > 0"]),
    (sets(eval__limit=-1), ["eval.limit=-1"]),
    ("task_box33", ["task.json", "9x9 Sudoku"]),
    ("task_list", ["task.json", "expected a JSON object"]),
], ids=["eval.batch_size=0", "eval.batch_size=-1", "eval.limit=-1", "task.json-box3x3", "task.json-list"])
def test_what_would_fail_the_final_evaluation_is_refused_before_training(world, tmp_path, capsys, override, fragments):
    run = tmp_path / "run"
    extra = []
    if isinstance(override, str):
        data = world.data_copy(tmp_path / "data")
        (data / "task.json").write_text('{"task": "sudoku", "params": {"box_rows": 3, "box_cols": 3}}'
                                        if override == "task_box33" else '["sudoku"]')
        extra = sets(data=data)
    else:
        extra = override
    t0 = time.perf_counter()
    expect_error(capsys, world.train(run, *extra, steps=300, eval_interval=0), *fragments)
    assert not run.exists() and time.perf_counter() - t0 < 20  # refused up front, not after training


EVAL_ERRORS = [
    ("json-dir", ["--json", "DIR"], ["--json", "is a directory"]),
    ("json-under-file", ["--json", "FILE/x.json"], ["is not a directory"]),
    ("batch-size-0", ["--batch-size", "0"], ["--batch-size > 0"]),
    ("limit-1", ["--limit", "-1"], ["--limit must be >= 0"]),
    ("steps-1", ["--steps", "-1"], ["--steps"]),
    ("split-valid", ["--split", "valid"], ["valid/dataset.json", "missing"]),
    ("data-missing", ["--data", "NODATA"], ["dataset directory not found"]),
    ("data-file", ["--data", "FILE"], ["not a dataset directory"]),
    ("device-cuda", ["--device", "cuda"], ["no usable CUDA device"]),
    ("device-cuda-4095", ["--device", "cuda:4095"], ["CUDA device"]),
    ("device-bogus", ["--device", "bogus"], ["bogus"]),
    ("ckpt-is-toml", ["--ckpt", "TOML"], ["not a checkpoint"]),
]


@pytest.mark.parametrize("args,fragments", cases(EVAL_ERRORS, needs_no_cuda={"device-cuda"}))
def test_eval_errors_lose_nothing(world, tmp_path, capsys, args, fragments):
    report = tmp_path / "report.json"
    report.write_text('{"previous": true}\n')
    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_text("a file")
    subst = {"DIR": str(tmp_path / "DIR"), "FILE/x.json": str(tmp_path / "FILE" / "x.json"),
             "NODATA": str(tmp_path / "nodata"), "FILE": str(tmp_path / "FILE"), "TOML": str(world.cfg)}
    args = [subst.get(a, a) for a in args]
    ckpt = world.good
    if args[0] == "--ckpt":
        ckpt, args = args[1], []
    argv = ["eval", ckpt, "--limit", "5"]
    if "--data" not in args:
        argv += ["--data", world.data]
    if "--json" not in args:
        argv += ["--json", report]
    before = snapshot(tmp_path)
    good_before = snapshot(world.good)
    expect_error(capsys, argv + args, *fragments)
    assert snapshot(tmp_path) == before and snapshot(world.good) == good_before


# ====================================================================== (3) divergence
@pytest.fixture
def nan_loss(monkeypatch):
    """Make the training loss NaN at chosen steps (1-based count of training steps)."""
    import recursa.training.trainer as tr
    orig = tr.act_loss

    def install(bad):
        n = [0]

        def wrapped(*a, **k):
            loss, metrics = orig(*a, **k)
            n[0] += 1
            if bad(n[0]):
                loss = loss * float("nan")
            return loss, metrics
        monkeypatch.setattr(tr, "act_loss", wrapped)
    return install


def test_divergence_stops_and_keeps_the_last_good_checkpoint(world, tmp_path, capsys, nan_loss):
    nan_loss(lambda step: step == 7)
    run = tmp_path / "run"
    expect_error(capsys, world.train(run, steps=12, checkpoint_interval=2, keep_checkpoints=1, log_interval=4),
                 "training diverged: the loss became non-finite at step 7", "step_0000006")
    assert (run / "latest").read_text().strip() == "checkpoints/step_0000006"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_0000006"]  # never pruned, nothing newer
    assert all_finite(run / "checkpoints" / "step_0000006") and leftovers(run) == []
    assert max(train_steps(run)) <= 8
    # The good checkpoint resumes (with the fault gone) and finishes the run.
    nan_loss(lambda step: False)
    out = expect_ok(capsys, world.train(run, resume=True, steps=12, checkpoint_interval=2, keep_checkpoints=1,
                                        log_interval=4))
    assert "resumed" in out and load_checkpoint(run).meta["step"] == 12


@pytest.mark.parametrize("bad_step,steps,fragment,latest", [
    (3, 8, "no checkpoint was written", None),          # NaN before the first checkpoint: nothing saved
    (6, 6, "the last good checkpoint is", "step_0000004"),  # NaN at the very last step: the final save refuses
])
def test_divergence_never_saves_non_finite_weights(world, tmp_path, capsys, nan_loss, bad_step, steps, fragment, latest):
    nan_loss(lambda step: step == bad_step)
    run = tmp_path / "run"
    expect_error(capsys, world.train(run, steps=steps, checkpoint_interval=4, log_interval=100),
                 f"the loss became non-finite at step {bad_step}", fragment)
    if latest is None:
        assert not (run / "latest").exists() and not checkpoint.step_dirs(run / "checkpoints")
    else:
        assert (run / "latest").read_text().strip() == f"checkpoints/{latest}"
        assert all(all_finite(p) for p in checkpoint.step_dirs(run / "checkpoints"))
    assert leftovers(run) == []


def test_real_divergence_with_a_huge_learning_rate(world, tmp_path, capsys):
    run = tmp_path / "run"
    expect_error(capsys, world.train(run, steps=40, lr=100.0, lr_warmup_steps=1, checkpoint_interval=2,
                                     keep_checkpoints=1, log_interval=1),
                 "training diverged: the loss became non-finite at step", "lower train.lr")
    ckpts = checkpoint.step_dirs(run / "checkpoints")
    assert ckpts and all(all_finite(p) for p in ckpts)
    assert latest_ckpt(run) == ckpts[-1]


def test_skip_step_drops_the_non_finite_steps(world, tmp_path, capsys, nan_loss):
    nan_loss(lambda step: step in (3, 4))
    run = tmp_path / "run"
    expect_ok(capsys, world.train(run, steps=8, checkpoint_interval=0, log_interval=2, on_nonfinite="skip_step"))
    ckpt = latest_ckpt(run)
    assert ckpt.name == "step_0000008" and all_finite(ckpt)
    assert json.loads((ckpt / "train_state.json").read_text())["skipped_steps"] == 2
    assert any(r.get("train/skipped_steps") == 2 for r in metric_rows(run))


def test_skip_step_stops_after_too_many_in_a_row(world, tmp_path, capsys, nan_loss):
    nan_loss(lambda step: step >= 3)
    run = tmp_path / "run"
    expect_error(capsys, world.train(run, steps=20, checkpoint_interval=0, max_nonfinite_skips=3,
                                     on_nonfinite="skip_step"),
                 "training diverged", "non-finite 3 steps in a row")
    assert not (run / "latest").exists()


@pytest.mark.parametrize("override", [
    "train.lr=nan", "train.lr=inf", "train.lr=-inf", "train.lr=+inf", "train.lr=1e999", "train.weight_decay=inf",
    "train.max_time_s=nan", "train.beta1=nan", "train.ema_rate=nan", "train.puzzle_emb_lr=inf",
    "model.expansion=nan", "model.rope_theta=inf", "model.halt_exploration_prob=nan", "model.rms_norm_eps=nan",
    "train.lr=1" + "0" * 400,
])
def test_non_finite_config_numbers_are_refused(world, tmp_path, capsys, override):
    run = tmp_path / "run"
    expect_error(capsys, world.train(run, "--set", override, steps=5), "expected a finite number",
                 override.split("=")[0])
    assert not run.exists()


@pytest.mark.parametrize("line", ["lr = nan", "lr = inf", "lr = -inf", "lr = 1e999"])
def test_non_finite_numbers_in_the_recipe_are_refused(world, tmp_path, capsys, line):
    cfg = tmp_path / "c.toml"
    cfg.write_text(world.cfg.read_text().replace("lr = 1e-3", line))
    assert line in cfg.read_text()
    run = tmp_path / "run"
    expect_error(capsys, world.train(run, cfg=cfg, steps=5), "train.lr", "expected a finite number", str(cfg))
    assert not run.exists()


# ====================================================================== (4) two trainers
def _spawn_train(world, run, seed, steps, **kw):
    argv = [PY, "-m", "recursa", *world.train(run, seed=seed, steps=steps, **kw)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_trainers_on_one_run_directory(world, tmp_path):
    run = tmp_path / "conc"
    # long enough that the loser reaches the lock while the winner still trains, even on a loaded machine
    procs = [_spawn_train(world, run, seed, 600, checkpoint_interval=20, log_interval=1) for seed in (0, 1)]
    outs = [p.communicate(timeout=240) for p in procs]
    rcs = [p.returncode for p in procs]
    assert sorted(rcs) == [0, 2], (rcs, outs)
    win, lose = (0, 1) if rcs[0] == 0 else (1, 0)
    one_error_line(outs[lose][1], "another trainer is using this run directory",
                   f"process {procs[win].pid} on {storage._HOST}")
    rows = metric_rows(run)  # every line is valid JSON (fails on a torn line)
    steps = train_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == 600
    meta = load_checkpoint(run).meta
    assert meta["step"] == 600 and meta["config"]["train"]["seed"] == win
    assert all(r.get("step") is not None for r in rows)


def test_second_trainer_in_process_is_refused(world, tmp_path, capsys):
    run = world.run_copy(tmp_path / "run")
    before = snapshot(run)
    with storage.RunLock(run, log=lambda *a: None):
        expect_error(capsys, world.train(run, resume=True, steps=12, checkpoint_interval=4),
                     "another trainer is using this run directory", f"process {os.getpid()} on {storage._HOST}")
        assert snapshot(run) == before
    fresh = tmp_path / "fresh"
    with storage.RunLock(fresh, log=lambda *a: None):
        expect_error(capsys, world.train(fresh, steps=4), "another trainer is using this run directory")
        assert sorted(p.name for p in fresh.iterdir()) == [".lock"]


def test_a_stale_lock_of_a_dead_trainer_is_taken_over(world, tmp_path, capsys):
    run = world.run_copy(tmp_path / "run")
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": storage._HOST, "started": time.time() - 60}))
    out = expect_ok(capsys, world.train(run, resume=True, steps=10, checkpoint_interval=4, log_interval=2))
    assert "note: took over the lock" in out and "999999" in out
    assert load_checkpoint(run).meta["step"] == 10


def _kill_when(p: subprocess.Popen, ready, timeout=90.0, what="the moment to kill", may_finish=False):
    """SIGKILL ``p`` as soon as ``ready()`` is true (polled every millisecond)."""
    t0 = time.time()
    try:
        while not ready():
            if may_finish and p.poll() == 0:
                return
            assert p.poll() is None, p.communicate()
            if time.time() - t0 > timeout:
                pytest.fail(f"{what} did not come within {timeout} s")
            time.sleep(0.001)
    finally:
        p.kill()
        p.communicate()


def _staging(d: Path) -> list[str]:
    try:
        return [n for n in os.listdir(d) if ".tmp-" in n]
    except OSError:
        return []


def test_kill_9_trainer_mid_checkpoint_then_resume(world, tmp_path, capsys):
    """kill -9 while a checkpoint is being written (its staging dir exists): latest still names a
    complete checkpoint, the lock does not block, the resume removes the leftovers, drops the
    metrics rows logged after the checkpoint, and continues."""
    run = tmp_path / "run"
    p = _spawn_train(world, run, 0, 100000, checkpoint_interval=3, log_interval=1)

    def mid_save():
        latest = run / "latest"
        return (latest.is_file() and int(latest.read_text().strip()[-7:]) >= 9
                and bool(_staging(run / "checkpoints")))
    _kill_when(p, mid_save, what="a checkpoint being written")
    left = _staging(run / "checkpoints")
    ck = latest_ckpt(run)
    meta = checkpoint.read_meta(ck)
    for name in meta["files"]:
        checkpoint.verify(ck / name, meta)
    load_checkpoint(run)
    done = meta["step"]
    out = expect_ok(capsys, world.train(run, resume=True, steps=done + 6, checkpoint_interval=3, log_interval=1))
    assert "note: took over the lock" in out
    if left:
        assert "note: removed" in out, (left, out)
    steps = train_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == done + 6  # no duplicate rows after the resume
    assert load_checkpoint(run).meta["step"] == done + 6 and leftovers(run) == []


# ====================================================================== (5) atomic replacement, stale temporaries
def _tree(d: Path, content: str):
    d.mkdir()
    (d / "a.txt").write_text(content)
    (d / "sub").mkdir()
    (d / "sub" / "b.txt").write_text(content * 2)


@pytest.mark.parametrize("mode", ["exchange", "fallback"])
def test_replace_dir_swaps_in_the_new_directory(tmp_path, monkeypatch, mode):
    if mode == "fallback":
        monkeypatch.setattr(storage, "_exchange", lambda a, b: False)
    final = tmp_path / "d"
    _tree(final, "old")
    tmp = storage.staging_dir(final)
    assert tmp.name.startswith(f".d.tmp-{storage._HOST}-{os.getpid()}-")
    (tmp / "a.txt").write_text("new")
    storage.replace_dir(tmp, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert (final / "a.txt").read_text() == "new" and not (final / "sub").exists()


def test_replace_dir_fallback_puts_the_old_directory_back_on_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "_exchange", lambda a, b: False)
    final = tmp_path / "d"
    _tree(final, "old")
    before = snapshot(final)
    tmp = storage.staging_dir(final)
    real_rename = os.rename

    def rename(src, dst):
        if Path(src) == tmp:
            raise OSError(28, "No space left on device (injected)")
        return real_rename(src, dst)
    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        storage.replace_dir(tmp, final)
    monkeypatch.setattr(os, "rename", real_rename)
    assert snapshot(final) == before
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]


def _tag(name, kind, host=None, pid=999999):
    return f".{name}.{kind}-{host or storage._HOST}-{pid}-abcd1234"


CLEAN_STALE = [
    # (entries to create, name filter, expected remaining entries (sorted), restored content of 'd' or None)
    ([("tmp", "d", None, 999999)], "d", [], None),
    ([("old", "d", None, 999999)], "d", ["d"], "old"),                         # d missing: put back
    ([("old", "d", None, 999999), ("d",)], "d", ["d"], "current"),             # d present: the old copy goes
    ([("tmp", "d", None, "SELF")], "d", ["TAG"], None),                        # a live writer's work: kept
    ([("tmp", "d", "otherhost", 999999)], "d", ["TAG"], None),                 # another host: cannot tell, kept
    ([("tmp", "e", None, 999999)], "d", ["TAG"], None),                        # another name: not ours to clean
    ([("tmp", "e", None, 999999), ("old", "d", None, 999999)], None, ["d"], "old"),  # no filter: everything dead
]


@pytest.mark.parametrize("entries,name,remaining,restored", CLEAN_STALE)
def test_clean_stale_removes_dead_writers_leftovers(tmp_path, entries, name, remaining, restored):
    tags = []
    for e in entries:
        if e == ("d",):
            _tree(tmp_path / "d", "current")
            continue
        kind, target, host, pid = e
        tag = _tag(target, kind, host, os.getpid() if pid == "SELF" else pid)
        _tree(tmp_path / tag, "old")
        tags.append(tag)
    done = storage.clean_stale(tmp_path, name)
    got = sorted(p.name for p in tmp_path.iterdir())
    want = sorted(tags[0] if r == "TAG" else r for r in remaining)
    assert got == want, done
    if restored is not None:
        assert (tmp_path / "d" / "a.txt").read_text() == restored


def test_build_after_a_crash_cleans_the_leftovers(world, tmp_path, capsys):
    target = world.data_copy(tmp_path / "d")
    for kind in ("tmp", "old"):
        _tree(tmp_path / _tag("d", kind), "stale")
    (tmp_path / _tag("d", "tmp", pid=os.getpid() + 10**6)).mkdir()  # a dead PID that was never used
    expect_ok(capsys, ["build", "sudoku", "--box", "2x2", "--num-train", "10", "--num-test", "5", "--seed", "3",
                       "--out", target, "--overwrite"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and load_split(target, "train").num_groups == 10


def test_a_dataset_left_renamed_aside_by_a_crash_is_restored(world, tmp_path, capsys):
    aside = world.data_copy(tmp_path / _tag("d", "old"))
    old = snapshot(aside)
    _tree(tmp_path / _tag("d", "tmp"), "half-written")
    target = tmp_path / "d"
    # Without --overwrite the restored dataset must not be replaced.
    expect_error(capsys, ["build", "sudoku", "--box", "2x2", "--num-train", "10", "--num-test", "5", "--out", target],
                 "--overwrite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and snapshot(target) == old


def test_resume_removes_stale_checkpoint_temporaries(world, tmp_path, capsys):
    run = world.run_copy(tmp_path / "run")
    stale = run / "checkpoints" / ".step_0000012.tmp-anything"
    shutil.copytree(latest_ckpt(run), stale)
    (run / ".latest.x1y2z3").write_text("checkpoints/step_0000012\n")
    (run / "checkpoints" / ".step_0000004.old-host-1-ab").mkdir()
    out = expect_ok(capsys, world.train(run, resume=True, steps=10, checkpoint_interval=4, log_interval=2))
    assert "note: removed" in out
    assert leftovers(run) == [] and (run / "latest").read_text().strip() == "checkpoints/step_0000010"


def test_resuming_a_finished_run_rewrites_its_final_checkpoint_safely(world, tmp_path, capsys):
    run = world.run_copy(tmp_path / "run")
    expect_ok(capsys, world.train(run, resume=True, steps=8, checkpoint_interval=4, log_interval=2))
    assert load_checkpoint(run).meta["step"] == 8 and leftovers(run) == []
    assert train_steps(run) == sorted(set(train_steps(run)))


@pytest.mark.parametrize("when", ["staging-dir-appears", "dataset-json-staged", "after-1.8s"])
def test_kill_9_during_a_dataset_rebuild_leaves_the_old_or_the_new_dataset(world, tmp_path, when):
    target = world.data_copy(tmp_path / "d")
    old = snapshot(target)
    argv = [PY, "-m", "recursa", "build", "sudoku", "--box", "2x2", "--num-train", "2000", "--num-aug", "3",
            "--num-test", "50", "--seed", "5", "--out", str(target), "--overwrite"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    ready = {"staging-dir-appears": lambda: bool(_staging(tmp_path)),
             "dataset-json-staged": lambda: any((tmp_path / n / "test" / "dataset.json").exists()
                                                for n in _staging(tmp_path)),
             "after-1.8s": lambda: time.time() - t0 > 1.8}[when]
    # The windows are short: a build that finishes first must also leave a complete dataset.
    _kill_when(p, ready, what=when, may_finish=True)
    s = load_split(target, "train")  # a complete dataset is always at the path: the old one or the new one
    assert snapshot(target) == old or s.num_groups == 2000
    storage.clean_stale(tmp_path, "d")  # what the next writer does first
    assert sorted(x.name for x in tmp_path.iterdir()) == ["d"]
    assert snapshot(target) == old or load_split(target, "train").num_groups == 2000


def test_two_concurrent_builds_into_one_out(world, tmp_path):
    out = tmp_path / "d"
    argv = [PY, "-m", "recursa", "build", "sudoku", "--box", "2x2", "--num-train", "300", "--num-aug", "1",
            "--num-test", "20", "--out", str(out), "--overwrite"]
    procs = [subprocess.Popen(argv + ["--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    s = load_split(out, "train")
    assert s.num_groups == 300 and load_split(out, "test").num_examples == 20
    assert json.loads((out / "task.json").read_text())["seed"] in (1, 2)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["d"]


# ====================================================================== (6) --resume errors
def _ts_json(run):
    return latest_ckpt(run) / "train_state.json"


def _ts_st(run):
    return latest_ckpt(run) / "train_state.safetensors"


def _truncate(p, n=300):
    p.write_bytes(p.read_bytes()[:n])


def _drop_json_key(run, key, rehashed):
    p = _ts_json(run)
    state = json.loads(p.read_text())
    del state[key]
    p.write_text(json.dumps(state))
    if rehashed:
        rehash(p.parent, p.name)


def _drop_tensor(run, key, rehashed):
    p = _ts_st(run)
    t = load_file(str(p))
    del t[key]
    save_file(t, str(p))
    if rehashed:
        rehash(p.parent, p.name)


def _json_list(run):
    p = _ts_json(run)
    p.write_text("[1, 2]")
    rehash(p.parent, p.name)


def _other_dataset(run, tmp_path):
    other = tmp_path / "other-data"
    build_sudoku(other, box_rows=2, box_cols=2, num_train=50, num_test=20, num_aug=1, seed=0, log=lambda *a: None)
    return sets(data=other)


RESUME = [
    ("batch-size", None, sets(batch_size=8), ["train.batch_size = 8 differs from the checkpoint's 16", "config.json"]),
    ("optimizer", None, sets(optimizer="adamw"), ['train.optimizer = "adamw" differs from the checkpoint\'s "adam_atan2"']),
    ("ema", None, sets(ema=False), ["train.ema = false differs from the checkpoint's true"]),
    ("model", None, ["--set", "model.hidden_size=64"], ["[model] section differs"]),
    ("dataset", "other-data", [], ["resume on the same dataset"]),
    ("ts-json-truncated", lambda r: _truncate(_ts_json(r)), [], ["train_state.json", "checksum mismatch"]),
    ("ts-json-binary", lambda r: _ts_json(r).write_bytes(b"\x80\xff" * 50), [], ["train_state.json"]),
    ("ts-json-missing", lambda r: _ts_json(r).unlink(), [], ["train_state.json", "missing"]),
    ("ts-json-no-sampler", lambda r: _drop_json_key(r, "sampler", False), [], ["train_state.json", "checksum mismatch"]),
    ("ts-json-no-sampler-rehashed", lambda r: _drop_json_key(r, "sampler", True), [], ["train_state.json", "'sampler'"]),
    ("ts-json-no-step-rehashed", lambda r: _drop_json_key(r, "step", True), [], ["train_state.json", "'step'"]),
    ("ts-json-list-rehashed", _json_list, [], ["train_state.json", "expected a JSON object"]),
    ("ts-missing-tensor", lambda r: _drop_tensor(r, "rng.torch", False), [],
     ["train_state.safetensors", "checksum mismatch"]),
    ("ts-missing-tensor-rehashed", lambda r: _drop_tensor(r, "rng.torch", True), [],
     ["train_state.safetensors", "missing tensor 'rng.torch'"]),
    ("ts-missing-carry-rehashed", lambda r: _drop_tensor(r, "carry.steps", True), [],
     ["train_state.safetensors", "carry.steps"]),
    ("ts-safetensors-missing", lambda r: _ts_st(r).unlink(), [], ["train_state.safetensors", "missing"]),
    ("ts-safetensors-truncated", lambda r: _truncate(_ts_st(r), 100), [], ["train_state.safetensors"]),
    ("config-json-binary", lambda r: (latest_ckpt(r) / "config.json").write_bytes(b"\xff\xfe{}"), [],
     ["config.json", "not UTF-8"]),
    ("config-json-truncated", lambda r: _truncate(latest_ckpt(r) / "config.json", 40), [], ["config.json", "invalid JSON"]),
    ("latest-binary", lambda r: (r / "latest").write_bytes(b"\xff"), [], ["latest", "not UTF-8"]),
    ("latest-dangling", lambda r: (r / "latest").write_text("checkpoints/step_0000099\n"), [],
     ["latest", "which is not a checkpoint"]),
    ("latest-deleted", lambda r: (r / "latest").unlink(), [], ["nothing to resume"]),
]


@pytest.mark.parametrize("name,damage,extra,fragments", RESUME, ids=[c[0] for c in RESUME])
def test_resume_errors_name_the_file_and_keep_the_run(world, tmp_path, capsys, name, damage, extra, fragments):
    run = world.run_copy(tmp_path / "run")
    if damage == "other-data":
        extra = _other_dataset(run, tmp_path)
    elif damage is not None:
        damage(run)
    before = snapshot(run)
    expect_error(capsys, world.train(run, *extra, resume=True, steps=12, checkpoint_interval=4, log_interval=2),
                 *fragments)
    assert snapshot(run) == before


def test_resume_needs_a_run_and_a_run_needs_resume(world, tmp_path, capsys):
    expect_error(capsys, world.train(tmp_path / "none", resume=True, steps=4), "nothing to resume")
    assert not (tmp_path / "none").exists()
    run = world.run_copy(tmp_path / "run")
    before = snapshot(run)
    expect_error(capsys, world.train(run, steps=4), "already has checkpoints", "--resume")
    assert snapshot(run) == before


# ====================================================================== (7) build sudoku: hangs, --num-test 0
BUILD_COUNTS = [
    (["--givens", "16", "--num-train", "289", "--num-test", "0"], ["--num-test"]),
    (["--givens", "16", "--num-train", "289", "--num-test", "1"], ["288"]),
    (["--givens", "16", "--num-train", "200", "--num-test", "100"], ["288"]),
    (["--givens", "16", "--num-train", "288", "--num-test", "0"], ["--num-test 0"]),
    (["--num-train", "50", "--num-test", "0"], ["--num-test 0", "at least one test puzzle"]),
    (["--num-train", "10", "--num-aug", "1000000000000"], ["memory"]),
    (["--num-train", "1000000000000", "--num-test", "10"], ["memory"]),
    (["--num-train", "0"], ["--num-train"]),
    (["--seed", "-1"], ["argument --seed"]),
    (["--num-train", "abc"], ["argument --num-train"]),
    (["--num-train", "-5"], ["argument --num-train"]),
    (["--givens", "99"], ["--givens 99"]),
    (["--box", "4x4"], ["N = rows*cols must be in 2..9"]),
    (["--box", "2by3"], ["--box '2by3'"]),
]


@pytest.mark.parametrize("args,fragments", BUILD_COUNTS, ids=[" ".join(a) for a, _ in BUILD_COUNTS])
def test_build_sudoku_impossible_counts_fail_fast(tmp_path, capsys, args, fragments):
    out = tmp_path / "x"
    base = {"--box": "2x2", "--num-train": "10", "--num-test": "5"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["build", "sudoku", *[x for kv in base.items() for x in kv], "--out", out]
    t0 = time.perf_counter()
    with deadline(60):
        expect_error(capsys, argv, *fragments)
    assert time.perf_counter() - t0 < 60 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,fragments", [
    (["--num-test", "0"], ["at least one test list"]),
    (["--num-train", "10", "--num-aug", "1000000000000"], ["memory"]),
    (["--length", "1"], ["length"]),
])
def test_build_sorting_bad_counts(tmp_path, capsys, args, fragments):
    out = tmp_path / "x"
    with deadline(60):
        expect_error(capsys, ["build", "sorting", "--num-train", "10", "--num-test", "5", *args, "--out", out], *fragments)
    assert list(tmp_path.iterdir()) == []


# ====================================================================== (8) tracebacks -> errors
def _bin(p: Path):
    p.write_bytes(b"\xff\xfe\x00garbage\x80" + bytes(range(128, 256)))


NON_UTF8 = [
    # (what, how to run it) -> the file is named and 'not UTF-8' is said
    ("checkpoint-config.json-eval", "eval", lambda w, t: latest_ckpt(t["run"]) / "config.json"),
    ("latest-eval", "eval", lambda w, t: t["run"] / "latest"),
    ("dataset.json-train", "train", lambda w, t: t["data"] / "train" / "dataset.json"),
    ("dataset.json-eval", "eval", lambda w, t: t["data"] / "test" / "dataset.json"),
    ("task.json-train", "train", lambda w, t: t["data"] / "task.json"),
    ("task.json-eval", "eval", lambda w, t: t["data"] / "task.json"),
    ("toml-recipe", "train", lambda w, t: t["cfg"]),
    ("solve-file", "solve", lambda w, t: t["puzzles"]),
    ("identifiers", "import", lambda w, t: t["ids"]),
]


@pytest.mark.parametrize("name,cmd,which", NON_UTF8, ids=[c[0] for c in NON_UTF8])
def test_non_utf8_files_are_one_error_line(world, official, tmp_path, capsys, name, cmd, which):
    t = {"run": world.run_copy(tmp_path / "run"), "data": world.data_copy(tmp_path / "data"),
         "cfg": tmp_path / "c.toml", "puzzles": tmp_path / "p.txt", "ids": tmp_path / "ids.json"}
    t["cfg"].write_text(TINY_TOML.format(data=t["data"].as_posix(), out=(tmp_path / "newrun").as_posix()))
    t["puzzles"].write_text("1...  ..2.  .3..  ...4\n")
    t["ids"].write_text('["<blank>"]')
    bad = which(world, t)
    _bin(bad)
    before = snapshot(tmp_path)
    argv = {
        "eval": ["eval", t["run"], "--data", t["data"], "--limit", "5"],
        "train": ["train", t["cfg"], "--quiet", *sets(steps=3)],
        "solve": ["solve", world.good, "--file", t["puzzles"]],
        "import": ["import-official", official[0], "--config", official[1], "--seq-len", "81", "--identifiers", t["ids"],
                   "--out", tmp_path / "imp"],
    }[cmd]
    expect_error(capsys, argv, str(bad), "not UTF-8")
    assert snapshot(tmp_path) == before  # no run dir, no checkpoint, nothing partial


def test_sudoku_extreme_source_not_text(tmp_path, capsys):
    src = tmp_path / "train.csv"
    _bin(src)
    expect_error(capsys, ["build", "sudoku-extreme", "--source", src, "--out", tmp_path / "d"], str(src))
    assert not (tmp_path / "d").exists()


DEVICE_AND_NUMBERS = [
    ("solve-cuda", lambda w: ["solve", w.good, "--puzzle", "1...  ..2.  .3..  ...4", "--device", "cuda"],
     ["no usable CUDA device"]),
    ("solve-cuda-4095", lambda w: ["solve", w.good, "--puzzle", "1...  ..2.  .3..  ...4", "--device", "cuda:4095"],
     ["CUDA device"]),
    ("solve-bogus", lambda w: ["solve", w.good, "--puzzle", "1...  ..2.  .3..  ...4", "--device", "bogus"], ["bogus"]),
    ("solve-superscript", lambda w: ["solve", w.good, "--puzzle", "2..1...2....1..²"], ["'²' is not a digit"]),
    ("solve-fullwidth", lambda w: ["solve", w.good, "--puzzle", "１...  ..2.  .3..  ...4"], ["is not a digit"]),
    ("solve-steps-negative", lambda w: ["solve", w.good, "--puzzle", "1...  ..2.  .3..  ...4", "--steps", "-1"],
     ["--steps"]),
    ("solve-missing-ckpt", lambda w: ["solve", w.root / "nope", "--puzzle", "1..."], ["checkpoint not found"]),
    ("train-cuda", lambda w: ["train", w.cfg, "--quiet", *sets(device="cuda", out=w.root / "t-cuda")],
     ["no usable CUDA device"]),
    ("train-cuda-4095", lambda w: ["train", w.cfg, "--quiet", *sets(device="cuda:4095", out=w.root / "t-cuda2")],
     ["train.device"]),
    ("train-device-bogus", lambda w: ["train", w.cfg, "--quiet", *sets(device="bogus", out=w.root / "t-bogus")],
     ["train.device"]),
    ("train-num-threads-negative", lambda w: ["train", w.cfg, "--quiet", *sets(num_threads=-1, out=w.root / "t-nt")],
     ["train.num_threads=-1"]),
    ("train-num-threads-huge", lambda w: ["train", w.cfg, "--quiet", *sets(num_threads=10**9, out=w.root / "t-nt2")],
     ["train.num_threads"]),
    ("train-seed-negative", lambda w: ["train", w.cfg, "--quiet", *sets(seed=-1, out=w.root / "t-seed")],
     ["train.seed=-1"]),
    ("train-seed-huge", lambda w: ["train", w.cfg, "--quiet", *sets(seed=2**70, out=w.root / "t-seed2")],
     ["train.seed"]),
    ("train-hidden-size-2^40", lambda w: ["train", w.cfg, "--quiet", "--set", "model.hidden_size=1099511627776",
                                          *sets(out=w.root / "t-hs")], ["model.hidden_size", "too large"]),
    ("train-checkpoint-interval-negative", lambda w: ["train", w.cfg, "--quiet",
                                                      *sets(checkpoint_interval=-5, out=w.root / "t-ci")],
     ["train.checkpoint_interval=-5"]),
    ("train-batch-size-huge", lambda w: ["train", w.cfg, "--quiet", *sets(batch_size=2**40, out=w.root / "t-bs")],
     ["train.batch_size"]),
    ("train-config-is-a-dir", lambda w: ["train", w.root, "--quiet"], ["is a directory"]),
    ("train-config-missing", lambda w: ["train", w.root / "none.toml"], ["not found"]),
    ("build-seed-negative", lambda w: ["build", "sudoku", "--seed", "-1", "--out", w.root / "b-seed"], ["--seed"]),
]


@pytest.mark.parametrize("name,argv,fragments", cases([(c[0], *c) for c in DEVICE_AND_NUMBERS],
                                                       needs_no_cuda={"solve-cuda", "train-cuda"}))
def test_options_that_used_to_crash_are_one_error_line(world, capsys, name, argv, fragments):
    before = sorted(p.name for p in world.root.iterdir())
    _, out = expect_error(capsys, argv(world), *fragments)
    assert sorted(p.name for p in world.root.iterdir()) == before  # no run dir, no dataset
    if name.startswith("solve"):
        assert out == ""  # every puzzle is checked before any output


@pytest.mark.parametrize("content,fragment", [
    ("2..1...2....1..²\n", "line 2: position 16"),
    ("1...  ..2.  .3..  ...4\n1.1.  ..2.  .3..  ...4\n", "line 2"),
    ("1...  ..2.  .3..  ...4\n\x00\x01\n", "line 2"),
    ("# only a comment\n\n", "no puzzles"),
    ("", "no puzzles"),
], ids=["superscript", "repeated-digit", "control-chars", "comments-only", "empty"])
def test_solve_file_errors_name_the_line_and_print_nothing(world, tmp_path, capsys, content, fragment):
    f = tmp_path / "p.txt"
    if "²" in content:
        content = "1...  ..2.  .3..  ...4\n" + content
    f.write_text(content)
    _, out = expect_error(capsys, ["solve", world.good, "--file", f], str(f), fragment)
    assert out == ""


def test_solve_file_that_is_a_directory(world, tmp_path, capsys):
    expect_error(capsys, ["solve", world.good, "--file", tmp_path], str(tmp_path), "directory")


def _edit_json(path: Path, fn):
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


DATASET_JSON = [
    ("vocab_size-str", lambda m: m.update(vocab_size="six"), "vocab_size"),
    ("vocab_size-float", lambda m: m.update(vocab_size=6.5), "vocab_size"),
    ("vocab_size-zero", lambda m: m.update(vocab_size=0), "vocab_size"),
    ("seq_len-null", lambda m: m.update(seq_len=None), "seq_len"),
    ("num_puzzle_identifiers-str", lambda m: m.update(num_puzzle_identifiers="x"), "num_puzzle_identifiers"),
    ("ignore_label_id-str", lambda m: m.update(ignore_label_id="x"), "ignore_label_id"),
    ("mean_puzzle_examples-str", lambda m: m.update(mean_puzzle_examples="x"), "mean_puzzle_examples"),
    ("mean_puzzle_examples-nan", lambda m: m.update(mean_puzzle_examples=float("nan")), "mean_puzzle_examples"),
    ("sets-empty", lambda m: m.update(sets=[]), "sets"),
    ("sets-path", lambda m: m.update(sets=["../../etc/passwd"]), "sets"),
    ("sets-str", lambda m: m.update(sets="all"), "sets"),
    ("pad_id-list", lambda m: m.update(pad_id=[0]), "pad_id"),
    ("total_groups-wrong", lambda m: m.update(total_groups=7), "total_groups"),
    ("missing-key", lambda m: m.pop("vocab_size"), "vocab_size"),
    ("not-an-object", None, "expected a JSON object"),
]


@pytest.mark.parametrize("cmd", ["train", "eval"])
@pytest.mark.parametrize("name,edit,fragment", DATASET_JSON, ids=[c[0] for c in DATASET_JSON])
def test_wrong_types_in_dataset_json(world, tmp_path, capsys, cmd, name, edit, fragment):
    data = world.data_copy(tmp_path / "data")
    split = "train" if cmd == "train" else "test"
    path = data / split / "dataset.json"
    if edit is None:
        path.write_text("[1, 2, 3]")
    else:
        _edit_json(path, edit)
    before = snapshot(tmp_path)
    if cmd == "train":
        argv = world.train(tmp_path / "run", *sets(data=data), steps=0, epochs=1)
    else:
        argv = ["eval", world.good, "--data", data, "--limit", "5"]
    expect_error(capsys, argv, str(path), fragment)
    assert snapshot(tmp_path) == before


TASK_JSON = [
    ("list", "[1]", "expected a JSON object"),
    ("unknown-task", '{"task": "chess"}', "chess"),
    ("task-number", '{"task": 3}', "'task'"),
    ("params-list", '{"task": "sudoku", "params": [2, 2]}', "'params'"),
    ("params-str", '{"task": "sudoku", "params": {"box_rows": "x", "box_cols": 2}}', "sudoku"),
    ("params-unknown", '{"task": "sudoku", "params": {"rows": 2}}', "sudoku"),
    ("params-huge", '{"task": "sudoku", "params": {"box_rows": 100, "box_cols": 100}}', "box"),
    ("box3x3", '{"task": "sudoku", "params": {"box_rows": 3, "box_cols": 3}}', "task.json"),
    ("buckets-str", '{"task": "sudoku", "params": {"box_rows": 2, "box_cols": 2}, "rating_buckets": "x"}',
     "rating_buckets"),
    ("buckets-decreasing", '{"task": "sudoku", "params": {"box_rows": 2, "box_cols": 2}, "rating_buckets": [3, 1]}',
     "rating_buckets"),
    ("empty", "", "invalid JSON"),
]


# eval takes the task from the checkpoint: it reads task.json only for its form and rating buckets
TASK_JSON_READ_BY_EVAL = {"list", "task-number", "params-list", "buckets-str", "buckets-decreasing", "empty"}
TASK_JSON_CASES = [(cmd, *c) for c in TASK_JSON for cmd in ("train", "eval")
                   if cmd == "train" or c[0] in TASK_JSON_READ_BY_EVAL]


@pytest.mark.parametrize("cmd,name,text,fragment", TASK_JSON_CASES, ids=[f"{c[1]}-{c[0]}" for c in TASK_JSON_CASES])
def test_wrong_task_json(world, tmp_path, capsys, cmd, name, text, fragment):
    data = world.data_copy(tmp_path / "data")
    (data / "task.json").write_text(text)
    before = snapshot(tmp_path)
    if cmd == "train":
        argv = world.train(tmp_path / "run", *sets(data=data), steps=3)
    else:
        argv = ["eval", world.good, "--data", data, "--limit", "5"]
    expect_error(capsys, argv, fragment)
    assert snapshot(tmp_path) == before


CKPT_CONFIG = [
    ("spec-vocab-str", lambda m: m["spec"].update(vocab_size="six"), "vocab_size"),
    ("spec-missing", lambda m: m.pop("spec"), "spec"),
    ("task-box3x3", lambda m: m.update(task={"task": "sudoku", "params": {"box_rows": 3, "box_cols": 3}}), "config.json"),
    ("task-unknown", lambda m: m.update(task={"task": "chess"}), "chess"),
    ("config-list", lambda m: m.update(config=[1]), "config"),
    ("config-unknown-key", lambda m: m["config"]["model"].update(bogus=1), "bogus"),
    ("step-negative", lambda m: m.update(step=-3), "step"),
    ("format-version", lambda m: m.update(format_version=99), "format"),
    ("files-not-dict", lambda m: m.update(files=["x"]), "files"),
]


@pytest.mark.parametrize("cmd", ["eval", "solve"])
@pytest.mark.parametrize("name,edit,fragment", CKPT_CONFIG, ids=[c[0] for c in CKPT_CONFIG])
def test_wrong_types_in_checkpoint_config_json(world, tmp_path, capsys, cmd, name, edit, fragment):
    ck = shutil.copytree(latest_ckpt(world.good), tmp_path / "ck")
    _edit_json(ck / "config.json", edit)
    before = snapshot(tmp_path)
    argv = (["eval", ck, "--data", world.data, "--limit", "5"] if cmd == "eval"
            else ["solve", ck, "--puzzle", "1...  ..2.  .3..  ...4"])
    expect_error(capsys, argv, fragment)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", ["train-out-file", "train-out-user-dir", "train-out-dot", "train-out-dangling-link"])
def test_train_out_that_is_not_a_run_directory(world, tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "out"
    if case == "train-out-file":
        target.write_text("precious")
        frag = "exists and is not a directory"
    elif case == "train-out-user-dir":
        _user_dir(target, world)
        frag = "is not a recursa run directory"
    elif case == "train-out-dot":
        target = Path(".")
        (tmp_path / "mine.txt").write_text("mine")
        frag = "current directory"
    else:
        target.symlink_to(tmp_path / "nowhere")
        frag = "dangling"
    before = snapshot(tmp_path)
    expect_error(capsys, world.train(target, steps=3), frag)
    assert snapshot(tmp_path) == before


def test_an_unexpected_bug_is_one_internal_error_line_and_debug_shows_the_traceback(world, capsys, monkeypatch):
    import recursa.evaluation.checkpoints as ev

    def bug(*a, **k):
        raise KeyError("injected bug")
    monkeypatch.setattr(ev, "evaluate", bug)
    argv = ["eval", world.good, "--data", world.data, "--limit", "5"]
    expect_error(capsys, argv, "internal error", "KeyError", "--debug", code=1)
    with pytest.raises(KeyError, match="injected bug"):
        main(["--debug", *map(str, argv)])


# ---------------------------------------------------------------------- OS errors on real small disks
@functools.lru_cache(maxsize=1)
def _namespace_prefix():
    """The unshare command that lets us mount a tmpfs (None when this machine allows none)."""
    if not shutil.which("unshare"):
        return None
    probe = tempfile.mkdtemp(prefix="recursa-mnt-probe-")
    try:
        for prefix in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
            try:
                r = subprocess.run(prefix + ["sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0" && touch "$0/x"', probe],
                                   capture_output=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if r.returncode == 0:
                return prefix
        return None
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def in_mount(tmp_path: Path, steps: list[dict]) -> list[dict]:
    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (no `unshare --mount` or user namespaces); "
                    "the RLIMIT_FSIZE variant covers a failing writer")
    spec, res = tmp_path / "spec.json", tmp_path / "result.json"
    spec.write_text(json.dumps(steps, default=str))
    r = subprocess.run(prefix + [PY, str(HELPER), str(spec), str(res)], capture_output=True, text=True, timeout=300,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(res.read_text())
    assert len(results) == len(steps)
    for st, rs in zip(steps, results):
        if st["op"] in ("mount", "remount_ro"):
            assert rs["rc"] == 0, rs
        if st["op"] in ("main", "cli"):
            assert rs["exc"] is None, rs["exc"]
    return results


def _main_failed(rs: dict, *fragments):
    assert rs["rc"] == 2, rs
    one_error_line(rs["err"], *fragments)


def test_full_disk_while_building_a_dataset(world, tmp_path):
    fresh, old = tmp_path / "m1", tmp_path / "m2"
    fresh.mkdir(), old.mkdir()
    big = ["build", "sudoku", "--box", "2x2", "--num-train", "2000", "--num-aug", "7", "--num-test", "10"]
    small = ["build", "sudoku", "--box", "2x2", "--num-train", "20", "--num-test", "5", "--out", str(old / "d")]
    r = in_mount(tmp_path, [
        {"op": "mount", "dir": str(fresh), "opts": "size=256k"},
        {"op": "cli", "argv": big + ["--out", str(fresh / "d")]},
        {"op": "listing", "dir": str(fresh)},
        {"op": "mount", "dir": str(old), "opts": "size=256k"},
        {"op": "main", "argv": small},
        {"op": "listing", "dir": str(old)},
        {"op": "main", "argv": big + ["--out", str(old / "d"), "--overwrite"]},
        {"op": "listing", "dir": str(old)},
    ])
    assert r[1]["rc"] == 2 and r[6]["rc"] == 2 and r[4]["rc"] == 0, (r[1], r[4], r[6])
    assert {k: v for k, v in r[2].items() if k != "op"} == {}  # nothing partial
    assert r[7] == r[5]  # the previous dataset is intact, nothing else there
    _main_failed(r[6], str(old / "d"), "No space left on device")
    _main_failed(r[1], str(fresh / "d"), "No space left on device")


def test_full_disk_while_writing_a_training_checkpoint(world, tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    run = m / "run"
    train = world.train(run, steps=4, checkpoint_interval=2, log_interval=2, keep_checkpoints=1)
    more = world.train(run, resume=True, steps=8, checkpoint_interval=2, log_interval=2, keep_checkpoints=1)
    r = in_mount(tmp_path, [
        {"op": "mount", "dir": str(m), "opts": "size=8m"},
        {"op": "main", "argv": train},
        {"op": "check_run", "run": str(run)},
        {"op": "fill", "path": str(m / "filler"), "leave": 200_000},
        {"op": "main", "argv": more},
        {"op": "check_run", "run": str(run)},
        {"op": "listing", "dir": str(run)},
        {"op": "rm", "path": str(m / "filler")},
        {"op": "main", "argv": more},
        {"op": "check_run", "run": str(run)},
    ])
    assert r[1]["rc"] == 0 and r[2]["ok"] and r[2]["step"] == 4, r[:3]
    _main_failed(r[4], "No space left on device")
    assert r[5]["ok"] and r[5]["step"] == 4 and r[5]["finite"], r[5]  # latest still names a valid checkpoint
    names = [k for k in r[6] if k != "op"]
    assert not [n for n in names if ".tmp" in n or ".old-" in n or "/." in n or n.startswith(".latest")], names
    assert r[8]["rc"] == 0, r[8]  # after freeing space the run continues
    assert r[9]["ok"] and r[9]["step"] == 8


READ_ONLY_TARGETS = ("d", "new", "e.json", "run", "imp")


@pytest.fixture(scope="module")
def read_only(world, official, tmp_path_factory):
    """Commands writing to a tmpfs remounted read-only: replacing a dataset, a new dataset, an eval
    report, a run directory, an imported checkpoint. Returns (mount dir, results)."""
    tmp = tmp_path_factory.mktemp("ro")
    m = tmp / "m"
    m.mkdir()
    small = ["build", "sudoku", "--box", "2x2", "--num-train", "20", "--num-test", "5"]
    r = in_mount(tmp, [
        {"op": "mount", "dir": str(m), "opts": "size=1m"},
        {"op": "main", "argv": small + ["--out", str(m / "d")]},
        {"op": "listing", "dir": str(m)},
        {"op": "remount_ro", "dir": str(m)},
        {"op": "main", "argv": small + ["--seed", "1", "--out", str(m / "d"), "--overwrite"]},
        {"op": "main", "argv": small + ["--out", str(m / "new")]},
        {"op": "main", "argv": ["eval", str(world.good), "--data", str(world.data), "--limit", "5",
                                "--json", str(m / "e.json")]},
        {"op": "main", "argv": world.train(m / "run", steps=3)},
        {"op": "main", "argv": ["import-official", str(official[0]), "--config", str(official[1]), "--seq-len", "81",
                                "--out", str(m / "imp")]},
        {"op": "listing", "dir": str(m)},
    ])
    assert r[1]["rc"] == 0, r[1]
    return m, r


def test_read_only_targets(read_only):
    m, r = read_only
    assert r[9] == r[2]  # nothing changed on the read-only disk; the dataset there is intact
    for i in (4, 5, 6, 7, 8):
        _main_failed(r[i], "Read-only file system")


@pytest.mark.parametrize("i,target", list(zip((4, 5, 6, 7, 8), READ_ONLY_TARGETS)), ids=READ_ONLY_TARGETS)
def test_read_only_errors_name_the_path_the_user_gave(read_only, i, target):
    """Not a hidden staging name such as m/.d.tmp-HOST-PID-RANDOM, which no longer exists."""
    m, r = read_only
    _main_failed(r[i], str(m / target), "Read-only file system")


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_a_failing_writer_efbig_leaves_nothing(world, tmp_path):
    """The fault-injecting writer: every write past 100 kB fails with EFBIG (needs no mount)."""
    out = tmp_path / "d"
    r = subprocess.run([PY, "-m", "recursa", "build", "sudoku", "--box", "2x2", "--num-train", "2000", "--num-aug", "7",
                        "--num-test", "10", "--out", str(out)], capture_output=True, text=True, timeout=120,
                       preexec_fn=_limit_file_size, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    one_error_line(r.stderr, str(out))
    assert list(tmp_path.iterdir()) == []


def test_a_failing_writer_during_a_checkpoint_keeps_latest(world, tmp_path):
    run = world.run_copy(tmp_path / "run")
    before = snapshot(run / "checkpoints")
    argv = [PY, "-m", "recursa", *world.train(run, resume=True, steps=12, checkpoint_interval=4, log_interval=2)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size)
    assert r.returncode == 2, r.stderr
    one_error_line(r.stderr, str(run))
    assert (run / "latest").read_text().strip() == "checkpoints/step_0000008"
    assert snapshot(run / "checkpoints") == before and leftovers(run) == []
    load_checkpoint(run)


# ====================================================================== (9) silent acceptance
def _set_npy(name, fn):
    def apply(split_dir: Path):
        p = split_dir / f"all__{name}.npy"
        arr = np.load(p)
        new = fn(arr)
        if new is None:
            return
        np.save(p, new, allow_pickle=True)
    return apply


NPY = [
    ("inputs-float", _set_npy("inputs", lambda a: a.astype(np.float64) + 0.7), "all__inputs.npy"),
    ("inputs-complex", _set_npy("inputs", lambda a: a.astype(np.complex64)), "all__inputs.npy"),
    ("inputs-object", _set_npy("inputs", lambda a: a.astype(object)), "all__inputs.npy"),
    ("inputs-3d", _set_npy("inputs", lambda a: a[:, None, :]), "all__inputs.npy"),
    ("inputs-1d", _set_npy("inputs", lambda a: a.reshape(-1)), "all__inputs.npy"),
    ("inputs-wrong-seq-len", _set_npy("inputs", lambda a: a[:, :15]), "all__inputs.npy"),
    ("inputs-out-of-vocab", _set_npy("inputs", lambda a: a * 0 + 99), "all__inputs.npy"),
    ("labels-bool", _set_npy("labels", lambda a: a.astype(bool)), "all__labels.npy"),
    ("labels-negative", _set_npy("labels", lambda a: a.astype(np.int32) - 5), "all__labels.npy"),
    ("puzzle_indices-float", _set_npy("puzzle_indices", lambda a: a.astype(np.float32)), "all__puzzle_indices.npy"),
    ("group_indices-float", _set_npy("group_indices", lambda a: a.astype(np.float64)), "all__group_indices.npy"),
    ("group_indices-decreasing", _set_npy("group_indices", lambda a: a[::-1].copy()), "all__group_indices.npy"),
    ("puzzle_identifiers-2d", _set_npy("puzzle_identifiers", lambda a: a[:, None]), "all__puzzle_identifiers.npy"),
    ("puzzle_identifiers-out-of-range", _set_npy("puzzle_identifiers", lambda a: a + 7), "all__puzzle_identifiers.npy"),
    ("labels-truncated", lambda d: _truncate(d / "all__labels.npy", 100), "all__labels.npy"),
    ("labels-missing", lambda d: (d / "all__labels.npy").unlink(), "all__labels.npy"),
    ("labels-fewer-rows", _set_npy("labels", lambda a: a[:3]), "labels"),
]


@pytest.mark.parametrize("cmd", ["train", "eval"])
@pytest.mark.parametrize("name,damage,fragment", NPY, ids=[c[0] for c in NPY])
def test_npy_of_wrong_dtype_or_shape_is_refused(world, tmp_path, capsys, cmd, name, damage, fragment):
    data = world.data_copy(tmp_path / "data")
    split = "train" if cmd == "train" else "test"
    damage(data / split)
    before = snapshot(tmp_path)
    if cmd == "train":
        argv = world.train(tmp_path / "run", *sets(data=data), steps=3)
    else:
        argv = ["eval", world.good, "--data", data, "--limit", "5"]
    expect_error(capsys, argv, str(data / split), fragment)
    assert snapshot(tmp_path) == before


def _garble(path: Path, n=4096):
    data = bytearray(path.read_bytes())
    start = len(data) - n - 64
    data[start:start + n] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("cmd,file", [("eval", "model.safetensors"), ("solve", "model.safetensors"),
                                      ("resume", "train_state.safetensors")])
def test_garbled_weight_bytes_fail_the_checksum(world, tmp_path, capsys, cmd, file):
    run = world.run_copy(tmp_path / "run")
    target = latest_ckpt(run) / file
    _garble(target)
    load_file(str(target))  # still a well-formed safetensors file: only the checksum can tell
    before = snapshot(tmp_path)
    argv = {"eval": ["eval", run, "--data", world.data, "--limit", "5"],
            "solve": ["solve", run, "--puzzle", "1...  ..2.  .3..  ...4"],
            "resume": world.train(run, resume=True, steps=12, checkpoint_interval=4, log_interval=2)}[cmd]
    expect_error(capsys, argv, str(target), "checksum mismatch")
    assert snapshot(tmp_path) == before


def test_metrics_rows_logged_after_the_checkpoint_are_dropped_on_resume(world, tmp_path, capsys):
    """As if killed after logging step 8 but before its checkpoint: latest -> step 4, rows up to 8,
    and a line torn by the kill."""
    run = world.run_copy(tmp_path / "run")
    shutil.rmtree(run / "checkpoints" / "step_0000008")
    (run / "latest").write_text("checkpoints/step_0000004\n")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "train/lo')
    assert max(train_steps_lenient(run)) == 8
    out = expect_ok(capsys, world.train(run, resume=True, steps=10, checkpoint_interval=4, log_interval=2))
    assert "dropped" in out
    steps = train_steps(run)  # every line parses
    assert steps == sorted(set(steps)) and steps[-1] == 10, steps
    assert steps == [2, 4, 6, 8, 10]


def train_steps_lenient(run: Path) -> list[int]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if "train/loss" in row:
                out.append(row["step"])
    return out
