"""Result records (issue 30): every results file the README and docs/ cite exists, parses and names
how it was made; runs/reproduce_readme.sh regenerates each; `recursa eval --record` and
`recursa sweep --record` write them."""

import json
import re

import pytest

from recursa.tools import results
from recursa.cli import main
from recursa.errors import RecursaError

from .conftest import REPO, tiny_config

CITE = re.compile(r"results/[A-Za-z0-9_.-]+\.json")


def _cited() -> dict[str, list[str]]:
    """results/*.json file -> the documents citing it."""
    out: dict[str, list[str]] = {}
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for name in sorted(set(CITE.findall(doc.read_text()))):
            out.setdefault(name, []).append(doc.name)
    return out


def test_every_cited_results_file_exists_and_parses():
    cited = _cited()
    assert cited, "the README cites no results file"
    for name, docs in cited.items():
        path = REPO / name
        assert path.is_file(), f"{name} (cited in {', '.join(docs)}) does not exist"
        raw = json.loads(path.read_text())
        if "schema" in raw:
            rec = results.read(path)
            for label, fig in rec["figures"].items():
                assert fig["command"].startswith(("recursa ", "python scripts/")), (name, label)
        else:  # scripts/demo_table.py's own table says how it was made
            assert isinstance(raw.get("command"), str) and raw.get("runs"), name


def test_every_results_file_is_cited_and_regenerated_by_the_reproduce_script():
    script = (REPO / "runs" / "reproduce_readme.sh").read_text()
    cited = _cited()
    for path in sorted((REPO / "results").glob("*.json")):
        name = f"results/{path.name}"
        assert name in cited, f"{name} is cited nowhere"
        assert name in script, f"{name}: runs/reproduce_readme.sh does not regenerate it"


def test_the_reproduce_script_knows_its_figures():
    import subprocess
    r = subprocess.run(["bash", str(REPO / "runs" / "reproduce_readme.sh"), "nope"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 2 and "unknown figure nope" in r.stderr
    assert subprocess.run(["bash", "-n", str(REPO / "runs" / "reproduce_readme.sh")]).returncode == 0


def test_sweep_table_in_the_readme_is_the_recorded_one():
    """The README's depth table (n x T) quotes results/sweep_depth.json's exact accuracies."""
    rec = results.read(REPO / "results" / "sweep_depth.json")
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| n = L_cycles |"):]
    table = table[:table.index("\n\n")]
    rows = {int(r.split("|")[1]): [float(x.strip().rstrip("%")) for x in r.split("|")[2:4]]
            for r in table.splitlines()[2:]}
    got = {}
    for label, fig in rec["figures"].items():
        s = fig["setting"]
        got[(int(s["L_cycles"]), int(s["H_cycles"]))] = round(100 * fig["metrics"]["exact_accuracy"], 1)
    for n, (t1, t2) in rows.items():
        assert (got[(n, 1)], got[(n, 2)]) == (t1, t2), n


def test_benchmark_tables_are_the_recorded_ones():
    """docs/benchmarks.md's speed tables are rendered from results/bench.json (scripts/bench_tables.py);
    a figure changed in the record makes the check fail."""
    import subprocess
    import sys
    script, page = REPO / "scripts" / "bench_tables.py", REPO / "docs" / "benchmarks.md"
    r = subprocess.run([sys.executable, str(script), "--check", str(page)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    text = page.read_text()
    for name in ("fp32", "official", "bf16", "changes"):
        block = text[text.index(f"<!-- bench:{name} -->"):]
        assert block.index("<!-- /bench -->") > 0 and block.count("\n|") >= 3, name  # the table has rows
    sys.path.insert(0, str(script.parent))
    try:
        import bench_tables
    finally:
        sys.path.pop(0)
    rec = results.read(REPO / "results" / "bench.json")
    fig = rec["figures"]["train-tiny-float32"]["metrics"]
    fig["samples_per_s"] = fig["samples_per_s"] * 2 + 1
    assert bench_tables.render(text, rec) != text


def test_bench_records_a_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "train", "--preset", "tiny", "--steps", "1", "--warmup", "0", "--batch", "2",
                 "--record", "res/b.json"]) == 0
    fig = results.read(tmp_path / "res" / "b.json")["figures"]["train-tiny-float32"]
    assert fig["metrics"]["samples_per_s"] > 0 and fig["protocol"]["preset"] == "tiny"
    assert fig["command"].startswith("recursa bench train --preset tiny")
    assert main(["bench", "train", "--label", "x"]) == 2
    assert "--label needs --record" in capsys.readouterr().err


def test_numerics_margins_summary_keeps_the_worst_case():
    import sys
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import numerics_margins
    finally:
        sys.path.pop(0)
    rows = [{"check": "f32", "what": "hrm", "step": 1, "isa": "AVX512", "f32_to_f64_per_s": 0.5, "fixture_to_f64_per_s": 1.0},
            {"check": "f32", "what": "hrm", "step": 2, "isa": "AVX512", "f32_to_f64_per_s": 2.5, "fixture_to_f64_per_s": 0.1},
            {"check": "bf16_swiglu", "what": "conv_swiglu", "step": 1, "isa": "AVX512", "bit_identical": 0.999,
             "max_err_per_bound": 0.2},
            {"check": "bf16_swiglu", "what": "conv_swiglu", "step": 1, "isa": "AVX512", "bit_identical": 0.995,
             "max_err_per_bound": 0.1}]
    got = numerics_margins.summarise(rows)
    assert got["f32"]["hrm"] == {"f32_to_f64_per_s": 2.5, "fixture_to_f64_per_s": 1.0}
    assert got["bf16_swiglu"]["conv_swiglu"] == {"bit_identical": 0.995, "max_err_per_bound": 0.2}


def test_eval_and_sweep_record_figures(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["build", "sudoku", "--box", "2x2", "--num-train", "60", "--num-test", "12", "--num-val", "8",
                 "--out", "d", "--seed", "2"]) == 0
    info = json.loads((tmp_path / "d" / "task.json").read_text())
    assert info["command"] == "recursa build sudoku --box 2x2 --num-train 60 --num-test 12 --num-val 8 --seed 2"
    from recursa import config
    from recursa.training.trainer import fit
    cfg = tiny_config(tmp_path / "d", tmp_path / "run", steps=4)
    fit(cfg, progress=False, log=lambda *a: None)
    assert main(["eval", "run", "--data", "d", "--record", "res/r.json", "--label", "fixed"]) == 0
    assert main(["eval", "run", "--data", "d", "--steps", "5", "--record", "res/r.json", "--label", "deeper"]) == 0
    rec = results.read(tmp_path / "res" / "r.json")
    assert list(rec["figures"]) == ["deeper", "fixed"]
    fig = rec["figures"]["deeper"]
    assert fig["command"] == "recursa eval run --data d --steps 5 --record res/r.json --label deeper"
    assert fig["metrics"]["n"] == 12 and fig["metrics"]["mean_steps"] == 5.0 and len(fig["metrics"]["exact_by_step"]) == 5
    assert fig["data"] == {"dir": "d", "split": "test", "n": 12, "build": info["command"], "task": "sudoku", "seed": 2}
    assert fig["run"]["step"] == 4 and fig["run"]["seed"] == 3 and len(fig["run"]["config_sha256"]) == 16
    assert {"cpu", "cores", "torch", "isa", "threads", "emulation"} <= set(fig["machine"])
    assert str(tmp_path) not in (tmp_path / "res" / "r.json").read_text()  # no machine's paths
    capsys.readouterr()
    # one label per figure, both options together
    assert main(["eval", "run", "--data", "d", "--record", "res/r.json"]) == 2
    assert "--record FILE and --label NAME go together" in capsys.readouterr().err
    assert main(["eval", "run", "--data", "d", "--record", "res/r.json", "--label", "a b"]) == 2
    # a sweep records every run
    recipe = tmp_path / "r.toml"
    recipe.write_text(config.to_toml(tiny_config(tmp_path / "d", tmp_path / "unused", steps=2)))
    assert main(["sweep", str(recipe), "--vary", "model.L_cycles=1,2", "--out", "sw", "--record", "res/s.json"]) == 0
    srec = results.read(tmp_path / "res" / "s.json")
    assert sorted(f["setting"]["L_cycles"] for f in srec["figures"].values()) == [1, 2]
    assert all(f["data"]["split"] == "val" and f["metrics"]["n"] == 8 for f in srec["figures"].values())


def test_a_broken_results_file_is_one_clear_error(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"schema": 1, "figures": {"a": {"metrics": {}}}}))
    with pytest.raises(RecursaError, match="figure 'a' has no metrics"):
        results.read(p)
    p.write_text(json.dumps({"figures": {}}))
    with pytest.raises(RecursaError, match="not a results file"):
        results.read(p)


