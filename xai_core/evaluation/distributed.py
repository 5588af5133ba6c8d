"""One evaluation over several processes, launched by ``torchrun`` (one process per GPU, or per CPU slot).

``torchrun --nproc_per_node=K -m xai_core evaluate ...`` starts K copies of the command with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in their environment. Each
process joins the process group (NCCL on ``cuda:LOCAL_RANK``, gloo on the CPU), evaluates its
shard of the images (``run_evaluation(shard=(rank, world))``: every world-th block of a batch of
images), and sends its rows to rank 0 (``gather_object``), which merges them into the result one
process would have computed. Across nodes, torchrun's usual options (``--nnodes``,
``--node_rank``, ``--rdzv-endpoint`` ...) set the same variables; nothing here changes.

Without those variables (a plain ``python -m xai_core evaluate``) a session is one process of
a world of one and nothing is initialised.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch

from ..engine import default_device
from .runner import EvaluationResult, merge_results

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Session:
    """This process's place in the evaluation: its rank, the world size and its device."""
    rank: int
    world: int
    device: torch.device

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world)``, as ``run_evaluation`` takes it."""
        return (self.rank, self.world)

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes and prints the result."""
        return self.rank == 0

    def gather(self, part: EvaluationResult) -> EvaluationResult | None:
        """Every shard's result merged on rank 0; None on the other ranks."""
        if self.world == 1:
            return part
        import torch.distributed as dist

        parts: list[EvaluationResult | None] | None = [None] * self.world if self.is_main else None
        dist.gather_object(part, parts, dst=0)
        return merge_results(parts) if parts is not None else None


def launched() -> bool:
    """True when torchrun (or any launcher that sets its variables) started this process."""
    return all(name in os.environ for name in LAUNCH_VARIABLES)


@contextlib.contextmanager
def session(device: str | None = None) -> Iterator[Session]:
    """This process's ``Session``, inside the process group when launched by torchrun.

    ``device`` is what the user asked for (None: CUDA when available); under torchrun a CUDA
    device becomes ``cuda:LOCAL_RANK``, one GPU per process.
    """
    chosen = torch.device(device) if device else default_device()
    if not launched():
        yield Session(0, 1, chosen)
        return
    import torch.distributed as dist

    rank, world, local_rank = (int(os.environ[name]) for name in LAUNCH_VARIABLES)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        yield Session(rank, world, chosen)
    finally:
        dist.destroy_process_group()
