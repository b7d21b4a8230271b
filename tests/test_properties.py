"""Property-based tests (hypothesis) of every parser of user text (issue 8).

Each parser is fed arbitrary text or bytes, and text built from the characters and shapes it
expects (so that the deeper checks are reached too). The property is always the same: it parses,
or it raises recursa's own error (:class:`recursa.errors.RecursaError`, one line) -- never another
exception. Covered: puzzle strings (Sudoku 4x4 and 6x6, maze, sorting, ARC grids), the
``solve --file`` reader, ``--set`` overrides, TOML recipes, dataset.json, task.json,
identifiers.json (import-official --identifiers), a checkpoint's config.json, the benchmark CSV
reader and the ``--box`` / ``--rating-buckets`` options.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from recursa import config, storage
from recursa.cli import main
from recursa.data.format import check_task_matches, load_split
from recursa.errors import RecursaError
from recursa.tasks import ArcTask, MazeTask, SortingTask, SudokuTask, load_task, read_task_info

from .conftest import tiny_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROPS = settings(max_examples=100, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
FEW = settings(PROPS, max_examples=30)
TOO_DEEP = 2 * sys.getrecursionlimit() + 100


def parses_or_recursa_error(fn, *args, **kw):
    """Call ``fn``; a RecursaError is a fine outcome (one line), anything else fails the test."""
    try:
        return fn(*args, **kw)
    except RecursaError as e:
        assert "\n" not in str(e), f"multi-line error: {e!r}"
        return None


def cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def assert_clean_cli(rc, out, err):
    assert rc in (0, 2), f"exit {rc}: {err!r}"
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in lines[0], err


# ---------------------------------------------------------------------- strategies
def chars_text(alphabet: str, max_size: int = 60):
    return st.text(alphabet=st.sampled_from(list(alphabet)), max_size=max_size)


def exact_text(alphabet: str, n: int):
    return st.lists(st.sampled_from(list(alphabet)), min_size=n, max_size=n).map("".join)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c,
                                                                                            max_size=5),
                           max_leaves=20)

toml_values = st.one_of(
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: ("nan" if math.isnan(f) else
                                                                  ("inf" if f > 0 else "-inf") if math.isinf(f)
                                                                  else repr(f))),
    st.sampled_from(["true", "false", "nan", "+inf", "-inf", "1e999", "0x10", "1_000", "[]", "[1, 2]", '["a", 1]',
                     "{a = 1}", '"cpu"', '"cuda"', '"skip_step"', '"adamw"', '"rope"', '"trm"', "'x'", '"""x"""',
                     "1979-05-27", "[[1]]", "[" * 50, "[" * 3000 + "]" * 3000, "", "=", '"\\u0000"']),
    st.text(max_size=20).map(lambda s: json.dumps(s)),  # a TOML basic string (mostly)
    st.text(max_size=20),  # anything: falls back to a string or fails
)

KEYS = {name: [f.name for f in __import__("dataclasses").fields(cls)] for name, cls in config.SECTIONS.items()}
dotted_keys = st.one_of(
    st.sampled_from([f"{s}.{k}" for s, ks in KEYS.items() for k in ks]),
    st.sampled_from(["train", "train.", ".lr", "train..lr", "foo.bar", "model.hidden_size.x", "version", "eval.x"]),
    st.text(max_size=15),
)


# ====================================================================== puzzle strings
SUDOKU_CHARS = "123456789._0 \t\n²x１٣-"


@pytest.mark.parametrize("box", [(2, 2), (2, 3)], ids=["4x4", "6x6"])
@PROPS
@given(data=st.data())
def test_sudoku_parse(box, data):
    task = SudokuTask(*box)
    n = task.seq_len
    digits = "".join(str(d) for d in range(1, task.sudoku.N + 1))
    text = data.draw(st.one_of(st.text(max_size=80), chars_text(SUDOKU_CHARS, 80),
                               exact_text(digits + "._0", n), exact_text(digits + "." * 6, n),
                               exact_text(digits + "²x ", n)))
    got = parses_or_recursa_error(task.parse, text, "puzzle")
    if got is not None:
        assert got.shape == (n,) and got.min() >= 1 and got.max() <= task.sudoku.N + 1
    parses_or_recursa_error(task.parse, text, "puzzle", require_unique=False)


@pytest.mark.parametrize("size", [4, 5])
@PROPS
@given(data=st.data())
def test_maze_parse(size, data):
    task = MazeTask(size)
    n = size * size
    rows = st.lists(exact_text("# .SGx\t", size), min_size=size, max_size=size).map("\n".join)
    text = data.draw(st.one_of(st.text(max_size=60), chars_text("# .SG\nx²é\x00", 40), exact_text("# .SG", n),
                               exact_text("#  .SG", n), rows))
    got = parses_or_recursa_error(task.parse, text, "maze")
    if got is not None:
        assert got.shape == (n,)


@PROPS
@given(text=st.one_of(st.text(max_size=60), chars_text("0123456789 ,-+²\t.e", 40),
                      st.lists(st.integers(min_value=-3, max_value=12), max_size=10).map(lambda xs: " ".join(map(str, xs))),
                      st.lists(st.integers(min_value=1, max_value=9), min_size=8, max_size=8).map(
                          lambda xs: ",".join(map(str, xs)))))
@example(text="1 2 3 4 5 6 7 " + "9" * 5000)
@example(text="1 2 3 4 5 6 7 ²")
def test_sorting_parse(text):
    task = SortingTask()
    got = parses_or_recursa_error(task.parse, text, "puzzle")
    if got is not None:
        assert got.shape == (8,) and got.min() >= 1 and got.max() <= 9


grids = st.lists(st.lists(st.integers(min_value=-2, max_value=12), min_size=0, max_size=4), min_size=0, max_size=4)


@PROPS
@given(text=st.one_of(st.text(max_size=60), grids.map(json.dumps), json_values.map(lambda v: json.dumps(v)),
                      chars_text("[],0123456789 -.e{}\"", 40)))
@example(text="[" * TOO_DEEP)  # nested deeper than the JSON parser can go (RecursionError)
@example(text="[[1e999]]")
@example(text="[[" + "1," * 40 + "1]]")
@example(text=json.dumps([[1] * 3] * 31))
def test_arc_parse(text):
    got = parses_or_recursa_error(ArcTask().parse, text, "grid")
    if got is not None:
        assert got.shape == (ArcTask.seq_len,)


@PROPS
@given(text=st.one_of(st.text(max_size=12), chars_text("0123456789xX ", 10)))
def test_box_option(text):
    from recursa.tasks.sudoku import parse_box
    parses_or_recursa_error(parse_box, text)


@PROPS
@given(text=st.one_of(st.text(max_size=20), chars_text("0123456789,. -e", 20)))
def test_rating_buckets_option(text):
    from recursa.data.ratings import parse_buckets
    parses_or_recursa_error(parse_buckets, text)


# ====================================================================== files of puzzles
@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("props")


@pytest.fixture(scope="module")
def ckpt(tiny_data, scratch) -> Path:
    """A tiny 4x4 Sudoku checkpoint (2 training steps) for `recursa solve --file`."""
    from recursa.training.trainer import fit
    out = scratch / "run"
    fit(tiny_config(tiny_data, out, steps=2, log_interval=1), progress=False, log=lambda *a: None)
    return out


def _real_puzzles(tiny_data, k=3) -> list[str]:
    rows = np.load(tiny_data / "test" / "all__inputs.npy")[:k]
    return ["".join("." if t == 1 else str(t - 1) for t in r) for r in rows]


@FEW
@given(data=st.data())
def test_solve_file_reader(ckpt, tiny_data, scratch, data):
    real = _real_puzzles(tiny_data)
    line = st.one_of(st.sampled_from(real), st.sampled_from(["# comment", "", "   ", "1...  ..2.  .3..  ...4"]),
                     chars_text("1234._0 ²x#\t", 24), st.text(max_size=20))
    content = data.draw(st.one_of(
        st.lists(line, max_size=4).map(lambda ls: ("\n".join(ls) + "\n").encode()),
        st.binary(max_size=200),
        st.lists(line, max_size=3).map(lambda ls: "\r\n".join(ls).encode("utf-16")),
    ))
    f = scratch / "puzzles.txt"
    f.write_bytes(content)
    rc, out, err = cli(["solve", ckpt, "--file", f])
    assert_clean_cli(rc, out, err)
    if rc == 2:
        assert out == "", "output before the error"  # every puzzle is checked before any work


@PROPS
@given(content=st.one_of(
    st.binary(max_size=300),
    st.lists(st.lists(st.one_of(chars_text("0123456789.,\"x ", 20), st.text(max_size=10)), max_size=5).map(",".join),
             max_size=5).map(lambda ls: "\n".join(["source,question,answer,rating", *ls]).encode()),
    st.text(max_size=200).map(str.encode)))
def test_benchmark_csv_reader(scratch, content):
    from recursa.tasks.base import read_benchmark_csv
    f = scratch / "bench.csv"
    f.write_bytes(content)
    parses_or_recursa_error(read_benchmark_csv, f)


# ====================================================================== --set and TOML
BASE_TOML = """version = 1
[model]
hidden_size = 32
mlp_t = true
pos_encodings = "none"
[train]
data = "data"
out = "runs/x"
batch_size = 16
steps = 10
lr = 1e-3
[eval]
limit = 10
"""


@PROPS
@given(overrides=st.lists(st.one_of(st.text(max_size=40),
                                    st.tuples(dotted_keys, st.sampled_from(["=", " = ", "==", ""]), toml_values).map(
                                        lambda t: "".join(t))), min_size=1, max_size=3))
@example(overrides=["train.lr=" + "[" * 5000])
@example(overrides=["train.lr=1" + "0" * 500])
@example(overrides=["train.loggers=[1, 2]"])
@example(overrides=["model=1"])
def test_set_overrides(overrides):
    raw = tomllib.loads(BASE_TOML)
    cfg = parses_or_recursa_error(lambda: config.from_dict(config.apply_overrides(raw, overrides)))
    if cfg is not None:
        for section in ("model", "train", "eval"):
            for k, v in vars(getattr(cfg, section)).items():
                if isinstance(v, float):
                    assert math.isfinite(v), (section, k, v)


def _toml_doc(draw_sections):
    lines = []
    for name, items in draw_sections:
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in items]
    return "\n".join(lines)


toml_docs = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.lists(st.tuples(st.sampled_from(["model", "train", "eval", "foo", "train.x", "model\"", ""]),
                       st.lists(st.tuples(st.sampled_from([k for ks in KEYS.values() for k in ks] + ["bogus", "a b"]),
                                          toml_values), max_size=4)), max_size=4).map(lambda s: _toml_doc(s).encode()),
    st.tuples(st.integers(min_value=0, max_value=BASE_TOML.count("\n") - 1), toml_values).map(
        lambda t: "\n".join(line if i != t[0] or "=" not in line else line.split("=")[0] + "= " + t[1]
                            for i, line in enumerate(BASE_TOML.splitlines())).encode()),
    st.sampled_from([b"version = 2\n", b"version = 'one'\n", b"\xff\xfe[model]\n", "[model]\nhidden_size = ²\n".encode(),
                     b"a = " + b"[" * 5000, BASE_TOML.encode("utf-16"), b"[model]\n[model]\n", b"model = 3\n"]),
)


@PROPS
@given(doc=toml_docs, overrides=st.lists(st.text(max_size=20), max_size=1))
def test_toml_recipe_loader(scratch, doc, overrides):
    f = scratch / "recipe.toml"
    f.write_bytes(doc)
    parses_or_recursa_error(config.load, f, overrides)


# ====================================================================== dataset.json / task.json
@pytest.fixture(scope="module")
def dataset(tiny_data, scratch) -> Path:
    d = scratch / "data"
    shutil.copytree(tiny_data, d)
    return d


def _meta_variants(original: dict):
    keys = sorted(original) + ["extra", "total_puzzles"]

    def mutate(changes):
        meta = dict(original)
        for key, value in changes:
            if value == "<delete>":
                meta.pop(key, None)
            else:
                meta[key] = value
        return meta
    return st.lists(st.tuples(st.sampled_from(keys), st.one_of(json_values, st.just("<delete>"),
                                                                st.integers(min_value=-5, max_value=400))),
                    min_size=1, max_size=3).map(mutate)


def _write(path: Path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content))


@PROPS
@given(data=st.data())
def test_dataset_json_loader(dataset, data):
    path = dataset / "test" / "dataset.json"
    original = json.loads((dataset.parent / "orig-test-dataset.json").read_text()) if (
        dataset.parent / "orig-test-dataset.json").exists() else None
    if original is None:
        original = json.loads(path.read_text())
        (dataset.parent / "orig-test-dataset.json").write_text(json.dumps(original))
    content = data.draw(st.one_of(st.binary(max_size=100), json_values, _meta_variants(original)))
    try:
        _write(path, content)
        parses_or_recursa_error(load_split, dataset, "test")
    finally:
        path.write_text(json.dumps(original))


def _task_variants():
    params = st.one_of(json_values, st.fixed_dictionaries({"box_rows": json_scalars, "box_cols": json_scalars}),
                       st.fixed_dictionaries({"box_rows": st.integers(-2, 12), "box_cols": st.integers(-2, 12)}),
                       st.fixed_dictionaries({"size": st.integers(-1, 70)}),
                       st.fixed_dictionaries({"length": st.integers(-1, 70), "max_value": st.integers(-1, 300)}))
    return st.fixed_dictionaries({"task": st.one_of(st.sampled_from(["sudoku", "maze", "sorting", "arc", "chess", ""]),
                                                    json_scalars)},
                                 optional={"params": params,
                                           "rating_buckets": st.one_of(json_values,
                                                                       st.lists(st.floats(allow_nan=True), max_size=4))})


@PROPS
@given(content=st.one_of(st.binary(max_size=100), json_values, _task_variants()))
@example(content={"task": "sudoku", "params": {"box_rows": 2, "box_cols": 2}})
@example(content={"task": "sudoku", "params": {"box_rows": 10**20, "box_cols": 2}})
def test_task_json_loader(dataset, content):
    """What the trainer does with task.json: read it, rebuild the task, check it against the data."""
    path = dataset / "task.json"
    original = (dataset.parent / "orig-task.json")
    if not original.exists():
        original.write_bytes(path.read_bytes())
    try:
        _write(path, content)

        def use():
            info = read_task_info(dataset)
            if info:
                task = load_task({"task": info["task"], "params": info.get("params", {})})
                check_task_matches(task, load_split(dataset, "train").meta, dataset)
            return info
        parses_or_recursa_error(use)
    finally:
        path.write_bytes(original.read_bytes())


# ====================================================================== identifiers.json, checkpoint config.json
@PROPS
@given(content=st.one_of(st.binary(max_size=100), json_values, st.lists(st.text(max_size=8), max_size=5)))
@example(content=b"[" * TOO_DEEP)
def test_identifiers_json_read(scratch, content):
    f = scratch / "identifiers.json"
    _write(f, content)
    parses_or_recursa_error(storage.read_json, f, expect=list, what="identifiers file")


@pytest.fixture(scope="module")
def official(scratch):
    from .test_official import _official_files
    d = scratch / "official"
    d.mkdir()
    return _official_files(d, "trm_mlp_t")


_counter = itertools.count()


@settings(FEW, max_examples=15)
@given(content=st.one_of(st.binary(max_size=60), json_values, st.lists(st.text(max_size=8), max_size=5)))
@example(content=["<blank>"])
@example(content=["a"] * 5)
def test_import_official_identifiers(official, scratch, content):
    ckpt, cfg = official
    f = scratch / "ids.json"
    _write(f, content)
    out = scratch / f"imported-{next(_counter)}"
    rc, o, e = cli(["import-official", ckpt, "--config", cfg, "--seq-len", "81", "--identifiers", f, "--out", out])
    assert_clean_cli(rc, o, e)
    assert (rc == 0) == out.exists()
    shutil.rmtree(out, ignore_errors=True)


@FEW
@given(data=st.data())
def test_checkpoint_config_json(ckpt, scratch, data):
    from recursa.inference import checkpoint
    from recursa.inference.checkpoint import load_checkpoint
    src = checkpoint.resolve(ckpt)
    meta = json.loads((src / "config.json").read_text())
    dst = scratch / "ck"
    if not dst.exists():
        shutil.copytree(src, dst)
    keys = sorted(meta) + ["spec.vocab_size", "spec.seq_len", "task.params", "config.model", "config.train.batch_size"]

    def mutate(changes):
        m = json.loads(json.dumps(meta))
        for key, value in changes:
            *parents, last = key.split(".")
            node = m
            for p in parents:
                node = node.get(p) if isinstance(node, dict) else None
            if isinstance(node, dict):
                if value == "<delete>":
                    node.pop(last, None)
                else:
                    node[last] = value
        return m
    content = data.draw(st.one_of(
        st.binary(max_size=80), json_values,
        st.lists(st.tuples(st.sampled_from(keys), st.one_of(json_values, st.just("<delete>"))), min_size=1, max_size=2)
        .map(mutate)))
    _write(dst / "config.json", content)
    parses_or_recursa_error(load_checkpoint, dst)


def test_a_suite_of_examples_actually_parses(tiny_data):
    """Sanity: the strategies above are not all rejections (real inputs parse)."""
    for p in _real_puzzles(tiny_data):
        assert SudokuTask(2, 2).parse(p).shape == (16,)
    assert SortingTask().parse("3 1 2 9 9 1 1 4").tolist() == [3, 1, 2, 9, 9, 1, 1, 4]
    assert ArcTask().parse("[[1, 2], [3, 4]]").shape == (900,)
    assert MazeTask(4).parse("S  #\n ## \n....\n#  G").shape == (16,)
    raw = config.apply_overrides(tomllib.loads(BASE_TOML), ["train.lr=3e-4", "eval.limit=5"])
    assert config.from_dict(raw).train.lr == 3e-4
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "r.toml").write_text(BASE_TOML)
        assert config.load(Path(d) / "r.toml").model.hidden_size == 32
