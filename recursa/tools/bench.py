"""Speed of the training step and of inference, on synthetic Sudoku-shaped data (``recursa bench
train|infer``). The numbers are measured on recursa's real code paths: the trainer's own
``train_step`` (ACT forward with the carry kept, backward of loss / batch, optimizer step, the
sign-SGD puzzle-embedding step) and the inference engine's ``think`` (every row run to
``halt_max_steps``, as ``recursa eval`` runs it).

One JSON object per run (see ``docs/benchmarks.md`` for the schema):

- ``samples_per_s`` (train) or ``puzzles_per_s`` (infer), ``tokens_per_s`` (x seq_len);
- ``step_ms_median``: one optimizer step (train) or one batch solved to the last step (infer);
- ``peak_rss_mib``: the process's peak resident memory;
- ``params``; ``model_gflop_per_step``: the matrix-multiply FLOPs of one step, counted by
  ``torch.utils.flop_counter`` (forward + backward for train); ``achieved_gflops`` = that / the
  median step time;
- ``matmul_gflops``: a plain ``torch.mm`` of the step's largest matrix multiply, timed in the same
  process with the same dtype and threads: the hardware's rate on that shape, so
  ``achieved_gflops / matmul_gflops`` reads as how well the step uses the machine.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .. import config as config_mod
from ..data.format import make_split, write_dataset
from ..device import pick_device, to_device
from ..errors import RecursaError
from ..inference.engine import Protocol, think
from ..models import DataSpec, build_model, fused
from ..perf import allocator_state
from ..training.trainer import Trainer
from .bench_official import OfficialDriver, same_math

SEQ_LEN, VOCAB = 81, 11  # Sudoku-shaped: 81 cells, PAD + blank + 9 digits


@dataclass(frozen=True)
class Preset:
    description: str
    model: dict
    train_batch: int
    infer_batch: int
    train: dict = field(default_factory=dict)


_COMMON = {"arch": "trm", "expansion": 4.0, "puzzle_emb_ndim": -1, "puzzle_emb_len": 16, "halt_exploration_prob": 0.1,
           "L_layers": 2, "mlp_t": False, "pos_encodings": "rope"}
_SUDOKU = {**_COMMON, "hidden_size": 512, "num_heads": 8, "H_cycles": 3, "L_cycles": 6, "halt_max_steps": 16}
PRESETS = {
    "tiny": Preset("hidden 64, 2 heads, 2 layers, T=2, n=2, 4 supervision steps, attention + RoPE",
                   {**_COMMON, "hidden_size": 64, "num_heads": 2, "H_cycles": 2, "L_cycles": 2, "halt_max_steps": 4},
                   32, 32),
    "small": Preset("hidden 128, 4 heads, 2 layers, T=3, n=4, 8 supervision steps, attention + RoPE",
                    {**_COMMON, "hidden_size": 128, "num_heads": 4, "H_cycles": 3, "L_cycles": 4, "halt_max_steps": 8},
                    64, 64),
    "sudoku-mlp": Preset("the paper's Sudoku model: hidden 512, 2 layers, T=3, n=6, 16 steps, MLP token mixer",
                         {**_SUDOKU, "mlp_t": True, "pos_encodings": "none"}, 16, 4),
    "sudoku-att": Preset("as sudoku-mlp with 8-head attention + RoPE", _SUDOKU, 16, 4),
}
TRAIN = {"optimizer": "adamw", "lr": 1e-4, "beta1": 0.9, "beta2": 0.95, "weight_decay": 1.0, "lr_warmup_steps": 1,
         "puzzle_emb_lr": 1e-2, "puzzle_emb_weight_decay": 0.1, "ema": False, "eval_interval": -1, "log_interval": 1000}


def synthetic_dataset(out: Path, examples: int, seed: int = 0) -> None:
    """Random Sudoku-shaped puzzles (one puzzle identifier): speed does not depend on content."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(1, VOCAB, size=(examples, SEQ_LEN))
    labels = rng.integers(2, VOCAB, size=(examples, SEQ_LEN))
    split = make_split(inputs, labels, vocab_size=VOCAB, num_identifiers=2, puzzle_identifiers=np.ones(examples, np.int32))
    write_dataset(out, {"train": split, "test": split}, ["<blank>", "synthetic"],
                  {"format_version": 1, "task": "sudoku", "params": {"box_rows": 3, "box_cols": 3}})


