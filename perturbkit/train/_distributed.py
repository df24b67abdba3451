"""Where this process sits in a ``torchrun`` job: its rank, the number of processes, and the process group.

A script started by ``torchrun --nproc_per_node=N`` (or ``srun torchrun``, or Ray's ``TorchTrainer``) runs once per
process with ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in its environment. perturbkit reads them here, so a
``pk.tl.train_*`` call needs no change: the one training loop joins the process group (gloo on CPU, NCCL on CUDA),
shards the data by rank, and lets only rank 0 show progress and write files.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def world_size() -> int:
    """The number of training processes (1 outside ``torchrun``)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """The global rank of this process (0 outside ``torchrun``)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def is_main_process() -> bool:
    """Whether this process logs, shows progress bars and writes files (rank 0; always true outside ``torchrun``)."""
    return rank() == 0


def ensure_process_group(device: torch.device) -> bool:
    """Join the ``torchrun`` job's process group if there is one and it is not joined yet; return whether distributed.

    The backend is NCCL when training on CUDA and gloo otherwise (CPU processes, several per machine). The rendezvous
    address comes from ``torchrun``'s environment (``MASTER_ADDR``, ``MASTER_PORT``).
    """
    if world_size() <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; install a torch that has it.")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend=backend)
    return True


def broadcast_flag(value: bool, device: torch.device) -> bool:
    """Rank 0's ``value`` on every rank (early stopping is decided on rank 0)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    flag = torch.tensor([1.0 if value else 0.0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item() > 0.5)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of ``values`` over all ranks (unchanged outside a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's integer ``value`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return int(value)
    holder = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.broadcast(holder, src=0)
    return int(holder.item())


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (batch norm's running statistics) to every rank, so the replicas stay identical.

    DDP averages gradients, so parameters agree; buffers are updated by each rank's own batches, so they are made
    equal at the end of every epoch, before validation and before the best weights are kept.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
