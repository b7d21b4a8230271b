#!/usr/bin/env bash
# CGAR on Sudoku-Extreme (TRM-MLP + depth curriculum + step weights, configs/cgar_sudoku.toml): build, train, evaluate.
# One GPU process as written; on K GPUs run the train line as `torchrun --standalone --nproc-per-node K
# -m recursa train ...` (README: torchrun). Run from the repository
# root with the virtual environment active (`. .venv/bin/activate`). Same data as runs/trm_sudoku_mlp.sh.
set -euo pipefail

SRC=${SUDOKU_EXTREME:-data/raw/sudoku-extreme}   # holds the benchmark's train.csv and test.csv
recursa build sudoku-extreme --source "$SRC/train.csv" --test-source "$SRC/test.csv" \
    --subsample-size 1000 --num-aug 1000 --seed 0 --out data/sudoku-extreme-1k-aug-1000
recursa train configs/cgar_sudoku.toml
recursa eval runs/cgar_sudoku --data data/sudoku-extreme-1k-aug-1000 --json runs/cgar_sudoku/eval.json
