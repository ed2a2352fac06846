"""This process's place in a DDP job (rank, world size, device) and the few collectives kdlib needs.

A plain process is rank 0 of 1 and every collective is a no-op. Under torchrun (``WORLD_SIZE``/``RANK``/
``LOCAL_RANK`` in the environment) ``ProcessGroup.from_env`` joins the process group, NCCL on CUDA and gloo on
CPU, even for one process, so a one-process job runs the very code of an N-process one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class ProcessGroup:
    """Rank, world size and device of this process; ``backend`` is None outside a process group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: Optional[str] = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | torch.device = "auto") -> "ProcessGroup":
        """Joins torchrun's process group when launched by it (``TORCHELASTIC_RUN_ID`` or ``WORLD_SIZE > 1``),
        on CUDA device ``LOCAL_RANK`` when ``device`` is 'cuda' (or 'auto' with CUDA present), else on the CPU."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() if str(device) == "auto" else str(device).startswith("cuda")
        if use_cuda:
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        else:
            dev = torch.device("cpu")
        backend = None
        if world > 1 or "TORCHELASTIC_RUN_ID" in os.environ:
            backend = "nccl" if dev.type == "cuda" else "gloo"
            if not dist.is_initialized():
                dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
        return cls(rank, world, local, dev, backend)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.backend is None:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.backend is not None:
            dist.barrier()

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module whose backward all-reduces the gradients (DDP) in a process group, else ``model``."""
        if self.backend is None:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def close(self) -> None:
        if self.backend is not None and dist.is_initialized():
            dist.destroy_process_group()
