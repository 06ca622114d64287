"""Functional kernels of the Lookahead sync, in a foreach and a for-loop flavour.

The outer update of Algorithm 1 (Zhang et al. 2019) on pairs of tensors is

    slow <- slow + alpha * (fast - slow)
    fast <- slow

Both flavours compute it with ``lerp`` followed by ``copy_``, so they agree bit for bit on
CPU. The foreach flavour groups the pairs by device and dtype, as ``torch.optim`` and
``torch.optim.swa_utils`` do, and costs two kernel launches per group instead of two per
tensor. DTensor pairs (FSDP2) are updated through their local shards (see ``_dtensor``), so
both flavours always run on plain tensors and never communicate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import Parameter
from torch.utils._foreach_utils import (
    _get_foreach_kernels_supported_devices,
    _group_tensors_by_device_and_dtype,
)

from lookahead._dtensor import local

__all__ = ["default_foreach", "lookahead_sync_", "copy_"]


def default_foreach(tensors: Sequence[Tensor]) -> bool:
    """Chooses the foreach flavour the way ``torch.optim`` does.

    Foreach kernels are used when every tensor is a plain ``Tensor``/``Parameter`` on a device
    that has native foreach kernels (CUDA, XPU, ...). On CPU torch's foreach ops fall back to a
    loop of per-tensor kernels, so the for-loop flavour is the default there.

    Args:
        tensors: the tensors that will be updated.

    Returns:
        True if the foreach flavour should be used.
    """
    if torch.jit.is_scripting() or not tensors:
        return False
    devices = _get_foreach_kernels_supported_devices()
    return all(type(t) in (Tensor, Parameter) and t.device.type in devices for t in tensors)


def _check_pairs(slow: Sequence[Tensor], fast: Sequence[Tensor]) -> None:
    if len(slow) != len(fast):
        raise ValueError(
            f"lookahead_sync_ needs one slow tensor per fast tensor, got {len(slow)} slow "
            f"and {len(fast)} fast tensors"
        )


@torch.no_grad()
def lookahead_sync_(
    slow: Sequence[Tensor],
    fast: Sequence[Tensor],
    alpha: float,
    *,
    foreach: bool | None = None,
) -> None:
    """Applies the Lookahead outer update in place to pairs of tensors.

    For every pair ``(phi, theta)``: ``phi <- phi + alpha * (theta - phi)``, then
    ``theta <- phi``. The pairs must agree in shape, device and dtype; a DTensor pair must
    also agree in mesh and placements, and is updated shard by shard.

    Args:
        slow: the slow tensors phi (updated in place).
        fast: the fast tensors theta (overwritten with the new phi).
        alpha: the slow step size, in [0, 1].
        foreach: use ``torch._foreach_*`` kernels grouped by device and dtype; ``None``
            chooses as ``torch.optim`` does (see :func:`default_foreach`).
    """
    _check_pairs(slow, fast)
    if not slow:
        return
    slow, fast = local(slow), local(fast)
    if foreach is None:
        foreach = default_foreach(fast)
    if foreach:
        grouped = _group_tensors_by_device_and_dtype([list(slow), list(fast)], False)
        for (group_slow, group_fast), _ in grouped.values():
            torch._foreach_lerp_(group_slow, group_fast, alpha)
            torch._foreach_copy_(group_fast, group_slow)
    else:
        for phi, theta in zip(slow, fast):
            phi.lerp_(theta, alpha)
            theta.copy_(phi)


@torch.no_grad()
def copy_(dst: Sequence[Tensor], src: Sequence[Tensor], *, foreach: bool | None = None) -> None:
    """Copies ``src[i]`` into ``dst[i]`` for every i (``copy_`` semantics, in place).

    Args:
        dst: the tensors written to.
        src: the tensors read from; same shapes, devices, dtypes (and DTensor layouts) as
            ``dst``.
        foreach: as in :func:`lookahead_sync_`.
    """
    _check_pairs(dst, src)
    if not dst:
        return
    dst, src = local(dst), local(src)
    if foreach is None:
        foreach = default_foreach(dst)
    if foreach:
        grouped = _group_tensors_by_device_and_dtype([list(dst), list(src)], False)
        for (group_dst, group_src), _ in grouped.values():
            torch._foreach_copy_(group_dst, group_src)
    else:
        for d, s in zip(dst, src):
            d.copy_(s)
