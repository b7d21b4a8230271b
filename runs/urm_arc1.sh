#!/usr/bin/env bash
# URM, ARC-AGI-1 (paper: 53.8% pass@1): build, train, evaluate with the published recipe (configs/urm_arc1.toml).
# URM trained on 8 GPUs: torchrun --standalone --nproc-per-node 8 -m recursa train configs/urm_arc1.toml.
# One GPU process as written; on K GPUs run the train line as `torchrun --standalone --nproc-per-node K
# -m recursa train ...` (README: torchrun). Run from the repository
# root with the virtual environment active (`. .venv/bin/activate`).
set -euo pipefail

ARC=${ARC_FILES:-${RECURSA_DATA:?set ARC_FILES to the Kaggle-layout files (PATH/arc-agi), or RECURSA_DATA to the directory holding arc/}/arc/arc-agi}
recursa build arc --version 1 --files "$ARC" --num-aug 1000 --seed 0 --out data/arc1concept-aug-1000
recursa train configs/urm_arc1.toml
recursa eval runs/urm_arc1 --data data/arc1concept-aug-1000 --json runs/urm_arc1/eval.json \
    --submission runs/urm_arc1/submission.json
