#!/usr/bin/env bash
# HRM, Sudoku-Extreme (paper: 55.0% exact): build, train, evaluate with the published recipe (configs/hrm_sudoku.toml).
# One GPU process as written; on K GPUs run the train line as `torchrun --standalone --nproc-per-node K
# -m recursa train ...` (README: torchrun). Run from the repository
# root with the virtual environment active (`. .venv/bin/activate`). Scaled-down CPU version:
# configs/hrm_sudoku-cpu.toml (see its header).
set -euo pipefail

SRC=${SUDOKU_EXTREME:-data/raw/sudoku-extreme}   # holds the benchmark's train.csv and test.csv
recursa build sudoku-extreme --source "$SRC/train.csv" --test-source "$SRC/test.csv" \
    --subsample-size 1000 --num-aug 1000 --seed 0 --out data/sudoku-extreme-1k-aug-1000
recursa train configs/hrm_sudoku.toml
recursa eval runs/hrm_sudoku --data data/sudoku-extreme-1k-aug-1000 --json runs/hrm_sudoku/eval.json
