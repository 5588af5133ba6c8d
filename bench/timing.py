"""Wall-clock timing shared by the bench scripts (run as ``python bench/NAME.py``, so importable).

CUDA kernels run asynchronously: the device is synchronised before the clock starts and
before it stops, or a time would measure kernel launches rather than the work.
"""
from __future__ import annotations

import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], repeats: int, device: torch.device, *, warmup: bool = True) -> float:
    """Best wall time of ``fn`` over ``repeats`` calls, after one discarded warm-up call if asked."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(max(1, repeats)):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best