def test_config_hash_ignores_where_a_run_was_written():
    a = {"model": {"hidden_size": 8}, "train": {"out": "x", "data": "d", "seed": 1}}
    b = {"model": {"hidden_size": 8}, "train": {"out": "y", "data": "e", "seed": 1}}
    assert results.config_sha256(a) == results.config_sha256(b)
    assert results.config_sha256(a) != results.config_sha256({**a, "train": {"seed": 2}})


def test_train_seconds_is_the_runs_training_time_at_the_checkpoint(tmp_path):
    from recursa.tools.results import train_seconds
    run = tmp_path / "run"
    (run / "checkpoints" / "step_0000020").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in (
        {"step": 10, "elapsed_s": 4.04}, {"step": 20, "elapsed_s": 8.26}, {"step": 20, "eval/exact_accuracy": 0.5},
        {"step": 30, "elapsed_s": 12.0})) + "\n{torn")
    assert train_seconds(run / "checkpoints" / "step_0000020", 20) == 8.3
    assert train_seconds(run / "checkpoints" / "step_0000020", 5) is None
    assert train_seconds(tmp_path / "elsewhere" / "ckpt", 20) is None


def test_forward_dtype_table_is_the_recorded_one():
    """docs/benchmarks.md's float32-vs-"auto" table: the figures of results/forward_dtype.json."""
    text = (REPO / "docs" / "benchmarks.md").read_text()
    table = text.split("<!-- dtype -->", 1)[1].split("<!-- /dtype -->", 1)[0]
    rec = results.read(REPO / "results" / "forward_dtype.json")["figures"]
    rows = [r for r in table.strip().splitlines()[2:]]
    assert len(rows) == len(rec) == 2
    for row in rows:
        name, dtype, exact, secs = [c.strip() for c in row.strip("|").split("|")]
        fig = rec[f"{name}-fixed8"]
        assert fig["run"]["forward_dtype"] == dtype
        assert exact == f"{100 * fig['metrics']['exact_accuracy']:.1f}%"
        assert secs == f"{fig['run']['train_s']:.0f} s"
