"""Data-parallel training across processes (``torchrun``), with PyTorch's own engine.

``torchrun --nproc-per-node K -m recursa train CONFIG`` starts K processes; each finds its rank in
the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, set by torchrun) and joins one process
group (NCCL on GPUs, gloo on CPUs). How recursa splits the work so that K processes compute what
one process with the same ``train.batch_size`` computes:

- every rank runs the same seeded sampler and the same seeded generator, so all agree on the
  global batch and on every random draw; rank r takes rows [r*b, (r+1)*b) of the global batch
  (b = batch_size / K) and of every draw (the ACT exploration);
- the ACT carry is per rank (its b rows); a checkpoint holds the carry of all ranks gathered in
  row order, i.e. the one-process carry, so a run resumes on any number of processes that divides
  the batch;
- ``DistributedDataParallel`` averages the network gradients (bucketed all-reduce, overlapped
  with the backward pass); each rank's loss is divided by its b rows, so the average is the
  one-process gradient;
- the puzzle-embedding table is a buffer trained by sparse sign-SGD: the touched rows' gradients
  and ids are all-gathered in row order, so every rank applies the one-process update and the
  tables stay equal (no broadcast of buffers);
- metric sums are all-reduced at log intervals only; rank 0 alone logs, evaluates and writes
  checkpoints, while the other ranks wait.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import RecursaError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (world 1: a plain single process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def local_batch(self, batch_size: int) -> int:
        """This process's rows of the global batch ``batch_size`` (which must divide evenly)."""
        if self.active and batch_size % self.world:
            raise RecursaError(f"train.batch_size = {batch_size} does not divide over {self.world} processes "
                               f"(WORLD_SIZE); use a multiple of {self.world}: it is the global batch")
        return batch_size // self.world

    def rows(self, batch_size: int) -> slice:
        """This rank's rows of a global batch."""
        b = batch_size // self.world
        return slice(self.rank * b, (self.rank + 1) * b)


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        raise RecursaError(f"environment variable {name}={v!r} is not an integer (set by torchrun)") from None


def from_env() -> Dist:
    """The job this process belongs to, from torchrun's environment (none: a single process)."""
    world = _env_int("WORLD_SIZE")
    if world is None or world <= 1:
        return Dist()
    rank, local = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None or not 0 <= rank < world:
        raise RecursaError(f"WORLD_SIZE={world} but RANK={os.environ.get('RANK')!r}: launch with torchrun")
    return Dist(rank=rank, world=world, local_rank=local if local is not None else rank)


def setup(d: Dist, device: torch.device, timeout_s: float) -> torch.device:
    """Join the process group; returns this rank's device (cuda:LOCAL_RANK on GPUs)."""
    if not d.active:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise RecursaError(f"distributed training runs on cuda (NCCL) or cpu (gloo), not {device.type}")
    if not dist.is_initialized():
        kw = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kw)
    if dist.get_world_size() != d.world or dist.get_rank() != d.rank:
        raise RecursaError(f"the process group ({dist.get_rank()}/{dist.get_world_size()}) disagrees with "
                           f"RANK/WORLD_SIZE ({d.rank}/{d.world})")
    return device


def teardown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def all_gather_rows(d: Dist, x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` (same shape on all ranks) concatenated along dim 0 in rank order."""
    if not d.active:
        return x
    parts = [torch.empty_like(x) for _ in range(d.world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, 0)


def sum_all(d: Dist, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum scalar tensors over ranks (one collective for all of them)."""
    if not d.active or not values:
        return values
    keys = sorted(values)
    flat = torch.stack([values[k].to(torch.float64) for k in keys])
    dist.all_reduce(flat)
    return {k: flat[i] for i, k in enumerate(keys)}


def any_all(d: Dist, flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (a host sync)."""
    if not d.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_flag(d: Dist, flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (a host sync)."""
    if not d.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item() > 0)


def gather_carry(d: Dist, carry, initial, device):
    """Every rank's carry gathered in row order (the one-process carry), or None when no rank has
    one; a rank without one (its in-flight puzzles dropped by skip_step) gives ``initial()``."""
    if not any_all(d, carry is not None, device):
        return None
    if carry is None:
        carry = initial()
    return carry.map(lambda x: all_gather_rows(d, x))


def min_int(d: Dist, value: torch.Tensor) -> torch.Tensor:
    if not d.active:
        return value
    t = value.clone()
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t
