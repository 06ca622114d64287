"""DTensor parameters (FSDP2's ``fully_shard``, tensor parallelism): the sync on local shards.

The Lookahead update ``phi <- phi + alpha (theta - phi); theta <- phi`` is elementwise, so when
theta is a DTensor and phi is a DTensor with the same device mesh and placements, each rank can
apply it to its own shards: ``phi.to_local()`` and ``theta.to_local()`` hold the same elements
of the logical tensor, and no communication is needed. The kernels in ``_sync`` then run on
plain local tensors (``torch._foreach_*`` included), whatever the mix of sharded and unsharded
parameters or meshes. Slow weights and pullback copies are made with ``torch.empty_like`` of
the parameter, so they live where its shard lives (also with FSDP2's CPU offload).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

try:
    from torch.distributed.tensor import DTensor, distribute_tensor
except ImportError:  # a torch build without torch.distributed
    DTensor = distribute_tensor = None

__all__ = ["is_dtensor", "local", "same_layout", "copy_like"]


def is_dtensor(t: object) -> bool:
    """Whether ``t`` is a DTensor (a parameter sharded by FSDP2 is one)."""
    return DTensor is not None and isinstance(t, DTensor)


def local(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The local shard of each DTensor (the tensor itself otherwise), sharing its storage.

    Call under ``torch.no_grad()``: ``to_local()`` then returns the shard itself rather than
    a differentiable view, so that in-place updates of it update the DTensor.
    """
    return [t.to_local() if is_dtensor(t) else t for t in tensors]


def same_layout(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` are both plain tensors, or DTensors on one mesh with one placement."""
    if is_dtensor(a) != is_dtensor(b):
        return False
    return not is_dtensor(a) or (a.device_mesh == b.device_mesh and a.placements == b.placements)


def copy_like(like: Tensor, value: Tensor) -> Tensor:
    """A fresh copy of ``value`` with the device, dtype, memory format and layout of ``like``.

    ``value`` has ``like``'s (global) shape. A DTensor ``value`` placed differently on the same
    mesh is redistributed first (a collective: every rank must call this); a plain ``value``
    copied into a DTensor is the full tensor, of which each rank keeps its own shard (no
    communication). In the usual case, same layout, it is a local copy of the shard.
    """
    out = torch.empty_like(like, memory_format=torch.preserve_format)
    value = value.detach()
    if is_dtensor(like) and not same_layout(like, value):
        if is_dtensor(value):
            value = value.redistribute(like.device_mesh, like.placements)
        else:
            value = distribute_tensor(
                value.to(like.device), like.device_mesh, like.placements, src_data_rank=None
            )
    elif is_dtensor(value) and not is_dtensor(like):
        value = value.full_tensor()
    out.copy_(value)
    return out
