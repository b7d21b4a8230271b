"""The demo end to end on a seconds-long budget: everything it promises to write is there and
usable (the accuracy targets are measured by the full `recursa demo`, not here)."""

import json

from PIL import Image

from recursa.cli import main
from recursa.tools.demo import _verdict, run_demo


def test_short_demo_writes_everything(tmp_path, capsys):
    out = tmp_path / "demo"
    summary = run_demo("sudoku4", out, train_seconds=4, seed=1, say=lambda *a: None)
    saved = json.loads((out / "summary.json").read_text())
    assert saved == summary
    for key in ("task", "trm_exact", "baseline_exact", "trm_exact_by_step", "trm_params", "baseline_params",
                "n_test", "wall_s"):
        assert key in saved
    assert saved["trm_params"] == saved["baseline_params"] and len(saved["trm_exact_by_step"]) == 8
    assert Image.open(out / "accuracy_by_step.png").size[0] > 300
    # The dataset and both checkpoints work with the CLI.
    for name in ("trm", "baseline"):
        assert main(["eval", str(out / name), "--data", str(out / "data"), "--limit", "20"]) == 0
    assert main(["solve", str(out / "trm"), "--puzzle", "1... ..2. .3.. ...4"]) == 0
    assert "final answer after 8 steps" in capsys.readouterr().out


def test_demo_step_budget_is_exact_for_both_models(tmp_path):
    """The default budget is a number of optimizer steps (the same on every machine), given to both
    models; the summary says how long each took."""
    summary = run_demo("sudoku4", tmp_path / "demo", steps=6, seed=0, say=lambda *a: None)
    assert summary["steps"] == 6 and summary["trm_train_steps"] == summary["baseline_train_steps"] == 6
    assert set(summary["train_s"]) == {"trm", "baseline"} and all(v > 0 for v in summary["train_s"].values())


def test_the_sudoku6_demo_recipe_is_the_demos():
    """configs/sudoku6_demo_cpu.toml trains the demo's model with the demo's recipe."""
    from recursa import config
    from recursa.tools.demo import PRESETS, TRAIN_DEFAULTS

    from .conftest import REPO
    cfg = config.load(REPO / "configs" / "sudoku6_demo_cpu.toml")
    preset = PRESETS["sudoku6"]
    for key, value in preset.model.items():
        assert getattr(cfg.model, key) == value, key
    train = {**TRAIN_DEFAULTS, **preset.train}
    for key in ("batch_size", "lr", "lr_warmup_steps", "weight_decay", "lr_min_ratio", "ema", "ema_rate", "optimizer",
                "step_weights", "depth_curriculum"):
        assert getattr(cfg.train, key) == train[key], key
    assert cfg.train.steps == preset.steps


def test_the_plot_says_what_was_measured():
    """The demo's verdict (plot title, summary.json) follows the numbers, not the hope."""
    assert _verdict([0.4, 0.9, 0.97], 0.002) == "recursion pays off"
    assert _verdict([0.95, 0.95, 0.96], 0.1) == "TRM beats the baseline, but not by thinking longer"
    assert _verdict([0.2, 0.5, 0.6], 0.58) == "recursion did not beat the same-size baseline here"
