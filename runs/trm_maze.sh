#!/usr/bin/env bash
# TRM attention, Maze-Hard 30x30 (paper: 85.3% exact; built with the paper's 8 dihedral views): build, train, evaluate with the published recipe (configs/trm_maze.toml).
# One GPU process as written; on K GPUs run the train line as `torchrun --standalone --nproc-per-node K
# -m recursa train ...` (README: torchrun). Run from the repository
# root with the virtual environment active (`. .venv/bin/activate`). Scaled-down CPU version:
# configs/trm_maze-cpu.toml (see its header).
set -euo pipefail

SRC=${MAZE_HARD:-data/raw/maze-30x30-hard-1k}   # holds the benchmark's train.csv and test.csv
if [ -f "$SRC/train.csv" ]; then
  recursa build maze --source "$SRC/train.csv" --test-source "$SRC/test.csv" --aug --out data/maze-30x30-hard-1k-aug
else  # no benchmark files: recursa's generator in the same spirit (shortest path >= 110)
  recursa build maze --size 30 --min-path 110 --num-train 1000 --num-test 1000 --aug --seed 0 --out data/maze-30x30-hard-1k-aug
fi
recursa train configs/trm_maze.toml
recursa eval runs/trm_maze --data data/maze-30x30-hard-1k-aug --json runs/trm_maze/eval.json
