"""The published recipes (configs/*.toml), their CPU versions and the runs/*.sh scripts agree
with each other and with the papers' hyper-parameters (reference §1.2); `recursa bench data` runs."""

import json
import re

import pytest

from recursa import config
from recursa.cli import main

from .conftest import REPO, collection, data_file

PUBLISHED = {
    # name: (arch, H_cycles, L_cycles, mlp_t, lr, puzzle_emb_lr, weight_decay, epochs, ema)
    "trm_sudoku_mlp": ("trm", 3, 6, True, 1e-4, 1e-4, 1.0, 50000, True),
    "trm_sudoku_att": ("trm", 3, 6, False, 1e-4, 1e-4, 1.0, 50000, True),
    "trm_maze": ("trm", 3, 4, False, 1e-4, 1e-4, 1.0, 50000, True),
    "trm_arc1": ("trm", 3, 4, False, 1e-4, 1e-2, 0.1, 100000, True),
    "trm_arc2": ("trm", 3, 4, False, 1e-4, 1e-2, 0.1, 100000, True),
    "hrm_sudoku": ("hrm", 2, 2, False, 1e-4, 1e-4, 1.0, 20000, False),
    "hrm_maze": ("hrm", 2, 2, False, 1e-4, 1e-4, 1.0, 20000, False),
    "hrm_arc1": ("hrm", 2, 2, False, 1e-4, 1e-2, 0.1, 100000, False),
    "hrm_arc2": ("hrm", 2, 2, False, 1e-4, 1e-2, 0.1, 100000, False),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_recipe_matches_the_papers(name):
    arch, H, L, mlp_t, lr, emb_lr, wd, epochs, ema = PUBLISHED[name]
    cfg = config.load(REPO / "configs" / f"{name}.toml")
    m, t = cfg.model, cfg.train
    assert (m.arch, m.H_cycles, m.L_cycles, m.mlp_t) == (arch, H, L, mlp_t)
    assert (m.hidden_size, m.num_heads, m.expansion, m.halt_max_steps, m.forward_dtype) == (512, 8, 4.0, 16, "bfloat16")
    assert (m.L_layers, m.H_layers if arch == "hrm" else 4) == ((2, 4) if arch == "trm" else (4, 4))
    assert m.q_continue == (arch == "hrm")
    assert (t.batch_size, t.optimizer, t.beta1, t.beta2, t.lr_warmup_steps, t.lr_min_ratio, t.loss) == \
        (768, "adam_atan2", 0.9, 0.95, 2000, 1.0, "stablemax")
    assert (t.lr, t.puzzle_emb_lr, t.weight_decay, t.puzzle_emb_weight_decay, t.epochs, t.ema) == \
        (lr, emb_lr, wd, wd, epochs, ema)
    if ema:
        assert t.ema_rate == 0.999
    # runs/NAME.sh builds exactly the dataset the recipe trains on, trains it and evaluates it.
    script = (REPO / "runs" / f"{name}.sh").read_text()
    assert f"recursa train configs/{name}.toml" in script
    assert f"--out {t.data}" in script and f"recursa eval runs/{name} --data {t.data}" in script
    builder = {"sudoku": "sudoku-extreme", "maze": "maze", "arc1": "arc", "arc2": "arc"}[name.split("_")[1]]
    assert f"recursa build {builder} " in script
    if "arc" in name:
        assert "--submission" in script and f"--version {name[-1]}" in script


def test_hrm_arc2_trains_on_the_published_tasks_and_the_conceptarc_variant_is_named():
    """HRM's ARC-AGI-2 run used training2 + evaluation2 only; TRM's adds ConceptARC. The HRM recipe
    is the published one; the ConceptARC variant differs only in its data and says so."""
    pub = config.load(REPO / "configs" / "hrm_arc2.toml")
    var = config.load(REPO / "configs" / "hrm_arc2concept.toml")
    assert "concept" not in pub.train.data and "concept" in var.train.data
    assert var.model == pub.model
    same = {k: v for k, v in config.to_dict(var)["train"].items() if k not in ("data", "out", "eval_interval",
                                                                               "checkpoint_interval")}
    assert same == {k: v for k, v in config.to_dict(pub)["train"].items() if k in same}
    script = (REPO / "runs" / "hrm_arc2.sh").read_text()
    assert "concept" not in script.split("set -euo pipefail")[1].replace("hrm_arc2concept", "")
    assert "--subsets training2,evaluation2" in script
    v_script = (REPO / "runs" / "hrm_arc2concept.sh").read_text()
    assert "recursa train configs/hrm_arc2concept.toml" in v_script and f"--out {var.train.data}" in v_script
    assert "NOT the published" in (REPO / "configs" / "hrm_arc2concept.toml").read_text()


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_cpu_version_has_the_same_model_family_and_its_own_data_line(name):
    full = config.load(REPO / "configs" / f"{name}.toml")
    path = REPO / "configs" / f"{name}-cpu.toml"
    cpu = config.load(path)
    assert (cpu.model.arch, cpu.model.mlp_t, cpu.model.pos_encodings, cpu.model.q_continue) == \
        (full.model.arch, full.model.mlp_t, full.model.pos_encodings, full.model.q_continue)
    assert cpu.train.max_time_s == 600 and cpu.model.forward_dtype == "float32"
    data_line = re.search(r"^# Data:\s+(recursa build .*)$", path.read_text(), re.M).group(1)
    assert data_line.endswith(f"--out {cpu.train.data}")
    assert f"--out {cpu.train.data}" in (REPO / "runs" / "cpu.sh").read_text()


def test_every_config_loads():
    for path in sorted((REPO / "configs").glob("*.toml")):
        config.load(path)


@pytest.mark.parametrize("whole", [False, True], ids=["excerpt", "whole-collection"])
def test_bench_data_runs_and_reports(tmp_path, capsys, whole):
    out = tmp_path / "bench.json"
    name = "sudoku/puzzles7_serg_benchmark.txt"
    serg, n = (collection(name), 10000) if whole else (data_file(name), 20)
    assert main(["bench", "data", "--only", "serg-labels", "--serg-source", str(serg), "--json", str(out)]) == 0
    res = json.loads(out.read_text())["data"]["serg-labels"]
    assert res["puzzles"] == n and res["multiple"] == n and res["seconds"] > 0
    assert main(["bench", "data", "--only", "nope"]) == 2


@pytest.mark.parametrize("task,options", [
    ("maze", ["--size", "--min-path", "--num-train", "--num-test", "--loop-prob", "--aug", "--source", "--test-source",
              "--test-fraction", "--subsample-size", "--seed", "--out"]),
    ("arc", ["--version", "--files", "--subsets", "--test-set", "--num-aug", "--exclude-overlap", "--no-translate",
             "--seed", "--out"]),
    ("sudoku-extreme", ["--source", "--test-source", "--test-fraction", "--subsample-size", "--num-aug", "--min-rating",
                        "--rating-buckets", "--on-invalid", "--check-unique", "--workers", "--seed", "--out"]),
])
def test_build_help_explains_every_option(capsys, task, options):
    with pytest.raises(SystemExit):
        main(["build", task, "--help"])
    out = capsys.readouterr().out
    for opt in options:
        line = next(x for x in out.splitlines() if x.strip().startswith(opt))
        assert len(line.strip()) > len(opt) + 8 or opt in ("--out",), opt  # each option has its explanation


def test_cgar_recipe_is_trm_mlp_plus_cgar_curriculum_and_step_weights():
    """CGAR (arXiv 2511.08653, reference §7): TRM-MLP's published recipe plus the depth curriculum
    (1, 2) -> (2, 4) -> (3, 6) at 30% and 60% of training and step weights 0.7^(s-1); nothing else."""
    trm = config.to_dict(config.load(REPO / "configs" / "trm_sudoku_mlp.toml"))
    cgar = config.to_dict(config.load(REPO / "configs" / "cgar_sudoku.toml"))
    assert cgar["model"] == trm["model"] and cgar["eval"] == trm["eval"]
    diff = {k for k in trm["train"] if trm["train"][k] != cgar["train"][k]}
    assert diff == {"out", "step_weights", "depth_curriculum"}
    assert cgar["train"]["step_weights"] == 0.7
    assert cgar["train"]["depth_curriculum"] == [[0.0, 1, 2], [0.3, 2, 4], [0.6, 3, 6]]
    assert cgar["train"]["depth_curriculum"][-1][1:] == [cgar["model"]["H_cycles"], cgar["model"]["L_cycles"]]
    script = (REPO / "runs" / "cgar_sudoku.sh").read_text()
    assert "recursa train configs/cgar_sudoku.toml" in script and f"--out {cgar['train']['data']}" in script
