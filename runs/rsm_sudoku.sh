#!/usr/bin/env bash
# RSM-style, Sudoku-Extreme (README: ~80% exact, 97% with test-time compute, < 1 h on one A100):
# build, train, evaluate with the published recipe (configs/rsm_sudoku.toml), then think deeper.
# One GPU process as written; on K GPUs run the train line as `torchrun --standalone --nproc-per-node K
# -m recursa train ...` (README: torchrun). Run from the repository
# root with the virtual environment active (`. .venv/bin/activate`).
set -euo pipefail

SRC=${SUDOKU_EXTREME:-data/raw/sudoku-extreme}   # holds the benchmark's train.csv and test.csv
recursa build sudoku-extreme --source "$SRC/train.csv" --test-source "$SRC/test.csv" \
    --num-aug 0 --seed 0 --out data/sudoku-extreme-full
recursa train configs/rsm_sudoku.toml
recursa eval runs/rsm_sudoku --data data/sudoku-extreme-full --json runs/rsm_sudoku/eval.json
# test-time depth: each step runs H_cycles = 8 more cycles on the carried state
recursa eval runs/rsm_sudoku --data data/sudoku-extreme-full --steps 32 --curve --json runs/rsm_sudoku/eval-deep.json
