"""Hyperparameter checks and per-parameter state of the Lookahead wrapper.

The wrapper keeps, for every parameter ``p`` of the inner optimizer,

* ``state[p]["slow_param"]``: the slow weights phi (one copy of ``p``), and
* ``state[p]["pullback_state"]`` (only with ``pullback="pullback"``): a dict holding, for each
  parameter-shaped floating-point tensor of the inner optimizer's state (SGD's
  ``momentum_buffer``, Adam's ``exp_avg`` and ``exp_avg_sq``, ...), a copy of its value at the
  previous sync.

The helpers here know nothing about particular inner optimizers: a state tensor takes part in
the pullback when it has the parameter's shape and a floating (or complex) dtype. Only the key
``"step"`` is excluded by name, because torch.optim reserves it for the step count (a 0-dim
tensor that would otherwise match a 0-dim parameter).
"""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Mapping, MutableMapping, Sequence
from itertools import chain
from typing import Any

import torch
from torch import Tensor

from lookahead._sync import lookahead_sync_

SLOW = "slow_param"
PULLBACK = "pullback_state"
PULLBACK_MODES = ("none", "reset", "pullback")


def check_hyperparameters(k: Any, alpha: Any, pullback: Any) -> None:
    """Raises ValueError naming the first invalid value of k, alpha or pullback."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"Invalid k: {k!r}; k, the fast steps per sync, must be a positive int")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Invalid alpha: {alpha!r}; alpha, the slow step size, must lie in [0, 1]")
    if not isinstance(pullback, str) or pullback not in PULLBACK_MODES:
        raise ValueError(f"Invalid pullback: {pullback!r}; choose one of {PULLBACK_MODES}")


def copy_like(like: Tensor, value: Tensor) -> Tensor:
    """A fresh copy of ``value`` with the device, dtype and memory format of ``like``."""
    out = torch.empty_like(like, memory_format=torch.preserve_format)
    out.copy_(value)
    return out


def follows(copy: Tensor, like: Tensor) -> bool:
    """Whether ``copy`` still matches ``like`` in dtype and device (checked at every sync)."""
    return copy.dtype is like.dtype and copy.device == like.device


def is_param_shaped(key: Any, value: Any, param: Tensor) -> bool:
    """Whether an inner-state entry is interpolated by ``pullback="pullback"``."""
    return (
        key != "step"
        and isinstance(value, Tensor)
        and (value.is_floating_point() or value.is_complex())
        and value.shape == param.shape
    )


def capture_inner(param: Tensor, inner_state: Mapping[Any, Any]) -> dict[Any, Tensor]:
    """Copies (by value) the parameter-shaped floating tensors of one parameter's inner state."""
    return {
        key: value.detach().clone()
        for key, value in inner_state.items()
        if is_param_shaped(key, value, param)
    }


def pullback_pairs(
    param: Tensor, inner_state: Mapping[Any, Any], saved: Mapping[Any, Tensor]
) -> tuple[dict[Any, Tensor], list[Tensor], list[Tensor]]:
    """Pairs each parameter-shaped inner-state tensor with its value at the previous sync.

    A tensor the inner optimizer had not created at the previous sync is paired with zeros,
    which is the value torch.optim's lazily created buffers (momentum, first and second
    moments) stand for.

    Args:
        param: the parameter.
        inner_state: the inner optimizer's state for ``param``.
        saved: the copies made at the previous sync (may be empty).

    Returns:
        The new ``saved`` dict, and the lists of saved and live tensors, in matching order.
    """
    new_saved: dict[Any, Tensor] = {}
    saved_list: list[Tensor] = []
    live_list: list[Tensor] = []
    for key, live in inner_state.items():
        if not is_param_shaped(key, live, param):
            continue
        old = saved.get(key)
        if old is None:
            old = torch.zeros_like(live, memory_format=torch.preserve_format)
        elif not follows(old, live):
            old = copy_like(live, old)
        new_saved[key] = old
        saved_list.append(old)
        live_list.append(live)
    return new_saved, saved_list, live_list


def restore_entry(param: Tensor, index: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuilds one parameter's wrapper state from a state dict entry (copies, cast to ``param``).

    Raises:
        ValueError: when the entry lacks slow weights or a tensor has the wrong shape.
    """
    if SLOW not in entry:
        raise ValueError(f"Lookahead state dict entry {index} has no '{SLOW}'")
    tensors = {SLOW: entry[SLOW], **{(PULLBACK, k): v for k, v in entry.get(PULLBACK, {}).items()}}
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(
                f"Lookahead state dict entry {index} ({name}) has shape {tuple(value.shape)}, "
                f"but the parameter has shape {tuple(param.shape)}; load it into an optimizer "
                "built over the same parameters in the same order"
            )
    restored: dict[str, Any] = {SLOW: copy_like(param, entry[SLOW])}
    if PULLBACK in entry:
        restored[PULLBACK] = {k: copy_like(param, v) for k, v in entry[PULLBACK].items()}
    return restored


def pullback_(
    params: Sequence[Tensor],
    inner_state: Mapping[Tensor, Mapping[Any, Any]],
    own_state: MutableMapping[Tensor, dict[str, Any]],
    alpha: float,
    *,
    foreach: bool | None,
) -> None:
    """``pullback="pullback"`` at a sync: buf <- saved + alpha (buf - saved); saved <- buf.

    It is the weights' rule applied to (saved, buf) pairs, so it shares their kernel.
    """
    saved_all: list[Tensor] = []
    live_all: list[Tensor] = []
    for p in params:
        saved, saved_list, live_list = pullback_pairs(
            p, inner_state.get(p, {}), own_state[p].get(PULLBACK, {})
        )
        if saved:
            own_state[p][PULLBACK] = saved
        else:
            own_state[p].pop(PULLBACK, None)
        saved_all += saved_list
        live_all += live_list
    lookahead_sync_(saved_all, live_all, alpha, foreach=foreach)


def restore_state(
    groups: Sequence[Mapping[str, Any]],
    saved_groups: Sequence[Mapping[str, Any]],
    saved_state: Mapping[int, Mapping[str, Any]],
) -> defaultdict[Tensor, dict[str, Any]]:
    """Maps an index-packed state back onto the parameters (copies, cast to each parameter).

    Raises:
        ValueError: when the groups differ in number or size, or slow weights are missing.
    """
    sizes = [len(g["params"]) for g in groups]
    saved_sizes = [len(g["params"]) for g in saved_groups]
    if sizes != saved_sizes:
        raise ValueError(
            f"The Lookahead state dict was saved for parameter groups of sizes {saved_sizes} "
            f"({sum(saved_sizes)} parameters), but this optimizer has groups of sizes {sizes} "
            f"({sum(sizes)} parameters); build it over the same parameters in the same order"
        )
    id_map = dict(
        zip(
            chain.from_iterable(g["params"] for g in saved_groups),
            chain.from_iterable(g["params"] for g in groups),
        )
    )
    if set(id_map) != set(saved_state):
        raise ValueError(
            f"The Lookahead state dict has slow weights for parameters {sorted(saved_state)}, "
            f"but its parameter groups list {sorted(id_map)}"
        )
    restored: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
    with torch.no_grad():
        for index, entry in saved_state.items():
            restored[id_map[index]] = restore_entry(id_map[index], index, entry)
    return restored
