"""Data-parallel training with torchrun + DDP.

``torchrun --nproc_per_node=8 run.py task=imagenet ...`` starts one process per GPU; each
joins the process group here (NCCL on GPUs, gloo on CPU). Conventions:

- ``data.batch_size`` is the *global* batch; a task gives each rank its slice of every global
  batch (``rank::world``-style sharding of the same seeded permutation), so the sequence of
  global batches does not depend on the number of processes.
- Gradients are averaged by DDP, so every rank applies the same update; Lookahead's sync is
  a deterministic function of the parameters and the step counter, so the slow weights stay
  identical on every rank without any communication.
- Evaluation metrics are reduced over ranks by the task (sums and counts, :func:`all_sum`).
- Only rank 0 writes records and checkpoints; decisions that end the loop (divergence, a stop
  signal) are agreed by all ranks (:func:`any_rank`) so no rank waits on a collective alone.
"""

from __future__ import annotations

import os
from typing import Sequence, Tuple

import torch
import torch.distributed as dist


def init(device: torch.device) -> Tuple[int, int]:
    """Join the process group when launched by torchrun; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
    return rank_world()


def rank_world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def local_device(device: torch.device) -> torch.device:
    """Each torchrun process drives the GPU given by LOCAL_RANK."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Sum a few numbers over ranks (identity when not distributed)."""
    if rank_world()[1] == 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, device: torch.device) -> bool:
    return all_sum([float(flag)], device)[0] > 0


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's part of a global batch of indices."""
    rank, world = rank_world()
    return indices[rank::world] if world > 1 else indices
