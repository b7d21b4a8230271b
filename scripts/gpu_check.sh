#!/usr/bin/env bash
# The GPU check: run once on a CUDA machine, from the repository root, after `make venv`
# (a CUDA build of torch: pip install torch with the CUDA wheel of your driver). Writes one JSON
# object per line to $1 (default gpu_check.jsonl); takes about 15 minutes on one GPU.
#   1. `recursa bench train|infer` on every preset, bf16, with and without torch.compile;
#   2. a 2-minute 9x9 Sudoku training run (bf16) and its evaluation at 8 and 16 steps;
#   3. the same run under torchrun on all GPUs of the node (skipped with one GPU), and its evaluation.
# Put the figures in docs/benchmarks.md ("GPU").
# A dry run of the script itself on a CPU (2 processes for the torchrun part, short runs):
#   DEVICE=cpu PRESETS=tiny BENCH_S=2 TRAIN_S=10 NPROC=2 DTYPE=float32 scripts/gpu_check.sh /tmp/check.jsonl
set -euo pipefail
OUT=${1:-gpu_check.jsonl}
DEVICE=${DEVICE:-cuda}
PRESETS=${PRESETS:-tiny small sudoku-mlp sudoku-att}
BENCH_S=${BENCH_S:-20}
TRAIN_S=${TRAIN_S:-120}
DTYPE=${DTYPE:-bfloat16}
RECURSA=${RECURSA:-.venv/bin/recursa}
PY=${PY:-.venv/bin/python}
WORK=${WORK:-runs/gpu_check}
mkdir -p "$WORK"
: > "$OUT"

emit() {  # emit LABEL FILE: append FILE's JSON object to $OUT with "check": LABEL
    "$PY" - "$1" "$2" "$OUT" <<'PYEOF'
import json, sys
label, path, out = sys.argv[1:4]
with open(path) as f:
    d = json.load(f)
with open(out, "a") as f:
    f.write(json.dumps({"check": label, **d}) + "\n")
PYEOF
}

emit_last_train_row() {  # emit_last_train_row METRICS LABEL: the run's last training-metrics row
    "$PY" - "$1" "$2" "$OUT" <<'PYEOF'
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
last = [r for r in rows if "train/loss" in r][-1]
with open(sys.argv[3], "a") as f:
    f.write(json.dumps({"check": sys.argv[2], **last}) + "\n")
PYEOF
}

if [ "$DEVICE" = cuda ]; then
    NGPU=$("$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.device_count())')
else
    NGPU=${NPROC:-2}
fi
"$PY" - "$OUT" "$DEVICE" <<'PYEOF'
import json, os, sys, torch
info = {"check": "machine", "device": sys.argv[2], "torch": torch.__version__, "cpus": os.cpu_count()}
if sys.argv[2] == "cuda":
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpus=torch.cuda.device_count(), memory_gib=round(p.total_memory / 2**30, 1),
                cuda=torch.version.cuda, bf16=torch.cuda.is_bf16_supported())
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(info) + "\n")
PYEOF

for preset in $PRESETS; do
    for target in train infer; do
        for comp in "" "--compile"; do
            "$RECURSA" bench "$target" --preset "$preset" --device "$DEVICE" --dtype "$DTYPE" $comp \
                --seconds "$BENCH_S" --warmup 5 --json "$WORK/bench.json"
            emit "bench-$target-$preset${comp:+-compile}" "$WORK/bench.json"
        done
    done
done

"$RECURSA" build sudoku --box 3x3 --givens 30 --num-train 2000 --num-aug 9 --num-test 500 --overwrite \
    --out "$WORK/sudoku9"
COMMON=(--set "train.data=$WORK/sudoku9" --set "train.device=$DEVICE" --set "model.forward_dtype=$DTYPE"
        --set "train.max_time_s=$TRAIN_S" --set train.steps=0 --set train.eval_interval=-1 --quiet)
rm -rf "$WORK/one"
"$RECURSA" train configs/sudoku9_trm_cpu.toml "${COMMON[@]}" --set "train.out=$WORK/one"
for steps in 8 16; do
    "$RECURSA" eval "$WORK/one" --data "$WORK/sudoku9" --steps $steps --json "$WORK/eval.json"
    emit "sudoku9-${TRAIN_S}s-1proc-eval-$steps" "$WORK/eval.json"
done
emit_last_train_row "$WORK/one/metrics.jsonl" "sudoku9-${TRAIN_S}s-1proc-train"

if [ "$NGPU" -gt 1 ]; then
    rm -rf "$WORK/all"
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m torch.distributed.run --standalone --nproc-per-node "$NGPU" \
        -m recursa train configs/sudoku9_trm_cpu.toml "${COMMON[@]}" \
        --set "train.out=$WORK/all" --set "train.batch_size=$((64 * NGPU))"
    "$RECURSA" eval "$WORK/all" --data "$WORK/sudoku9" --steps 8 --json "$WORK/eval.json"
    emit "sudoku9-${TRAIN_S}s-${NGPU}proc-eval-8" "$WORK/eval.json"
    emit_last_train_row "$WORK/all/metrics.jsonl" "sudoku9-${TRAIN_S}s-${NGPU}proc-train"
fi
echo "wrote $OUT"
