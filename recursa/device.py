"""Devices: choosing one from a name, and moving a numpy batch onto it."""

from __future__ import annotations

import re

import numpy as np
import torch

from .errors import RecursaError


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; a device this
    torch or machine does not have is a one-line error, not a torch traceback."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    where = f"train.device / --device {name!r}"
    version = torch.__version__.split("+")[0]
    if name == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::([0-9]{1,4}))?", name) if isinstance(name, str) else None
    if m:
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda} build, but no GPU is visible" if torch.version.cuda else "CPU build"
            raise RecursaError(f"{where}: this torch has no usable CUDA device (torch {version}, {build}); "
                               "use cpu or auto")
        count = torch.cuda.device_count()
        if m.group(1) is not None and int(m.group(1)) >= count:
            raise RecursaError(f"{where}: there {'is' if count == 1 else 'are'} only {count} CUDA device"
                               f"{'' if count == 1 else 's'} (cuda:0..cuda:{count - 1})")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise RecursaError(f"{where}: this torch has no usable MPS device (torch {version}); use cpu or auto")
        return torch.device("mps")
    raise RecursaError(f"{where}: unknown device (choose from auto, cpu, cuda, cuda:N, mps)")


def to_device(batch: dict[str, np.ndarray], device: torch.device, non_blocking: bool = False) -> dict[str, torch.Tensor]:
    """A numpy batch as tensors on ``device``; ``non_blocking`` (CUDA) copies from pinned memory
    without waiting, so the copy overlaps the work already queued."""
    if non_blocking and device.type == "cuda":
        return {k: torch.from_numpy(np.ascontiguousarray(v)).pin_memory().to(device, non_blocking=True)
                for k, v in batch.items()}
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in batch.items()}
