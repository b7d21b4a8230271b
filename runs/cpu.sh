#!/usr/bin/env bash
# Every scaled-down CPU recipe (configs/*-cpu.toml): build the small datasets, train each for about
# 10 minutes, evaluate on a slice of its test split. About 1.5 hours on 2 cores in all.
# Run from the repository root with `. .venv/bin/activate`; the hard Sudoku file is read from $RECURSA_DATA/sudoku/.
set -euo pipefail

recursa build sudoku-extreme --source "${RECURSA_DATA:?set RECURSA_DATA to the directory holding sudoku/}"/sudoku/puzzles5_forum_hardest_1905_11+.txt \
    --subsample-size 2000 --test-fraction 0.01 --num-aug 10 --out data/sudoku-hard-cpu
recursa build maze --size 12 --min-path 18 --num-train 4000 --num-test 200 --num-val 200 --aug --out data/maze-12-cpu
recursa build arc --version 1 --num-aug 10 --out data/arc1-cpu
recursa build arc --version 2 --num-aug 10 --out data/arc2-cpu

for run in trm_sudoku_mlp trm_sudoku_att trm_maze trm_arc1 trm_arc2 hrm_sudoku hrm_maze hrm_arc1 hrm_arc2; do
  data=$(grep '^data = ' "configs/$run-cpu.toml" | cut -d'"' -f2)
  recursa train "configs/$run-cpu.toml"
  recursa eval "runs/$run-cpu" --data "$data" --limit 400 --json "runs/$run-cpu/eval.json"
done
