"""Shared fixtures: a tiny Sudoku dataset, a tiny config, and the test files.

Run with ``make test`` (or ``.venv/bin/python -m pytest -q tests``). Everything the suite needs is
in ``tests/``: the official-model fixtures (``tests/fixtures/official``) and a few lines of the
real puzzle collections (``tests/data``). Tests over whole collections read them from
``$RECURSA_DATA`` (a directory holding ``sudoku/`` and ``arc/``) and are skipped, saying so, when
it is not set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recursa import config
from recursa.tasks import build_sudoku

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def fixture_file(rel: str) -> Path:
    """A file of ``tests/fixtures`` (e.g. ``official/trm_mlp_t.json``)."""
    path = TESTS / "fixtures" / rel
    assert path.is_file(), f"missing test fixture {path}"
    return path


def data_file(rel: str) -> Path:
    """An excerpt of a real collection in ``tests/data`` (e.g. ``sudoku/puzzles7_serg_benchmark.txt``)."""
    path = TESTS / "data" / rel
    assert path.is_file(), f"missing test data {path}"
    return path


def collection(rel: str) -> Path:
    """A whole collection under ``$RECURSA_DATA``; the test is skipped when that is not set."""
    root = os.environ.get("RECURSA_DATA")
    if not root:
        pytest.skip(f"whole collection {rel}: set RECURSA_DATA to a directory holding sudoku/ and arc/")
    path = Path(root) / rel
    assert path.is_file(), f"missing {path} (RECURSA_DATA={root})"
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
