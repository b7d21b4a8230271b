"""Shared fixtures: a tiny Sudoku dataset, a tiny config, and the path of ../shared.

Run with ``make test`` (or ``.venv/bin/python -m pytest -q tests``). Files of ../shared are
required: a missing one fails its test (CI always has them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recursa import config
from recursa.tasks import build_sudoku

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECURSA_SHARED", REPO.parent / "shared"))


def shared_file(rel: str) -> Path:
    path = SHARED / rel
    assert path.is_file(), f"missing shared file {path} (set RECURSA_SHARED to the shared/ directory)"
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "sudoku4"
    build_sudoku(out, box_rows=2, box_cols=2, num_train=300, num_test=40, num_aug=3, seed=0, log=lambda *a: None)
    return out


def tiny_config(data: Path, out: Path, **train) -> config.RunConfig:
    return config.from_dict({
        "model": {"hidden_size": 32, "num_heads": 2, "L_layers": 2, "H_cycles": 2, "L_cycles": 2,
                  "halt_max_steps": 3, "mlp_t": True, "pos_encodings": "none", "puzzle_emb_len": 1},
        "train": {"data": str(data), "out": str(out), "batch_size": 16, "steps": 30, "lr": 1e-3,
                  "lr_warmup_steps": 5, "log_interval": 10, "eval_interval": -1, "seed": 3, "num_threads": 1,
                  "device": "cpu", **train},
        "eval": {"limit": 20},
    })


def cli_error(capsys, argv) -> str:
    """Run the CLI in-process; assert exit 2 and exactly one `error:` line on stderr; return it."""
    from recursa.cli import main
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    return err
