"""Training in several processes with PyTorch's DistributedDataParallel.

``torchrun --nproc_per_node N -m tileunet train ...`` (or ``tileunet train --devices N``,
which starts torchrun itself) runs N copies of the training loop. torchrun tells each
process its rank through the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``); :func:`setup` reads it and joins the process group:
NCCL when the processes train on GPUs (one GPU each, ``cuda:LOCAL_RANK``), gloo on CPUs.
Each process draws its own random tiles, DistributedDataParallel averages the gradients,
so every process takes the same step, and only rank 0 writes files and shows progress.
Nothing here runs, and nothing changes, in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        """True for the process that writes files and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def seed(self, seed: int) -> int:
        """This process's seed for drawing tiles: ``seed`` itself on rank 0 (so one
        process trains exactly as before), an independent stream on the others."""
        if self.rank == 0:
            return int(seed)
        return int(np.random.SeedSequence([int(seed), self.rank]).generate_state(1)[0])


def from_environment() -> Ranks:
    """The ranks torchrun put in the environment (a single process without it)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ValueError(f"bad torchrun environment: {e}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return Ranks(rank, world, local)


def setup(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group when torchrun started several processes.

    Returns the ranks and the device this process trains on: ``cuda:LOCAL_RANK`` when
    ``device`` is a CUDA device, else ``device``.
    """
    ranks = from_environment()
    if not ranks.distributed:
        return ranks, device
    if device.type == "cuda":
        if ranks.local >= torch.cuda.device_count():
            raise ValueError(f"process {ranks.rank} wants cuda:{ranks.local}, but this machine "
                             f"has {torch.cuda.device_count()} GPU(s)")
        device = torch.device("cuda", ranks.local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ranks, device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def broadcast_float(value: float, ranks: Ranks, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (for decisions all ranks must share)."""
    if not ranks.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return float(t.item())


def mean(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The mean of a scalar tensor over all ranks (the tensor itself in one process)."""
    if not ranks.distributed:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / ranks.world


def gather_objects(obj: Any, ranks: Ranks) -> list[Any]:
    """``obj`` of every rank, in rank order."""
    if not ranks.distributed:
        return [obj]
    out: list[Any] = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def check_same_weights(net: torch.nn.Module, ranks: Ranks) -> None:
    """Raise if the ranks ended with different weights (they never should)."""
    if not ranks.distributed:
        return
    sums = [float(p.detach().double().sum()) for p in net.parameters()]
    every = gather_objects(sums, ranks)
    if any(s != every[0] for s in every[1:]):
        raise RuntimeError("training processes ended with different weights")


__all__ = ["Ranks", "barrier", "broadcast_float", "check_same_weights", "from_environment",
           "gather_objects", "mean", "setup", "teardown"]
