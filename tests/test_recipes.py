"""The published recipes (configs/*.toml), their CPU versions and the runs/*.sh scripts agree
with each other and with the papers' hyper-parameters; `recursa bench data` runs.

What is checked: each recipe's settings equal the values *transcribed here* from the official
scripts and configs (TRM: SamsungSAILMontreal/TinyRecursiveModels README commands over
config/cfg_pretrain.yaml and config/arch/trm.yaml; HRM: sapientinc/HRM README commands over
config/cfg_pretrain.yaml and config/arch/hrm_v1.yaml; URM, RSM and CGAR: the files named in each
test), and each runs/NAME.sh builds the dataset its recipe trains on and trains and evaluates that
recipe. The official files are not read at test time (they are not part of recursa): a value
mistyped in both the recipe and the test would pass."""

import json
import re

import pytest

from recursa import config
from recursa.cli import main

from .conftest import REPO, collection, data_file

PUBLISHED = {
    # name: (arch, H_cycles, L_cycles, mlp_t, lr, puzzle_emb_lr, weight_decay, epochs, ema), from the
    # official README training commands (the command-line overrides) over the YAML defaults
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


@pytest.mark.parametrize("name", ["urm_arc1", "urm_arc2", "urm_sudoku"])
def test_urm_recipes_match_the_published_scripts(name):
    """UbiquantAI/URM scripts/URM_*.sh over config/cfg_pretrain.yaml + config/arch/urm.yaml: 4 shared
    blocks with ConvSwiGLU (kernel 2), loops 16, H 2 x L 6, hidden 512, 8 heads, bf16, stablemax,
    AdamATan2 (0.9, 0.95), lr 1e-4 constant after 2000 warm-up steps, EMA 0.999; ARC: batch 768,
    200k epochs, weight decay 0.1, puzzle lr 1e-2, ARC-2 with Muon; Sudoku: batch 128, 50k epochs,
    decay 1.0, puzzle lr 1e-4."""
    cfg = config.load(REPO / "configs" / f"{name}.toml")
    m, t = cfg.model, cfg.train
    assert (m.arch, m.L_layers, m.conv_swiglu, m.halt_max_steps, m.H_cycles, m.L_cycles) == ("urm", 4, 2, 16, 2, 6)
    assert (m.hidden_size, m.num_heads, m.expansion, m.pos_encodings, m.forward_dtype, m.ffn_multiple) == \
        (512, 8, 4.0, "rope", "bfloat16", 256)
    assert (m.halt_exploration_prob, m.q_continue, m.conv_dtype, m.conv_2d, m.emb_ndim) == (0.1, False, "bfloat16",
                                                                                          False, 512)
    assert (t.beta1, t.beta2, t.lr, t.lr_warmup_steps, t.lr_min_ratio, t.loss, t.ema, t.ema_rate) == \
        (0.9, 0.95, 1e-4, 2000, 1.0, "stablemax", True, 0.999)
    if name.startswith("urm_arc"):
        assert (t.batch_size, t.epochs, t.weight_decay, t.puzzle_emb_weight_decay, t.puzzle_emb_lr) == \
            (768, 200000, 0.1, 0.1, 1e-2)
        assert t.optimizer == ("muon" if name == "urm_arc2" else "adam_atan2")
        assert t.data == config.load(REPO / "configs" / f"trm_{name[4:]}.toml").train.data  # TRM's ARC data
    else:
        assert (t.batch_size, t.epochs, t.weight_decay, t.puzzle_emb_weight_decay, t.puzzle_emb_lr, t.optimizer) == \
            (128, 50000, 1.0, 1.0, 1e-4, "adam_atan2")
    script = (REPO / "runs" / f"{name}.sh").read_text()
    assert f"recursa train configs/{name}.toml" in script
    assert f"--out {t.data}" in script and f"recursa eval runs/{name} --data {t.data}" in script


def _milestones(curriculum, start, index):
    """The progress points at which a curriculum's H (index 1) or L (index 2) grows, and its last value."""
    points, last = [], start
    for e in curriculum:
        while e[index] > last:
            points.append(e[0])
            last += 1
    return points, last


@pytest.mark.parametrize("name", ["rsm_sudoku", "rsm_maze"])
def test_rsm_recipes_match_the_published_readme_commands(name):
    """navidivan/rsm README commands over config/cfg_pretrain.yaml + config/arch/rsm.yaml: TRM's
    recursion, one supervision step, the depth grown at the published milestones (percent + 0.1),
    AdamATan2 (0.8, 0.9), lr 1e-3 cosine to 0.02 after 2000 warm-up steps, EMA 0.999, stablemax,
    gradient clipping at norm 1.0."""
    cfg = config.load(REPO / "configs" / f"{name}.toml")
    m, t = cfg.model, cfg.train
    h_points, h_end = _milestones(t.depth_curriculum, 2, 1)
    l_points, l_end = _milestones(t.depth_curriculum, 2, 2)
    assert t.depth_curriculum[0] == [0.0, 2, 2] and (h_end, l_end) == (m.H_cycles, m.L_cycles)
    if name == "rsm_sudoku":
        assert h_points == [0.201, 0.401, 0.551, 0.651, 0.751, 0.851]
        assert l_points == [0.301, 0.501, 0.701, 0.801, 0.841, 0.861, 0.881, 0.901, 0.921, 0.941]
        assert (m.L_layers, m.mlp_t, m.pos_encodings, m.H_cycles, m.L_cycles) == (1, True, "none", 8, 12)
        assert (t.batch_size, t.epochs, t.weight_decay, t.puzzle_emb_lr, t.puzzle_emb_weight_decay) == \
            (512, 2, 0.1, 1e-4, 1.0)
    else:
        assert h_points == [0.201, 0.401, 0.551, 0.651, 0.751, 0.851, 0.951] and l_points == [0.301, 0.501, 0.701]
        assert (m.L_layers, m.mlp_t, m.pos_encodings, m.H_cycles, m.L_cycles) == (2, False, "rope", 9, 5)
        assert (t.batch_size, t.epochs, t.weight_decay, t.puzzle_emb_lr, t.puzzle_emb_weight_decay) == \
            (128, 500, 1.0, 1e-4, 1.0)
    assert (m.arch, m.halt_max_steps, m.hidden_size, m.num_heads, m.puzzle_emb_len, m.forward_dtype) == \
        ("trm", 1, 512, 8, 16, "bfloat16")
    assert (t.optimizer, t.beta1, t.beta2, t.lr, t.lr_warmup_steps, t.lr_min_ratio, t.ema, t.ema_rate, t.loss) == \
        ("adam_atan2", 0.8, 0.9, 1e-3, 2000, 0.02, True, 0.999, "stablemax")
    assert t.grad_clip == 1.0  # pretrain.py grad_clip_norm
    script = (REPO / "runs" / f"{name}.sh").read_text()
    assert f"recursa train configs/{name}.toml" in script
    assert f"--out {t.data}" in script and f"recursa eval runs/{name} --data {t.data}" in script
    assert "--aug" not in script and "--steps" in script  # no augmentation as RSM's build runs; deeper at test


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


def _recipe_is_bundle(base: str, recipe: str, bundle: str, also: set[str]) -> dict:
    """configs/``recipe`` differs from configs/``base`` in exactly the "key=value;..." settings of a
    study bundle (with those values) and the ``also`` keys, among the settings that have an effect in
    the recipe (a conv mixer makes the attention's keys moot); returns the recipe as a dict."""
    settings = dict(s.split("=", 1) for s in bundle.split(";"))
    a = config.to_dict(config.load(REPO / "configs" / base))
    cfg = config.load(REPO / "configs" / recipe)
    b, moot = config.to_dict(cfg), config.ineffective(cfg)
    changed = {f"{section}.{k}" for section in ("model", "train", "eval")
               for k in a[section] if a[section][k] != b[section][k] and f"{section}.{k}" not in moot}
    assert changed == set(settings) | also
    for key, value in settings.items():
        section, k = key.split(".")
        want = json.loads(value) if value[0] in "[0123456789" or value in ("true", "false") else value
        assert b[section][k] == want, key
    return b


def test_sudoku9_cgar_muon_recipe_is_the_studys_bundle_on_the_9x9_trm_recipe():
    """configs/sudoku9_cgar_muon_cpu.toml is configs/sudoku9_trm_cpu.toml plus exactly the settings of
    the study's "cgar-muon" bundle (runs/study_cpu.sh), except that it halts on the answer's
    probability instead of a detached q head (issue 25), over a step budget of the steps the
    study's 7.6-minute time budget ran (2,779 on 2 threads, rounded)."""
    import re
    script = (REPO / "runs" / "study_cpu.sh").read_text()
    cgar = re.search(r'^CGAR="cgar=(.*)"$', script, re.M).group(1)
    bundle = re.search(r'^CGARMUON="cgar-muon=\$\{CGAR#cgar=\};(.*)"$', script, re.M).group(1)
    assert bundle.endswith(";model.halt_detach=true")
    bundle = bundle.replace(";model.halt_detach=true", ";model.halt_signal=answer")
    long_s = float(re.search(r"^LONG_SUDOKU=\$\{STUDY_LONG_SUDOKU_S:-(\d+)\}$", script, re.M).group(1))
    fast = _recipe_is_bundle("sudoku9_trm_cpu.toml", "sudoku9_cgar_muon_cpu.toml", f"{cgar};{bundle}",
                             {"train.out", "train.steps", "train.eval_interval"})
    assert long_s == 456 and fast["train"]["steps"] == 2800 and fast["train"]["max_time_s"] == 0


def test_maze15_conv_muon_recipe_is_the_studys_bundle_on_the_maze_trm_recipe():
    """configs/maze15_conv_muon_cpu.toml is configs/maze15_trm_cpu.toml plus exactly the settings of the
    study's "conv5-muon" bundle (runs/study_cpu.sh, the long maze runs), over the study's 30-minute
    maze budget (as steps), on both cores and the 32,000-maze build its header names."""
    import re
    script = (REPO / "runs" / "study_cpu.sh").read_text()
    bundle = re.search(r'^CONV5MUON="conv5-muon=(.*)"$', script, re.M).group(1)
    assert '--variant "$CONV5MUON"' in script
    long_s = float(re.search(r"^LONG_MAZE=\$\{STUDY_LONG_MAZE_S:-(\d+)\}$", script, re.M).group(1))
    best = _recipe_is_bundle("maze15_trm_cpu.toml", "maze15_conv_muon_cpu.toml", bundle,
                             {"train.out", "train.data", "train.max_time_s", "train.steps", "train.eval_interval",
                              "train.num_threads"})
    path = REPO / "configs" / "maze15_conv_muon_cpu.toml"
    # a step budget: the steps the study's 30-minute budget ran on 2 threads (4,229 and 4,214), rounded
    assert best["train"]["steps"] == 4200 and best["train"]["max_time_s"] == 0 and long_s == 1800
    assert best["train"]["num_threads"] == 2 and best["model"]["conv_swiglu"] == 5
    build = "recursa build maze --size 15 --min-path 40 --num-train 32000 --num-test 500 --num-val 500 --aug --out "
    assert build + best["train"]["data"] in path.read_text()


def test_maze15_nearest_recipe_is_the_conv_muon_recipe_with_nearest_answers_and_the_conv_mixer():
    """configs/maze15_nearest_cpu.toml (issue 13's maze target) is configs/maze15_conv_muon_cpu.toml plus
    exactly train.nearest_answer and a 5x5 conv token mixer (and its own step budget), on the same data
    and threads, and
    its header names the build, the 8-view evaluation and its run directory."""
    best = _recipe_is_bundle("maze15_conv_muon_cpu.toml", "maze15_nearest_cpu.toml",
                             "train.nearest_answer=true;model.conv_mixer=5", {"train.out", "train.steps"})
    # a step budget: the steps 30 minutes ran on 2 threads (6,624 and 6,832: the conv mixer's step is cheaper)
    assert best["train"]["steps"] == 6600 and best["train"]["max_time_s"] == 0 and best["train"]["num_threads"] == 2
    text = (REPO / "configs" / "maze15_nearest_cpu.toml").read_text()
    assert "recursa build maze --size 15 --min-path 40 --num-train 32000 --num-test 500 --num-val 500 --aug --out " \
        + best["train"]["data"] in text
    assert f"recursa eval {best['train']['out']} --data {best['train']['data']} --steps 16 --views 8" in text


def _study_bundles() -> dict[str, list[str]]:
    """runs/study_cpu.sh's variant bundles, NAME -> its SECTION.KEY=VALUE settings (${X#x=} expanded)."""
    script = (REPO / "runs" / "study_cpu.sh").read_text()
    values: dict[str, str] = {}
    for var, value in re.findall(r'^([A-Z0-9]+)="([a-z0-9-]+=.*)"$', script, re.M):
        value = re.sub(r"\$\{([A-Z0-9]+)#[a-z0-9-]+=\}", lambda m: values[m.group(1)].split("=", 1)[1], value)
        values[var] = value
    return {v.split("=", 1)[0]: [x for x in v.split("=", 1)[1].split(";") if x] for v in values.values()}


@pytest.mark.parametrize("recipe", ["sudoku9_trm_cpu.toml", "maze15_trm_cpu.toml"])
def test_every_study_bundle_loads_on_the_study_recipes(recipe):
    """Each method of the CPU study is a valid configuration on the recipes it runs on: none gives a
    setting that has no effect with the others (the conv mixer restores the token mixer's keys)."""
    bundles = _study_bundles()
    assert {"trm", "conv", "rsm", "cgar", "convmix", "cgar-muon", "conv5-muon"} <= set(bundles)
    for name, settings in bundles.items():
        cfg = config.load(REPO / "configs" / recipe, settings)
        assert not {k for k in config.ineffective(cfg) if k.split(".")[1] in dict(s.split("=", 1) for s in settings)}
        if name == "convmix":
            assert cfg.model.conv_mixer == 3 and not cfg.model.mlp_t


def _header_command(text: str, prefix: str) -> list[str]:
    """The arguments of the recipe header's ``# Data:`` (or other) line that starts with ``prefix``."""
    line = next(x for x in text.splitlines() if x.lstrip("# ").startswith(prefix))
    return line.lstrip("# ").split(":", 1)[1].split() if prefix.endswith(":") else line.lstrip("# ").split()


def test_maze30_recipe_is_the_15x15_recipe_on_maze_hard_with_a_90_minute_budget(tmp_path):
    """configs/maze30_nearest_cpu.toml (issue 27) is configs/maze15_nearest_cpu.toml plus exactly the
    90-minute time budget, batch 16, its data and run directory, and sparser evaluations and kept
    checkpoints (the minutes curve); its header's build command makes the Maze-Hard distribution:
    30x30, every shortest path >= 110 steps, 1,000 test mazes none of which is trained on (checked by
    running that command with fewer mazes)."""
    best = _recipe_is_bundle("maze15_nearest_cpu.toml", "maze30_nearest_cpu.toml",
                             "train.batch_size=16;train.steps=0;train.max_time_s=5400.0;train.eval_interval=1000;"
                             "train.checkpoint_interval=1000;train.keep_checkpoints=20",
                             {"train.out", "train.data"})
    assert best["train"]["num_threads"] == 2 and best["model"]["forward_dtype"] == "float32"
    text = (REPO / "configs" / "maze30_nearest_cpu.toml").read_text()
    build = _header_command(text, "Data:")
    assert build[:3] == ["recursa", "build", "maze"] and build[-2:] == ["--out", best["train"]["data"]]
    assert "--size" not in build and "--min-path" not in build  # the builder's defaults: Maze-Hard's 30 and 110
    assert build[build.index("--num-test") + 1] == "1000" and "--aug" in build
    for cmd in ("recursa train configs/maze30_nearest_cpu.toml",
                f"recursa eval {best['train']['out']} --data {best['train']['data']} --split test --limit 1000"):
        assert cmd in text
    # the same command, fewer mazes: the dataset it describes
    small = list(build[1:])
    for flag, n in (("--num-train", "12"), ("--num-test", "10"), ("--num-val", "4")):
        small[small.index(flag) + 1] = n
    small[-1] = str(tmp_path / "m30")
    assert main(small) == 0
    from recursa.data.format import load_split
    from recursa.tasks.maze import shortest_lengths
    info = json.loads((tmp_path / "m30" / "task.json").read_text())
    assert info["params"] == {"size": 30} and info["build_args"]["min_path"] == 110
    keys = {}
    for split in ("train", "val", "test"):
        d = load_split(tmp_path / "m30", split)
        grids = d.inputs.reshape(-1, 30, 30)
        assert (shortest_lengths(grids) >= 110).all(), split
        keys[split] = {g.tobytes() for g in grids}
    assert len(keys["test"]) == 10 and not keys["test"] & keys["train"] and not keys["val"] & keys["train"]
