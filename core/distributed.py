"""Data-parallel training under torchrun (gloo, CPU): the process's place in the group and the collectives.

Each step's global batch is split across ranks; every rank computes its loss on its own share and the gradients
are averaged by one all-reduce after backward. The parameters are broadcast from rank 0 once, at the start.
A single process (no torchrun) is a group of one, for which every collective here is a no-op.
"""

from __future__ import annotations

import dataclasses
import math
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass
class Dist:
    """This process's rank and the number of processes; rank 0 is the main one (it validates and writes)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_distributed() -> Dist:
    """torchrun sets WORLD_SIZE/RANK/MASTER_ADDR; then use gloo (CPU). Otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def shutdown_distributed(ddp: Dist) -> None:
    """Leave the process group that :func:`init_distributed` joined (nothing for a single process)."""
    if ddp.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce (mean) every gradient in one flat buffer; a parameter without a gradient contributes zeros."""
    if world <= 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def average_loss(loss: torch.Tensor, world: int) -> tuple[float, bool]:
    """The loss averaged over the ranks and whether it is finite on every rank (so all ranks stop together)."""
    check = torch.stack([loss.detach(), (~torch.isfinite(loss.detach())).float()])
    if world > 1:
        dist.all_reduce(check)
        check[0] /= world
    value = float(check[0].item())
    return value, check[1].item() == 0 and math.isfinite(value)


def broadcast_parameters(model: torch.nn.Module, world: int) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if world <= 1:
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t, 0)
