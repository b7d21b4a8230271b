"""docs/benchmarks.md's speed tables, rendered from results/bench.json (``bash runs/reproduce_readme.sh bench``).

    python scripts/bench_tables.py                         # print the tables
    python scripts/bench_tables.py --write docs/benchmarks.md   # replace them in the page
    python scripts/bench_tables.py --check docs/benchmarks.md   # exit 1 if the page's tables differ

Each table sits in the page between ``<!-- bench:NAME -->`` and ``<!-- /bench -->``; everything
else of the page is left as it is. tests/test_results.py checks the page against the record.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("tiny", "small", "sudoku-mlp", "sudoku-att")
TARGETS = ("train", "infer")


def _rate(m: dict) -> float:
    return m.get("samples_per_s") or m.get("puzzles_per_s") or 0.0


def _n(x: float) -> str:
    """A rate or size with 3 significant figures (thousands separated)."""
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}" if x < 10 else f"{x:.1f}"


def _rows(rec: dict, suffix: str):
    for p in PRESETS:
        for t in TARGETS:
            fig = rec["figures"].get(f"{t}-{p}-{suffix}")
            if fig is not None:
                yield p, t, fig["metrics"]


def table_fp32(rec: dict) -> list[str]:
    out = ["| preset | target | batch | samples or puzzles /s | step ms (median) | GFLOP / step | achieved GFLOP/s "
           "| matmul GFLOP/s | achieved / matmul | peak RSS MiB | params |", "|" + "---|" * 11]
    for p, t, m in _rows(rec, "float32"):
        out.append(f"| {p} | {t} | {m['batch']} | {_n(_rate(m))} | {m['step_ms_median']:,.0f} | "
                   f"{_n(m['model_gflop_per_step'])} | {m['achieved_gflops']:.1f} | {m['matmul_gflops']:.1f} | "
                   f"{m['achieved_gflops'] / m['matmul_gflops']:.2f} | {m['peak_rss_mib']:,.0f} | {m['params']:,} |")
    return out


def table_official(rec: dict) -> list[str]:
    out = ["| preset | target | same process: official / recursa | ratio | separate processes: official / recursa "
           "| ratio | peak RSS MiB official / recursa | achieved / matmul, official / recursa | largest difference, one step |",
           "|" + "---|" * 9]
    for p, t, m in _rows(rec, "float32-official"):
        sp, o, r = m["same_process"], m["official"], m["recursa"]
        diff = max(m["same_math_max_abs_diff"].values())
        out.append(f"| {p} | {t} | {_n(_rate(sp['official']))} / {_n(_rate(sp['recursa']))} | **{m['speedup_same_process']:.2f}x** | "
                   f"{_n(_rate(o))} / {_n(_rate(r))} | {m['speedup']:.2f}x | "
                   f"{o['peak_rss_mib']:,.0f} / {r['peak_rss_mib']:,.0f} ({m['peak_rss_ratio']:.2f}) | "
                   f"{m['official_matmul_fraction']:.2f} / {m['recursa_matmul_fraction']:.2f} | {diff:g} |")
    return out


def table_bf16(rec: dict) -> list[str]:
    out = ["| preset | target | bf16 samples or puzzles /s | vs recursa fp32 | vs official fp32 | achieved / matmul GFLOP/s "
           "| peak RSS MiB |", "|" + "---|" * 7]
    for p, t, m in _rows(rec, "bfloat16"):
        f32 = rec["figures"].get(f"{t}-{p}-float32", {}).get("metrics")
        off = rec["figures"].get(f"{t}-{p}-float32-official", {}).get("metrics")
        vs = lambda ref: f"{_rate(m) / _rate(ref):.2f}x" if ref else "-"  # noqa: E731
        out.append(f"| {p} | {t} | {_n(_rate(m))} | {vs(f32)} | {vs(off and off['official'])} | "
                   f"{m['achieved_gflops']:.0f} / {m['matmul_gflops']:.0f} | {m['peak_rss_mib']:,.0f} |")
    return out


def table_changes(rec: dict) -> list[str]:
    """What each change buys, each against its own baseline row of the record."""
    f = {k: v["metrics"] for k, v in rec["figures"].items()}
    out = ["| change | measured on | with / without (samples or puzzles /s) | ratio |", "|---|---|---|---|"]

    def row(what, on, a, b):
        if a is not None and b is not None:
            out.append(f"| {what} | {on} | {_n(a)} / {_n(b)} | {a / b:.2f}x |")

    for t in TARGETS:
        a, b = f.get(f"{t}-tiny-float32"), f.get(f"{t}-tiny-float32-reference-ops")
        row("`recursa/models/fused.py` (against `--reference-ops`)", f"tiny {t}", a and _rate(a), b and _rate(b))
    a, b = f.get("train-tiny-float32-compile"), f.get("train-tiny-float32")
    row("`--compile`", "tiny train", a and _rate(a), b and _rate(b))
    a, b = f.get("infer-sudoku-mlp-float32-official-tuned-malloc"), f.get("infer-sudoku-mlp-float32-official")
    row("recursa's allocator settings, given to the official code", "sudoku-mlp infer, official",
        a and _rate(a["official"]), b and _rate(b["official"]))
    return out


TABLES = {"fp32": table_fp32, "official": table_official, "bf16": table_bf16, "changes": table_changes}
BLOCK = re.compile(r"(<!-- bench:(\w+) -->\n)(.*?)(<!-- /bench -->)", re.S)


def render(page: str, rec: dict) -> str:
    def sub(m):
        if m.group(2) not in TABLES:
            raise SystemExit(f"unknown table bench:{m.group(2)} (choose from: {', '.join(TABLES)})")
        return m.group(1) + "\n".join(TABLES[m.group(2)](rec)) + "\n" + m.group(4)
    return BLOCK.sub(sub, page)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", default=str(ROOT / "results" / "bench.json"))
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", metavar="PAGE")
    g.add_argument("--check", metavar="PAGE")
    args = ap.parse_args()
    from recursa.tools import results
    rec = results.read(args.record)
    if not (args.write or args.check):
        for name, fn in TABLES.items():
            print(f"<!-- bench:{name} -->\n" + "\n".join(fn(rec)) + "\n<!-- /bench -->\n")
        return 0
    page_path = Path(args.write or args.check)
    page = page_path.read_text()
    if not BLOCK.search(page):
        sys.exit(f"{page_path}: no <!-- bench:NAME --> blocks")
    new = render(page, rec)
    if args.check:
        if new != page:
            print(f"{page_path}: its bench tables differ from {args.record} (python scripts/bench_tables.py --write {page_path})")
            return 1
        return 0
    from recursa.storage import atomic_write_text
    atomic_write_text(page_path, new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
