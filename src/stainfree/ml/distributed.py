"""Training on several processes with torch.distributed (DDP), launched the usual way.

``torchrun --nproc-per-node 4 -m stainfree train CELLS -o model.safetensors`` starts four
processes; each finds its rank and the world size in the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``), and :func:`~stainfree.ml.train.fit` then trains one
model with :class:`torch.nn.parallel.DistributedDataParallel`: the gloo backend on CPU, NCCL on
CUDA with each process on the GPU of its local rank. Every process draws the same epoch order
(rank 0 draws it and broadcasts it) and takes every ``world``-th cell of it, as
``torch.utils.data.DistributedSampler`` does with a shared seed; the batch size stays the global
one, split across the processes, so a run on four processes takes the same steps as on one.
Only rank 0 logs epochs, writes checkpoints and writes the model.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from ..utils import StainfreeError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: ``rank`` of ``size``, and its device."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world() -> World:
    """The world torchrun (or any launcher setting ``RANK``/``WORLD_SIZE``) started this process in.

    Examples
    --------
    >>> from stainfree.ml.distributed import World
    >>> World(rank=1, size=2).is_main, World().size
    (False, 1)
    """
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise StainfreeError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({exc})") from exc
    if size < 1 or not 0 <= rank < size:
        raise StainfreeError(f"rank {rank} is not within a world of {size} process(es) (RANK, WORLD_SIZE)")
    return World(rank, size, local)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed launch (only rank 0 writes outputs)."""
    return launched_world().is_main


def join_world(device) -> tuple[World, object]:
    """Join the process group of a distributed launch, once, and return the world and the device.

    Parameters
    ----------
    device : torch.device
        The device asked for; under a launch with CUDA, each process takes ``cuda:LOCAL_RANK``.

    Returns
    -------
    World, torch.device
        ``World()`` and ``device`` unchanged when not launched on several processes.
    """
    import torch
    import torch.distributed as dist

    world = launched_world()
    if world.size == 1:
        return world, device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise StainfreeError("WORLD_SIZE is above 1 but MASTER_ADDR is not set: start several processes with torchrun")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        if world.is_main:
            logger.info("training on %d processes (%s)", world.size, dist.get_backend())
    return world, device


def wrap_model(model, world: World, device):
    """The DistributedDataParallel wrapper of ``model`` (rank 0's initial weights reach every rank), or None."""
    if world.size == 1:
        return None
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def shared_order(order: np.ndarray, world: World, device) -> np.ndarray:
    """Rank 0's ``order``, the same on every rank, and this rank's share: every ``size``-th entry."""
    if world.size == 1:
        return order
    import torch
    import torch.distributed as dist

    t = torch.as_tensor(np.ascontiguousarray(order, dtype=np.int64), device=device)
    dist.broadcast(t, src=0)
    return t.cpu().numpy()[world.rank :: world.size]


def all_ranks(flag: bool, world: World, device) -> bool:
    """``flag`` held on every rank (a step is skipped everywhere or nowhere, or DDP would wait forever)."""
    if world.size == 1:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