class _MatmulShapes(torch.utils._python_dispatch.TorchDispatchMode):
    """Records (M, K, N) of every matrix multiply run under it."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, int, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        aten = torch.ops.aten
        if func in (aten.mm.default, aten.addmm.default):
            a, b = (args[0], args[1]) if func is aten.mm.default else (args[1], args[2])
            self.shapes.append((a.shape[0], a.shape[1], b.shape[1]))
        elif func is aten.linear.default:  # not decomposed under inference_mode
            x, w = args[0], args[1]
            self.shapes.append((x.numel() // x.shape[-1], x.shape[-1], w.shape[0]))
        elif func is aten.bmm.default:
            a, b = args[0], args[1]
            self.shapes.append((a.shape[0] * a.shape[1], a.shape[2], b.shape[2]))
        return func(*args, **(kwargs or {}))


def _count(fn) -> tuple[float, tuple[int, int, int] | None]:
    """(matmul GFLOP of one call of ``fn``, the largest matmul shape by FLOPs)."""
    shapes = _MatmulShapes()
    with FlopCounterMode(display=False) as counter, shapes:
        fn()
    largest = max(shapes.shapes, key=lambda s: s[0] * s[1] * s[2], default=None)
    return counter.get_total_flops() / 1e9, largest


def matmul_rate(shape: tuple[int, int, int], dtype: torch.dtype, device: torch.device, seconds: float = 1.0) -> float:
    """GFLOP/s of ``torch.mm`` of an (M, K) by (K, N) product, in this process."""
    m, k, n = shape
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or reps < 3:
        a @ b
        reps += 1
    _sync(device)
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / (1 << 20) if sys.platform == "darwin" else kib / 1024, 1)


class _Step:
    """One implementation's step on a preset: ``one()`` runs a training step or solves a batch."""

    def __init__(self, impl: str, target: str, preset: Preset, batch: int, dtype: str, dev: torch.device,
                 threads: int, compile: bool, work: Path, official: str | None):

        self.trainer = None
        if impl == "official":
            driver = OfficialDriver(Path(official), preset.model, batch, dtype, dev, synthetic_batch(batch, dev), TRAIN)
            self.one = driver.train_step if target == "train" else driver.solve
            self.params = driver.n_params
            if compile:
                driver.model.inner.forward = torch.compile(driver.model.inner.forward)
            return
        if target == "infer":  # the inference engine alone, as `recursa eval` runs it after loading
            cfg = config_mod.ModelConfig(**{**preset.model, "forward_dtype": dtype})
            model = build_model(cfg, DataSpec(VOCAB, SEQ_LEN, 2, grid=(9, 9)), seed=0).to(dev).eval()  # Sudoku-shaped
            self.params = sum(x.numel() for x in model.parameters())
            if compile:
                model.inner.forward = torch.compile(model.inner.forward)
            data = synthetic_batch(batch, dev)

            protocol = Protocol.as_trained(model)

            def one():
                for _ in think(model, data, protocol):
                    pass
            self.one = one
            return
        synthetic_dataset(work / "data", max(4 * batch, 256))
        cfg = config_mod.from_dict({"model": {**preset.model, "forward_dtype": dtype},
                                    "train": {**TRAIN, "data": str(work / "data"), "out": str(work / "run"),
                                              "batch_size": batch, "steps": 10**9, "seed": 0,
                                              "num_threads": threads, "device": dev.type,
                                              "compile": compile}})  # as `train.compile` runs it
        trainer = self.trainer = Trainer(cfg, progress=False, log=lambda *a: None)
        self.params = trainer.n_params

        def one():
            trainer.train_step(to_device(trainer.sampler.next_batch(), dev))
        self.one = one

    def close(self) -> None:
        if self.trainer is not None:
            self.trainer.close()


def _check_args(preset: str, threads: int, seconds: float, steps: int, warmup: int, batch: int) -> Preset:
    if preset not in PRESETS:
        raise RecursaError(f"--preset {preset!r}: choose from {', '.join(PRESETS)}")
    if threads < 0 or seconds <= 0 or steps < 0 or warmup < 0 or batch < 0:
        raise RecursaError("--threads, --steps, --warmup and --batch must be >= 0, --seconds > 0")
    return PRESETS[preset]


