"""The one batching engine every method uses.

A method describes its work as ``n`` independent items (noisy copies, IG steps, masks,
occluder positions, channels...) and a function that processes the half-open slice
``[start, stop)`` of them on the device. The engine picks the batch size, halves it and
retries the same slice when the device runs out of memory, reports progress, and runs each
batch in the precision its section is given by ``precision.py`` (the one precision policy).
Work that is not batched runs under ``oom_guard``: out of memory is then a ``ResourceError``
too, so no caller ever sees a raw allocation failure (the one out-of-memory policy). Results
stay on the device: methods reduce them there and move only the final map to the host.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, TypeVar

import torch

from . import precision
from .errors import ResourceError

T = TypeVar("T")
Progress = Callable[[float, str], None]
"""``progress(fraction_done, message)``; may raise to abort the computation."""

_CPU_BATCH = 32
_CUDA_MAX_BATCH = 512
_OOM_TEXTS = ("out of memory", "can't allocate memory", "not enough memory")


def is_oom(err: BaseException) -> bool:
    """True for CUDA and CPU allocation failures (PyTorch's, and Python's or numpy's ``MemoryError``),
    which are worth a retry with a smaller batch."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(t in text for t in _OOM_TEXTS)


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def oom_guard(device: torch.device | str, what: str) -> Iterator[None]:
    """The out-of-memory policy of work that is not split into batches (one forward and backward
    pass, a training loop): an allocation failure becomes ``ResourceError``; other errors pass."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - only OOM is translated, the rest re-raised
        if not is_oom(err):
            raise
        _release(torch.device(device))
        raise ResourceError(f"Not enough memory on {device} for {what}; try a smaller image, fewer items, "
                            "or another device.") from None


class Engine:
    """Runs batched work on one device.

    ``batch_size=None`` means automatic: on CPU a fixed moderate batch (larger batches do
    not speed up a 2-core machine and cost memory); on CUDA an estimate from free memory
    when the caller gives ``item_bytes``, else a generous start. Whatever batch size last
    succeeded for a given ``key`` is remembered, so repeated calls skip the OOM probing.
    The engine holds no per-call state besides that cache, and it is lock-protected, so one
    engine can serve several threads (browser sessions) at once.
    """

    def __init__(self, device: torch.device | str = "cpu", *, batch_size: int | None = None,
                 autocast: bool = True):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.use_autocast = autocast and self.device.type == "cuda"
        self._learned: dict[str, int] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- precision
    def precision(self, section: str) -> contextlib.AbstractContextManager:
        """The autocast context of ``section`` on this engine's device (see ``xai_core.precision``)."""
        return precision.section(self.device, section, mixed_allowed=self.use_autocast)

    # --------------------------------------------------------------- batch size
    def initial_batch(self, n: int, key: str, item_bytes: int | None) -> int:
        if self.batch_size is not None:
            return max(1, min(n, self.batch_size))
        with self._lock:
            learned = self._learned.get(key)
        if learned is not None:
            return max(1, min(n, learned))
        if self.device.type != "cuda":
            return max(1, min(n, _CPU_BATCH))
        guess = _CUDA_MAX_BATCH
        if item_bytes:
            free, _total = torch.cuda.mem_get_info(self.device)
            guess = max(1, int(free * 0.6) // item_bytes)
        return max(1, min(n, guess, _CUDA_MAX_BATCH))

    def _remember(self, key: str, size: int) -> None:
        with self._lock:
            self._learned[key] = size

    # -------------------------------------------------------------------- running
    def map(self, fn: Callable[[int, int], T], n: int, *, section: str, key: str = "default",
            item_bytes: int | None = None, progress: Progress | None = None,
            message: str = "") -> list[T]:
        """Call ``fn(start, stop)`` over ``[0, n)`` in batches and return the results in order.

        On out-of-memory the same slice is retried with half the batch; a failure with a
        batch of one raises ``ResourceError``. ``fn`` runs in the precision of ``section``;
        it may open another section inside (e.g. an fp32 ``accumulation``).
        """
        if n <= 0:
            return []
        size = self.initial_batch(n, key, item_bytes)
        results: list[T] = []
        start = 0
        while start < n:
            stop = min(n, start + size)
            try:
                with self.precision(section):
                    results.append(fn(start, stop))
            except Exception as err:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_oom(err):
                    raise
                _release(self.device)
                if size == 1:
                    raise ResourceError(
                        f"Not enough memory on {self.device} even for one item at a time; "
                        "try a smaller image, fewer samples, or the CPU.") from None
                size = max(1, size // 2)
                continue
            start = stop
            if progress is not None:
                progress(start / n, message)
        self._remember(key, size)
        return results

    def map_cat(self, fn: Callable[[int, int], torch.Tensor], n: int, *, dim: int = 0, **kwargs) -> torch.Tensor:
        """``map`` followed by concatenation along ``dim`` (results stay on the device)."""
        return torch.cat(self.map(fn, n, **kwargs), dim=dim)

    def map_sum(self, fn: Callable[[int, int], torch.Tensor], n: int, **kwargs) -> torch.Tensor:
        """``map`` whose per-batch results are summed as they come (bounded memory)."""
        total: torch.Tensor | None = None

        def accumulate(start: int, stop: int) -> None:
            nonlocal total
            part = fn(start, stop)
            total = part if total is None else total + part

        self.map(accumulate, n, **kwargs)
        assert total is not None
        return total


def default_device() -> torch.device:
    """CUDA when available, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
