"""How much of their bounds the official-fixture checks use, on each instruction set: results/numerics.json.

    python scripts/numerics_margins.py [--isa native,avx2,default] [--record results/numerics.json]

Runs the tests marked ``numerics`` under each instruction set (scripts/emulate_isa.sh) with
RECURSA_NUMERICS_LOG set, so every checked output of tests/numerics.py logs its distances as a
fraction of its bound's unit, and records per fixture and instruction set the largest:

* float32 checks, in units of s_k (the outputs' move when every weight moves by one float32
  rounding): the float64 model to the official fixture, recursa's float32 model to float64 (both
  allowed 8), recursa's float32 model to the fixture (allowed 16);
* bfloat16 checks, in units of e_k (the envelope of randomly rounded bf16 emulations; allowed 1);
* the element-wise ConvSwiGLU check: the smallest share of outputs bit-identical to the
  bf16-rounded math (at least 0.99 required) and the largest error over its rounding bound (<= 1).

A test failing stops the script (its numbers would not be margins). About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISAS = ("native", "avx2", "default")
BOUNDS = {"fixture_to_f64_per_s": 8.0, "f32_to_f64_per_s": 8.0, "f32_to_fixture_per_s": 16.0,
          "emulation_to_fixture_per_e": 1.0, "model_to_fixture_per_e": 1.0, "max_err_per_bound": 1.0,
          "bit_identical": 0.99}


def summarise(lines: list[dict]) -> dict:
    """{check: {what: {measure: largest (bit_identical: smallest)}}} over the logged outputs."""
    out: dict = {}
    for row in lines:
        d = out.setdefault(row["check"], {}).setdefault(row["what"], {})
        for k, v in row.items():
            if k in BOUNDS:
                pick = min if k == "bit_identical" else max
                d[k] = round(pick(d.get(k, v), v), 4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--isa", default="native,avx2,default")
    ap.add_argument("--record", default="results/numerics.json")
    args = ap.parse_args()
    from recursa.tools import results
    isas = [s.strip() for s in args.isa.split(",") if s.strip()]
    if not isas or any(s not in ISAS for s in isas):
        sys.exit(f"--isa {args.isa!r}: choose from {', '.join(ISAS)} (scripts/emulate_isa.sh)")
    command = shlex.join(["python", "scripts/numerics_margins.py", *sys.argv[1:]])
    for isa in isas:
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "log.jsonl"
            env = {**os.environ, "RECURSA_NUMERICS_LOG": str(log)}
            r = subprocess.run([str(ROOT / "scripts" / "emulate_isa.sh"), isa, sys.executable, "-m", "pytest", "-q",
                                "-m", "numerics", "-p", "no:cacheprovider", str(ROOT / "tests")],
                               env=env, cwd=ROOT)
            if r.returncode:
                sys.exit(f"the numerics tests failed under {isa} (exit {r.returncode}): no margins recorded")
            lines = [json.loads(x) for x in log.read_text().splitlines()]
        seen = {x["isa"] for x in lines}
        emulation = lines[0]["emulation"] if lines else {}  # what scripts/emulate_isa.sh set in the tests' process
        machine = {**results.machine(), "isa": ",".join(sorted(seen)), "emulation": emulation}
        for check, by_what in summarise(lines).items():
            results.record(args.record, f"{check}-{isa}", {
                "metrics": by_what, "protocol": {"bounds": {k: BOUNDS[k] for k in next(iter(by_what.values()))},
                                                 "outputs_checked": sum(x["check"] == check for x in lines)},
                "command": command, "machine": machine})
        print(f"{isa}: {len(lines)} checked outputs recorded in {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