def run(target: str, preset: str, *, dtype: str = "float32", threads: int = 0, device: str = "cpu",
        compile: bool = False, seconds: float = 30.0, steps: int = 0, warmup: int = 3, batch: int = 0,
        impl: str = "recursa", official: str | None = None, reference_ops: bool = False) -> dict:
    """Measure ``target`` ("train" or "infer") on ``preset``; returns the JSON row. ``batch`` 0 means
    the preset's batch size. ``impl="official"`` drives the official TRM code found in the
    checkout ``official`` the way its training and evaluation loops do (see :mod:`recursa.tools.bench_official`);
    ``reference_ops`` runs recursa with the plain PyTorch elementwise ops (no :mod:`recursa.models.fused`)."""

    p = _check_args(preset, threads, seconds, steps, warmup, batch)
    if impl not in ("recursa", "official"):
        raise RecursaError(f"--impl {impl!r}: choose recursa or official")
    if impl == "official" and not official:
        raise RecursaError("--impl official needs --official DIR (a checkout of the official TinyRecursiveModels code)")
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    batch = batch or (p.train_batch if target == "train" else p.infer_batch)
    work = Path(tempfile.mkdtemp(prefix="recursa-bench-"))
    step = None
    try:
        step = _Step(impl, target, p, batch, dtype, dev, threads, compile, work, official)
        with fused.reference_ops(reference_ops):
            for _ in range(max(warmup - 1, 0)):
                step.one()
            gflop, largest = _count(step.one)  # counted step (not timed): also the last warm-up step
            _sync(dev)
            times: list[float] = []
            t_start = time.perf_counter()
            while (len(times) < steps) if steps else (time.perf_counter() - t_start < seconds or len(times) < 3):
                t = time.perf_counter()
                step.one()
                _sync(dev)
                times.append(time.perf_counter() - t)
    finally:
        if step is not None:
            step.close()
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median(times)
    mean = sum(times) / len(times)
    rate = matmul_rate(largest, getattr(torch, dtype), dev) if largest else None
    per_s = batch / mean
    return {"bench": target, "preset": preset, "impl": impl, "device": dev.type, "dtype": dtype,
            "threads": torch.get_num_threads(), "compile": compile, "batch": batch, "steps_timed": len(times),
            ("samples_per_s" if target == "train" else "puzzles_per_s"): round(per_s, 3),
            "tokens_per_s": round(per_s * SEQ_LEN, 1), "step_ms_median": round(1000 * med, 2),
            "peak_rss_mib": _peak_rss_mib(), "params": step.params, "model_gflop_per_step": round(gflop, 4),
            "achieved_gflops": round(gflop / med, 2), "matmul_gflops": round(rate, 2) if rate else None,
            "matmul_shape": list(largest) if largest else None, "fused_ops": impl == "recursa" and not reference_ops,
            "allocator": allocator_state(), "torch": torch.__version__, "cpus": os.cpu_count()}


def run_pair(target: str, preset: str, official: str, *, dtype: str = "float32", threads: int = 0,
             device: str = "cpu", compile: bool = False, seconds: float = 30.0, steps: int = 0, warmup: int = 3,
             batch: int = 0, reference_ops: bool = False) -> dict:
    """Both implementations in this one process, their steps alternated (official, recursa,
    official, ...) so that both see the same machine at the same moments: the speed ratio of the
    code alone (same allocator, same threads). ``steps``/``seconds`` count per implementation."""

    p = _check_args(preset, threads, seconds, steps, warmup, batch)
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    batch = batch or (p.train_batch if target == "train" else p.infer_batch)
    work = Path(tempfile.mkdtemp(prefix="recursa-bench-"))
    made: dict[str, _Step] = {}
    times: dict[str, list[float]] = {"official": [], "recursa": []}
    try:
        for impl in times:
            made[impl] = _Step(impl, target, p, batch, dtype, dev, threads, compile, work, official)
        with fused.reference_ops(reference_ops):
            for _ in range(warmup):
                for impl in times:
                    made[impl].one()
            _sync(dev)
            t_start = time.perf_counter()
            while (len(times["recursa"]) < steps) if steps else \
                    (time.perf_counter() - t_start < 2 * seconds or len(times["recursa"]) < 3):
                for impl in times:
                    t = time.perf_counter()
                    made[impl].one()
                    _sync(dev)
                    times[impl].append(time.perf_counter() - t)
    finally:
        for s in made.values():
            s.close()
        shutil.rmtree(work, ignore_errors=True)
    key = "samples_per_s" if target == "train" else "puzzles_per_s"
    rows = {impl: {key: round(batch / statistics.median(t), 3), "step_ms_median": round(1000 * statistics.median(t), 2),
                   "steps_timed": len(t)} for impl, t in times.items()}
    return {"bench": target, "preset": preset, "mode": "same-process", "dtype": dtype, "batch": batch,
            "threads": torch.get_num_threads(), "allocator": allocator_state(),
            "speedup": round(rows["recursa"][key] / rows["official"][key], 3), **rows}


