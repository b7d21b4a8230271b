"""``model.forward_dtype = "auto"``: bfloat16 where it is measured faster for this model on this
machine, else float32.

Whether bfloat16 pays depends on the CPU (AMX or AVX512-BF16: matrix multiplies 3-8x float32's;
AVX2 only: about 100x slower) and on the model (where elementwise work outweighs the matrix
multiplies, as in the ``tiny`` preset, bfloat16 is slower even with AMX; docs/benchmarks.md). So the
trainer times what it will run: a few training steps (ACT forward, the loss, backward) of this
model at this batch size, in float32 and in bfloat16, on copies built for the purpose (the run's
own model, generators and data are not touched), and takes bfloat16 when its step is at least
:data:`MIN_SPEEDUP` times faster. Weights (and the EMA) stay float32 either way: forward_dtype is
the dtype of the activations, weights are cast at use.

The choice is written into the run's config (``config.toml``, checkpoints), so evaluation and a
resumed run compute as the run trained; ``forward_dtype = "auto"`` in a recipe resolves again on
resume (a machine that decides otherwise cannot continue the run bit-identically, and says so).
In a distributed run rank 0's measurement decides for all.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from ..models import DataSpec, build_model
from . import distributed
from .losses import act_loss

#: bfloat16 is chosen when its training step is at least this much faster than float32's.
MIN_SPEEDUP = 1.2
TIMED_STEPS = 3


def step_seconds(cfg_model, spec: DataSpec, batch_size: int, device: torch.device, dtype: str,
                 steps: int = TIMED_STEPS, loss: str = "stablemax") -> float:
    """Median seconds of one training step (forward, loss, backward; no optimiser) of a fresh
    model of ``cfg_model`` in ``dtype`` on a random batch, after one untimed step."""
    model = build_model(dataclasses.replace(cfg_model, forward_dtype=dtype), spec, seed=0).to(device).train()
    gen = torch.Generator().manual_seed(0)
    batch = {"inputs": torch.randint(0, spec.vocab_size, (batch_size, spec.seq_len), generator=gen),
             "labels": torch.randint(1, spec.vocab_size, (batch_size, spec.seq_len), generator=gen),
             "puzzle_identifiers": torch.zeros(batch_size, dtype=torch.int32)}
    batch = {k: v.to(device) for k, v in batch.items()}
    draw = torch.Generator(device=device).manual_seed(0)
    carry = model.initial_carry(batch)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        carry, out = model(carry, batch, generator=draw)
        total, _ = act_loss(out, carry.data["labels"], carry.halted, carry.steps, loss)
        total.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return statistics.median(times)


def choose(float32_s: float, bfloat16_s: float) -> str:
    return "bfloat16" if bfloat16_s * MIN_SPEEDUP <= float32_s else "float32"


def resolve(cfg, spec: DataSpec, device: torch.device, dist, log=print, timer=None):
    """``cfg`` with ``model.forward_dtype = "auto"`` replaced by the measured choice, said in one
    ``log`` line (other values: ``cfg`` unchanged). ``timer``: :func:`step_seconds` by default."""
    if cfg.model.forward_dtype != "auto":
        return cfg
    timer = timer or step_seconds
    local = max(1, cfg.train.batch_size // max(dist.world, 1))
    f32 = timer(cfg.model, spec, local, device, "float32", loss=cfg.train.loss)
    b16 = timer(cfg.model, spec, local, device, "bfloat16", loss=cfg.train.loss)
    use_bf16 = distributed.broadcast_flag(dist, choose(f32, b16) == "bfloat16", device)
    dtype = "bfloat16" if use_bf16 else "float32"
    line = (f"model.forward_dtype = \"auto\": {dtype} (a training step of this model here: float32 {1000 * f32:.0f} ms, "
            f"bfloat16 {1000 * b16:.0f} ms, {f32 / b16:.2f}x; bfloat16 needs >= {MIN_SPEEDUP}x)")
    log(line)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, forward_dtype=dtype))
