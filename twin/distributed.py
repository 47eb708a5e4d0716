"""Data-parallel training over ``torch.distributed``: who this process is, its share of the work,
and the one all-reduce per step.

Launched by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT`` in
the environment): gloo on CPU, NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``). Each rank
reads its share of the patients from the store; every global mini-batch is split into one
contiguous slice per rank, each rank weights its slice's loss terms by its share of the batch's
observations and examples, and the gradients are summed across ranks, so a step uses the
gradient one process would compute on the whole batch (see :func:`twin.training.train`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from core.errors import ConfigError

__all__ = ["Ranks", "all_reduce_grads", "current_ranks", "gather_dict", "process_group", "sum_over_ranks"]

T = TypeVar("T")
_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the process group."""

    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reports progress and writes the checkpoint."""
        return self.rank == 0

    def part(self, items: Sequence[T]) -> list[T]:
        """Every ``world``-th item from ``rank`` on: this rank's share of patients to read."""
        return list(items[self.rank::self.world])

    def share(self, n: int) -> slice:
        """This rank's contiguous slice of ``n`` batch items (sizes differ by at most one)."""
        return slice(n * self.rank // self.world, n * (self.rank + 1) // self.world)


def current_ranks() -> Ranks | None:
    """The process group's ranks, or ``None`` when no group is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return Ranks(dist.get_rank(), dist.get_world_size())


@contextmanager
def process_group(device: str) -> Iterator[tuple[Ranks, str]]:
    """Join the ``torchrun`` process group for ``device`` (gloo on CPU, NCCL on CUDA) and yield
    the ranks and the device this rank trains on; an already initialised group is reused (and
    left open). Raises :class:`ConfigError` when not launched by ``torchrun``."""
    cuda = torch.device(device).type == "cuda"
    if (ranks := current_ranks()) is not None:
        yield ranks, (f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else device)
        return
    missing = [k for k in _ENV if k not in os.environ]
    if missing:
        raise ConfigError(f"distributed training must be launched by torchrun (missing {', '.join(missing)} in the "
                          f"environment), e.g. torchrun --nproc-per-node 2 -m cli train --distributed")
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed")
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but CUDA is not available on this machine")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size()), device
    finally:
        dist.destroy_process_group()


def gather_dict(mine: dict[str, Any]) -> dict[str, Any]:
    """Every rank's ``mine`` merged (all ranks receive all)."""
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, mine)
    out: dict[str, Any] = {}
    for p in parts:
        out.update(p)
    return out


def sum_over_ranks(values: Sequence[float], device: torch.device | str) -> list[float]:
    """``values`` summed element-wise over all ranks (float64)."""
    buf = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return [float(v) for v in buf.cpu()]


def all_reduce_grads(params: Sequence[torch.nn.Parameter], extra: Sequence[float] = ()) -> list[float]:
    """Sum the gradients of ``params`` (missing ones count as zero) and the numbers ``extra``
    over all ranks in one all-reduce; the gradients are replaced in place, the sums of ``extra``
    returned."""
    ref = params[0]
    flat = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=ref.device, dtype=ref.dtype)
            for p in params]
    buf = torch.cat([*flat, torch.tensor(list(extra), device=ref.device, dtype=torch.float64).to(ref.dtype)])
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    i = 0
    for p in params:
        n = p.numel()
        p.grad = buf[i:i + n].view_as(p).clone()
        i += n
    return [float(v) for v in buf[i:].cpu()]
