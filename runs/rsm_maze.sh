#!/usr/bin/env bash
# RSM-style, Maze-Hard 30x30 (README: ~80% exact in ~40 minutes on one A100): build, train, evaluate
# with the published recipe (configs/rsm_maze.toml), then think deeper.
# One GPU process as written; on K GPUs run the train line as `torchrun --standalone --nproc-per-node K
# -m recursa train ...` (README: torchrun). Run from the repository
# root with the virtual environment active (`. .venv/bin/activate`).
set -euo pipefail

SRC=${MAZE_HARD:-data/raw/maze-30x30-hard-1k}   # holds the benchmark's train.csv and test.csv
if [ -f "$SRC/train.csv" ]; then
  recursa build maze --source "$SRC/train.csv" --test-source "$SRC/test.csv" --out data/maze-30x30-hard-1k
else  # no benchmark files: recursa's generator in the same spirit (shortest path >= 110)
  recursa build maze --size 30 --min-path 110 --num-train 1000 --num-test 1000 --seed 0 --out data/maze-30x30-hard-1k
fi
recursa train configs/rsm_maze.toml
recursa eval runs/rsm_maze --data data/maze-30x30-hard-1k --json runs/rsm_maze/eval.json
recursa eval runs/rsm_maze --data data/maze-30x30-hard-1k --steps 16 --curve --json runs/rsm_maze/eval-deep.json
