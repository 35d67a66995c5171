"""Processes started by torchrun: joining the process group, this process's place in it, and the collectives that
``train``, ``predict`` and ``evaluate`` share. With a single process everything here is a no-op."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Processes:
    """This process's rank among ``world_size`` processes, its GPU index on its machine, and whether it created the
    process group (and so must destroy it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def join(device_choice: str) -> Processes:
    """Join the process group described by torchrun's environment (NCCL for GPUs, gloo on CPU), if there is one.

    This is the one place that reads ``WORLD_SIZE`` and ``LOCAL_RANK``; call it from the command line side."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes()
    owns = False
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_choice != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def leave(processes: Processes) -> None:
    """Destroy the process group if :func:`join` created it."""
    if processes.owns_group:
        dist.destroy_process_group()


def current() -> tuple[int, int]:
    """(rank, world_size) of an initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def device_for(choice: str, processes: Processes) -> torch.device:
    """``auto``, ``cuda`` or ``cpu`` -> this process's device (its own GPU under torchrun)."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device=cuda was asked for, but this machine has no CUDA device; use device=cpu.")
        torch.cuda.set_device(processes.local_rank)
        return torch.device("cuda", processes.local_rank)
    return torch.device("cpu")


def mean_over_processes(value: torch.Tensor, processes: Processes) -> float:
    """The mean of a scalar tensor over all processes."""
    if processes.world_size > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= processes.world_size
    return float(value)


def gather(value: Any, world_size: int) -> list[Any]:
    """Every process's ``value`` (any picklable object), in rank order."""
    if world_size == 1:
        return [value]
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(world_size: int) -> None:
    """Wait for every process (nothing to wait for with one)."""
    if world_size > 1:
        dist.barrier()
