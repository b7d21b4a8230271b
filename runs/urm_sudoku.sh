#!/usr/bin/env bash
# URM, Sudoku-Extreme (1000 puzzles x 1000 views): build, train, evaluate with the published recipe (configs/urm_sudoku.toml).
# URM trained on 8 GPUs: torchrun --standalone --nproc-per-node 8 -m recursa train configs/urm_sudoku.toml.
# One GPU process as written; on K GPUs run the train line as `torchrun --standalone --nproc-per-node K
# -m recursa train ...` (README: torchrun). Run from the repository
# root with the virtual environment active (`. .venv/bin/activate`).
set -euo pipefail

SRC=${SUDOKU_EXTREME:-data/raw/sudoku-extreme}   # holds the benchmark's train.csv and test.csv
recursa build sudoku-extreme --source "$SRC/train.csv" --test-source "$SRC/test.csv" \
    --subsample-size 1000 --num-aug 1000 --seed 0 --out data/sudoku-extreme-1k-aug-1000
recursa train configs/urm_sudoku.toml
recursa eval runs/urm_sudoku --data data/sudoku-extreme-1k-aug-1000 --json runs/urm_sudoku/eval.json
