"""`recursa bench train|infer`: every preset runs on a tiny budget and prints the documented JSON
schema (speed itself is checked by running the benchmark, never by a timed unit test)."""

import json

import pytest

from recursa.tools.bench import PRESETS, matmul_rate
from recursa.cli import main

TRAIN_KEYS = {"samples_per_s", "tokens_per_s", "step_ms_median", "peak_rss_mib", "params", "model_gflop_per_step",
              "achieved_gflops", "matmul_gflops"}


@pytest.mark.parametrize("target", ["train", "infer"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_bench_presets_print_one_json_line(capsys, tmp_path, target, preset):
    out = tmp_path / "b.json"
    argv = ["bench", target, "--preset", preset, "--steps", "1", "--warmup", "1", "--batch", "2", "--json", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row == json.loads(out.read_text())
    keys = TRAIN_KEYS - {"samples_per_s"} | ({"samples_per_s"} if target == "train" else {"puzzles_per_s"})
    assert keys <= set(row), keys - set(row)
    assert row["preset"] == preset and row["bench"] == target and row["steps_timed"] == 1 and row["batch"] == 2
    assert row["params"] > 0 and row["model_gflop_per_step"] > 0 and row["matmul_gflops"] > 0
    rate = row["samples_per_s"] if target == "train" else row["puzzles_per_s"]
    assert rate > 0 and row["tokens_per_s"] == pytest.approx(81 * rate, rel=1e-3, abs=0.1)
    assert row["achieved_gflops"] == pytest.approx(row["model_gflop_per_step"] / (row["step_ms_median"] / 1000), rel=0.02)


def test_model_flops_match_the_architecture(capsys):
    """sudoku-mlp inference: the counted FLOPs equal the network's matmuls, by hand."""
    assert main(["bench", "infer", "--preset", "sudoku-mlp", "--steps", "1", "--warmup", "0", "--batch", "1"]) == 0
    row = json.loads(capsys.readouterr().out)
    B, S, D, L = 1, 81 + 16, 512, 2  # batch, positions (16 prefix), hidden, layers
    inter_c = 1536  # channel SwiGLU: round(4 * 512 * 2/3) = 1365, up to a multiple of 256
    inter_t = 512  # token SwiGLU over 97 positions: round(4 * 97 * 2/3) = 259 -> 512
    per_block = 2 * B * S * D * 3 * inter_c + 2 * B * D * S * 3 * inter_t  # channel + token SwiGLU (gate_up + down)
    calls = 3 * (6 + 1)  # H_cycles x (L_cycles + 1) network applications per supervision step
    heads = 2 * B * S * D * 11 + 2 * B * D * 2  # lm_head over all positions, q_head on position 0
    expected = 16 * (calls * L * per_block + heads)
    assert row["model_gflop_per_step"] == pytest.approx(expected / 1e9, rel=1e-3)


def test_matmul_rate_is_positive():
    import torch
    assert matmul_rate((64, 32, 16), torch.float32, torch.device("cpu"), seconds=0.05) > 0


def test_bad_preset_is_one_error_line(capsys):
    assert main(["bench", "train", "--preset", "huge", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --preset 'huge'") and "\n" not in err
