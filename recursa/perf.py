"""Process-level settings that make CPU training and inference faster.

**The memory allocator.** PyTorch on a CPU gets its tensors from the C library's ``malloc``. glibc
serves every request above its *mmap threshold* (128 KiB at start, raised adaptively up to the
size of the largest block freed) with a fresh ``mmap`` and returns it to the kernel on ``free``, and
it hands the top of the heap back to the kernel whenever more than the *trim threshold* is free.
A recursive model allocates and frees the same few activation sizes (0.5-30 MB) hundreds of times
per step, so the default settings turn many of them into new pages the kernel must fault in and
zero: measured on 2 cores, about 13,000 page faults per ``tiny`` inference batch with glibc's
defaults against ~350 with the settings below, which keep freed blocks for reuse; the official
TRM code itself runs ``sudoku-mlp`` inference 1.45x and ``tiny`` inference 1.18x faster with them
(``docs/benchmarks.md``). The cost: memory freed late in a run stays with the process, so the
peak resident size can be a few percent higher than the live tensors need.

:func:`tune_allocator` sets ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` with ``mallopt`` (glibc
only; elsewhere it does nothing). The command line calls it at start-up; library users may call
it themselves. ``RECURSA_MALLOC=system`` leaves the C library's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 256 << 20  # requests above this still get their own mapping
TRIM_THRESHOLD = 1 << 30

_state: str | None = None


def tune_allocator() -> str:
    """Keep freed heap blocks for reuse (glibc). Returns what was done: "tuned", "system"
    (asked not to: ``RECURSA_MALLOC=system``) or "unavailable" (not glibc)."""
    global _state
    if _state is not None:
        return _state
    if os.environ.get("RECURSA_MALLOC", "").strip().lower() == "system":
        _state = "system"
        return _state
    _state = "unavailable"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return _state
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _state
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Older glibc caps the mmap threshold at 32 MiB (HEAP_MAX_SIZE / 2) and refuses more.
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) or mallopt(_M_MMAP_THRESHOLD, 32 << 20)):
        return _state
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    _state = "tuned"
    return _state


def allocator_state() -> str:
    """"tuned", "system", "unavailable", or "default" when :func:`tune_allocator` was not called."""
    return _state or "default"
