#!/usr/bin/env bash
# Run a command as on a CPU with fewer instruction sets: float32 kernels round differently on each,
# so numerical tests and trained results are checked under each (.ci/run, docs/benchmarks.md).
#   scripts/emulate_isa.sh native|avx2|default COMMAND...
#     native   this CPU as it is (AVX-512, AVX512-BF16, AMX where it has them)
#     avx2     an AVX2-only CPU: ATen's AVX2 kernels, oneDNN and MKL capped at AVX2 (bf16 emulated, slow)
#     default  no vector extensions in ATen's own kernels; oneDNN capped at SSE4.1, MKL at SSE4.2
set -euo pipefail
isa=${1:?usage: emulate_isa.sh native|avx2|default COMMAND...}
shift
case "$isa" in
    native) ;;
    avx2) export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ;;
    default) export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 ;;
    *) echo "emulate_isa.sh: unknown instruction set '$isa' (native, avx2 or default)" >&2; exit 2 ;;
esac
exec "$@"
