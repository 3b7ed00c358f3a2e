"""Several processes for one cell, under ``torchrun``: data-parallel training and sharded evaluation.

A cell that asks for several GPUs (or, on a CPU, several processes) runs as ``torchrun --nproc-per-node N``. Each
process calls :func:`init_from_env`, which joins the process group torchrun describes (NCCL on CUDA, gloo on
CPUs) and makes a :class:`ParallelPlan` the process's active plan. The engine then does the rest:

- training (``train_model``): every rank draws the same seeded epoch order and augments the whole batch with the
  same generator, then keeps its contiguous share of the batch; the model runs under
  ``DistributedDataParallel``, whose gradient average, with each rank's loss scaled by its share, is the gradient
  of the whole batch. Epoch sums are added over ranks and BatchNorm buffers are taken from rank 0 before
  validation, so every rank sees the same history and takes the same early-stopping decision. Rank 0 writes the
  checkpoint.
- evaluation (``predict_logits``): batch ``j`` is computed by rank ``j % N``, exactly as one process computes it,
  and the batches are gathered back in order; every rank returns the complete logits, in the input's order.

Without torchrun (or with one process) nothing here is active and the engine runs as a single process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fbench.contract import compute_loss
from fbench.errors import FbenchError

_ACTIVE: ParallelPlan | None = None


@dataclass(frozen=True)
class ParallelPlan:
    """This process's place among the cell's processes: its rank, how many there are, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the cell's files; the others compute."""
        return self.rank == 0

    # -- training ---------------------------------------------------------------------------------------------

    def share(self, count: int) -> tuple[slice, float, bool]:
        """This rank's rows of a batch of ``count`` rows, the factor on its mean loss that makes the average over
        ranks the whole batch's mean loss, and whether its rows count in the epoch sums.

        A batch smaller than the number of ranks is computed whole on every rank (same gradients), and only rank 0
        counts it."""
        if count < self.world_size:
            return slice(0, count), 1.0, self.is_main
        begin = self.rank * count // self.world_size
        end = (self.rank + 1) * count // self.world_size
        return slice(begin, end), (end - begin) * self.world_size / count, True

    def loss_forward(self, model: nn.Module, criterion: nn.Module) -> Callable[[torch.Tensor, torch.Tensor],
                                                                                 tuple[torch.Tensor, torch.Tensor]]:
        """``(images, targets) -> (loss, logits)`` through ``DistributedDataParallel``, for any model under the
        contract (a multi-head model's own ``training_loss`` included)."""
        wrapped = DistributedDataParallel(
            _LossModule(model, criterion),
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=os.environ.get("FBENCH_DDP_FIND_UNUSED", "") == "1",
        )
        return lambda images, targets: wrapped(images, targets)

    def sum_over_ranks(self, values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each value added over all ranks (one collective call)."""
        stacked = torch.stack([v.detach().double() for v in values])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return list(stacked.unbind())

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank."""
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)

    def barrier(self) -> None:
        dist.barrier()

    # -- evaluation -------------------------------------------------------------------------------------------

    def my_batches(self, total: int) -> range:
        """The batch indices this rank computes: ``rank, rank + N, ...`` of ``range(total)``."""
        return range(self.rank, total, self.world_size)

    def gather_batches(self, mine: list[torch.Tensor], total: int) -> list[torch.Tensor]:
        """Every rank's batches (from :meth:`my_batches`), in batch order, on every rank."""
        everyone: list[Any] = [None] * self.world_size
        dist.all_gather_object(everyone, [t.cpu() for t in mine])
        ordered = []
        for index in range(total):
            ordered.append(everyone[index % self.world_size][index // self.world_size])
        return ordered


class _LossModule(nn.Module):
    """The model and its loss as one module, so that DDP sees the forward that the loss goes through."""

    def __init__(self, model: nn.Module, criterion: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return compute_loss(self.model, images, targets, self.criterion)


def active_plan() -> ParallelPlan | None:
    """The plan of this process when it is one of several ranks of a cell, else None."""
    return _ACTIVE


def torchrun_environment() -> bool:
    """Whether this process was started by torchrun (its rank variables are set)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def init_from_env(device: str | None = None, timeout_s: float = 1800.0) -> ParallelPlan:
    """Join the process group that torchrun describes and make this process's plan active.

    ``device``: ``cpu`` forces CPUs (gloo); otherwise CUDA ``LOCAL_RANK`` (NCCL) where CUDA is available, else the
    CPU. One process (``WORLD_SIZE=1``) gives a plan too but activates nothing: the engine runs as usual."""
    global _ACTIVE
    if not torchrun_environment():
        raise FbenchError("this command runs under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and "
                          "MASTER_PORT are not all set); start it with `torchrun --nproc-per-node N -m ...`")
    rank, world, local = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    use_cuda = device != "cpu" and torch.cuda.is_available() and not (device or "").startswith("mps")
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise FbenchError(f"local rank {local} has no GPU ({torch.cuda.device_count()} visible); ask torchrun "
                              f"for at most as many processes per node as GPUs")
        torch.cuda.set_device(local)
        chosen, backend = torch.device("cuda", local), "nccl"
    else:
        chosen, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    plan = ParallelPlan(rank, world, local, chosen, backend)
    _ACTIVE = plan if world > 1 else None
    return plan


def shutdown() -> None:
    """Leave the process group (after the cell) and deactivate the plan."""
    global _ACTIVE
    _ACTIVE = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
