#!/usr/bin/env bash
# URM, ARC-AGI-2 (paper: 16.0% pass@1; Muon): build, train, evaluate with the published recipe (configs/urm_arc2.toml).
# URM trained on 8 GPUs: torchrun --standalone --nproc-per-node 8 -m recursa train configs/urm_arc2.toml.
# One GPU process as written; on K GPUs run the train line as `torchrun --standalone --nproc-per-node K
# -m recursa train ...` (README: torchrun). Run from the repository
# root with the virtual environment active (`. .venv/bin/activate`).
set -euo pipefail

ARC=${ARC_FILES:-${RECURSA_DATA:?set ARC_FILES to the Kaggle-layout files (PATH/arc-agi), or RECURSA_DATA to the directory holding arc/}/arc/arc-agi}
recursa build arc --version 2 --files "$ARC" --num-aug 1000 --seed 0 --out data/arc2concept-aug-1000
recursa train configs/urm_arc2.toml
recursa eval runs/urm_arc2 --data data/arc2concept-aug-1000 --json runs/urm_arc2/eval.json \
    --submission runs/urm_arc2/submission.json
