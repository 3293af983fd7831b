"""Data-parallel training: one entry point for a single process and for ``torchrun``.

``torchrun --nproc_per_node N script.py`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and joins the
process group (gloo on CPU, NCCL on CUDA). Without them (or with ``WORLD_SIZE=1``)
everything here is a no-op, so the same code runs in one plain process.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mrenhance.errors import ConfigError

log = logging.getLogger("mrenhance.distributed")

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "cleanup",
    "init_distributed",
    "unwrap",
    "wrap_ddp",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands.

    Attributes
    ----------
    rank: global rank, 0..world_size-1. world_size: number of processes.
    local_rank: rank on this node (the CUDA device index). device: this process's device.
    is_main: rank 0, the one process that writes files and shows progress.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment: {name}={raw!r} is not an integer") from None


def _pick_device(device: str | torch.device | None, local_rank: int, distributed: bool):
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(device)!r}: CUDA is not available")
        if distributed or dev.index is None:
            # one GPU per process under torchrun: cuda:LOCAL_RANK
            dev = torch.device("cuda", local_rank if distributed else torch.cuda.current_device())
    return dev


def init_distributed(
    device: str | torch.device | None = None, timeout_s: float = 1800.0
) -> DistInfo:
    """Join the process group torchrun describes, or describe the single process.

    Idempotent: a second call returns the same information without re-initialising.

    Parameters
    ----------
    device:
        ``"cpu"``, ``"cuda"`` (becomes ``cuda:LOCAL_RANK`` under torchrun), a
        ``torch.device``, or None / ``"auto"`` for CUDA when available.
    timeout_s:
        Collective timeout in seconds (a rank that never arrives fails the others then).

    Returns
    -------
    DistInfo
        Backend: NCCL when the device is CUDA, else gloo.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int("LOCAL_RANK", rank)
        on_cuda = dist.get_backend() == "nccl"
        if on_cuda and str(device).startswith("cpu"):
            # NCCL moves CUDA tensors only: the group decided the device before this call
            log.warning("device 'cpu' asked, but the process group is NCCL: using CUDA")
        dev = _pick_device("cuda" if on_cuda else (device or "cpu"), local, world > 1)
        if dev.type == "cuda" and not on_cuda and world > 1:
            raise ConfigError(f"device {str(device)!r}: process group uses gloo (CPU)")
        return DistInfo(rank, world, local, dev, rank == 0)

    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        dev = _pick_device(device, 0, False)
        return DistInfo(0, 1, 0, dev, True)

    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    dev = _pick_device(device, local, True)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return DistInfo(rank, world, local, dev, rank == 0)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def wrap_ddp(model: nn.Module, info: DistInfo | None = None, **ddp_kwargs: Any) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` itself.

    The model must already be on ``info.device``. Gradients are averaged over ranks in
    ``backward``; rank 0's parameters and buffers are broadcast at wrapping.
    """
    if not is_distributed():
        return model
    info = info or init_distributed()
    if info.device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [info.device.index])
        ddp_kwargs.setdefault("output_device", info.device.index)
    return nn.parallel.DistributedDataParallel(model, **ddp_kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def barrier() -> None:
    """Wait for all ranks (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a tensor (a copy; the input itself in a single process)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` itself in a single process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Leave the process group, if one was joined (call once, at the end of the script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