def synthetic_batch(batch: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """One batch of random Sudoku-shaped puzzles (for drivers that take tensors, not a dataset)."""
    rng = np.random.default_rng(seed)
    return {"inputs": torch.from_numpy(rng.integers(1, VOCAB, size=(batch, SEQ_LEN)).astype(np.int32)).to(device),
            "labels": torch.from_numpy(rng.integers(2, VOCAB, size=(batch, SEQ_LEN)).astype(np.int32)).to(device),
            "puzzle_identifiers": torch.ones(batch, dtype=torch.int32, device=device)}


def _child(target: str, preset: str, impl: str, root: Path, out: Path, env: dict, kw: dict) -> dict:
    """One ``bench --impl IMPL`` in its own process; its JSON row."""
    argv = [sys.executable, "-m", "recursa", "bench", target, "--preset", preset, "--impl", impl,
            "--official", str(root), "--json", str(out)]
    for key in ("dtype", "threads", "device", "seconds", "steps", "warmup", "batch"):
        if kw.get(key) is not None:  # 0 passes through: --warmup 0 means none, elsewhere the default
            argv += [f"--{key}", str(kw[key])]
    if kw.get("compile"):
        argv.append("--compile")
    if kw.get("reference_ops"):
        argv.append("--reference-ops")
    res = subprocess.run(argv, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RecursaError(f"bench --impl {impl} failed: {last}")
    return json.loads(out.read_text())


def compare(target: str, preset: str, official: str, *, official_malloc: str = "system", rounds: int = 2,
            **kw) -> dict:
    """recursa against the official code on ``preset``, two ways:

    1. ``same_process``: both in one process, steps alternated (:func:`run_pair`): the code's
       speed ratio on the same machine at the same moments, with the same allocator;
    2. as each is run: each implementation in its own process (so each has its own peak memory),
       ``rounds`` times in the order official, recursa, recursa, official, ... (drift in the
       machine's speed cancels), the official one with the C library's allocator defaults as its
       users run it (``official_malloc="tuned"``: with recursa's). The medians of each side's
       rows, the speed and peak-memory ratios.

    Also :func:`recursa.tools.bench_official.same_math`'s differences (same weights, one step)."""
    _check_args(preset, kw.get("threads", 0), kw.get("seconds", 1.0), kw.get("steps", 0), kw.get("warmup", 0),
                kw.get("batch", 0))
    root = Path(official).resolve()
    diffs = same_math(root, PRESETS[preset].model, synthetic_batch(2, torch.device("cpu")), kw.get("dtype", "float32"))

    order = ["pair"]
    for r in range(rounds):
        order += ["official", "recursa"] if r % 2 == 0 else ["recursa", "official"]
    rows: dict[str, list[dict]] = {"official": [], "recursa": []}
    with tempfile.TemporaryDirectory(prefix="recursa-compare-") as tmp:
        for i, impl in enumerate(order):
            env = dict(os.environ)
            if impl == "official" and official_malloc == "system":
                env["RECURSA_MALLOC"] = "system"
            row = _child(target, preset, impl, root, Path(tmp) / f"{i}.json", env, kw)
            if impl == "pair":
                pair = row
            else:
                rows[impl].append(row)
    key = "samples_per_s" if target == "train" else "puzzles_per_s"
    summary = {}
    for impl, rs in rows.items():
        summary[impl] = {k: statistics.median(r[k] for r in rs) for k in
                         (key, "step_ms_median", "peak_rss_mib", "achieved_gflops", "matmul_gflops")}
        summary[impl].update({k: rs[0][k] for k in ("params", "model_gflop_per_step", "allocator", "fused_ops")})
        summary[impl]["runs"] = [r[key] for r in rs]
    o, m = summary["official"], summary["recursa"]
    return {"bench": target, "preset": preset, "compare": "official", "dtype": kw.get("dtype", "float32"),
            "threads": rows["recursa"][0]["threads"], "batch": rows["recursa"][0]["batch"],
            "speedup_same_process": pair["speedup"], "speedup": round(m[key] / o[key], 3),
            "peak_rss_ratio": round(m["peak_rss_mib"] / o["peak_rss_mib"], 3),
            "recursa_matmul_fraction": round(m["achieved_gflops"] / m["matmul_gflops"], 3) if m["matmul_gflops"] else None,
            "official_matmul_fraction": round(o["achieved_gflops"] / o["matmul_gflops"], 3) if o["matmul_gflops"] else None,
            "same_math_max_abs_diff": {k: float(f"{v:.3g}") for k, v in diffs.items()},
            "same_process": pair, "official": o, "recursa": m, "torch": torch.__version__, "cpus": os.cpu_count()}


def measure(target: str, preset: str, *, official: str | None = None, impl: str | None = None,
            official_malloc: str = "system", **kw) -> dict:
    """``recursa bench train|infer``: recursa alone (``impl`` None or "recursa"), the official code
    alone ("official"), both in one process ("pair"), or, given ``official`` without ``impl``, the
    side-by-side :func:`compare`. ``kw``: :func:`run`'s settings."""
    if official and not impl:
        return compare(target, preset, official, official_malloc=official_malloc, **kw)
    if impl == "pair":
        if not official:
            raise RecursaError("--impl pair needs --official DIR (a checkout of the official TinyRecursiveModels code)")
        return run_pair(target, preset, official, **kw)
    return run(target, preset, impl=impl or "recursa", official=official, **kw)
