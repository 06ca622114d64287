"""Hyperparameters (per parameter group) and per-parameter state of the Lookahead wrapper.

Every parameter group of the inner optimizer (the wrapper's ``param_groups`` are the same list)
carries the wrapper's settings beside ``lr``, so that lr schedulers, ``state_dict()`` and
``torch.distributed.checkpoint`` (which keeps only ``param_groups`` and per-parameter state)
treat them like any other hyperparameter:

* ``"lookahead_k"``: fast steps per sync, ``"lookahead_alpha"``: the slow step size,
  ``"lookahead_pullback"``: what a sync does to the inner state (``"none"``, ``"reset"``,
  ``"pullback"``), and
* ``"lookahead_step"``: the fast steps the group has taken; the group syncs after each step
  that makes it a multiple of its k. Groups added later start at the wrapper's current count,
  so that groups with one k sync together.

The wrapper keeps, for every parameter ``p``,

* ``slow_param``: the slow weights phi (one copy of ``p``, of ``p``'s layout), and
* ``pullback_state`` (only with ``"pullback"``): a dict holding, for each parameter-shaped
  floating-point tensor of the inner optimizer's state (SGD's ``momentum_buffer``, Adam's
  ``exp_avg`` and ``exp_avg_sq``, ...), a copy of its value at the previous sync.

The helpers here know nothing about particular inner optimizers: a state tensor takes part in
the pullback when it has the parameter's shape and a floating (or complex) dtype. Only the key
``"step"`` is excluded by name, because torch.optim reserves it for the step count (a 0-dim
tensor that would otherwise match a 0-dim parameter).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, MutableMapping, Sequence
from itertools import chain
from typing import Any

import torch
from torch import Tensor

from lookahead._dtensor import DTensor, copy_like, same_layout
from lookahead._sync import lookahead_sync_

SLOW = "slow_param"
PULLBACK = "pullback_state"
OWN_KEYS = (SLOW, PULLBACK)
PULLBACK_MODES = ("none", "reset", "pullback")
K, ALPHA, MODE, STEP = "lookahead_k", "lookahead_alpha", "lookahead_pullback", "lookahead_step"
GROUP_KEYS = (K, ALPHA, MODE, STEP)


def check_hyperparameters(k: Any, alpha: Any, pullback: Any) -> None:
    """Raises ValueError naming the first invalid value of k, alpha or pullback."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"Invalid k: {k!r}; k, the fast steps per sync, must be a positive int")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Invalid alpha: {alpha!r}; alpha, the slow step size, must lie in [0, 1]")
    if not isinstance(pullback, str) or pullback not in PULLBACK_MODES:
        raise ValueError(f"Invalid pullback: {pullback!r}; choose one of {PULLBACK_MODES}")


def check_group(group: Mapping[str, Any], index: int) -> None:
    """Raises ValueError when a (saved) parameter group lacks a Lookahead key or has a bad value."""
    missing = [key for key in GROUP_KEYS if key not in group]
    if missing:
        raise ValueError(f"Lookahead parameter group {index} has no {missing}")
    check_hyperparameters(group[K], group[ALPHA], group[MODE])
    step = group[STEP]
    if isinstance(step, Tensor) and step.numel() == 1:  # saved as a tensor, as torch.optim's "step"
        step = step.item()
        step = int(step) if float(step).is_integer() else step
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"Invalid {STEP} in parameter group {index}: {group[STEP]!r}")


def set_group_defaults(group: dict[str, Any], defaults: Mapping[str, Any], step: int) -> None:
    """Fills in (and checks) a new group's Lookahead keys; its counter starts at ``step``."""
    values = {key: group.get(key, defaults[key]) for key in (K, ALPHA, MODE)}
    check_hyperparameters(values[K], values[ALPHA], values[MODE])
    group.update({K: int(values[K]), ALPHA: float(values[ALPHA]), MODE: values[MODE], STEP: step})


def sync_due(group: Mapping[str, Any]) -> bool:
    """Whether the group's last fast step ended a period (``lookahead_step`` a multiple of k)."""
    return group[STEP] > 0 and group[STEP] % group[K] == 0


def follows(copy: Tensor, like: Tensor) -> bool:
    """Whether ``copy`` still matches ``like`` in dtype, device and layout (checked at every sync)."""
    if copy.dtype is not like.dtype or copy.device != like.device:
        return False
    # The common case, two plain tensors, by type identity: isinstance would double the cost
    # of this check, which runs for every parameter at every sync.
    return (type(copy) is not DTensor and type(like) is not DTensor) or same_layout(copy, like)


def is_param_shaped(key: Any, value: Any, param: Tensor) -> bool:
    """Whether an inner-state entry is interpolated by ``pullback="pullback"``."""
    return (
        key != "step"
        and isinstance(value, Tensor)
        and (value.is_floating_point() or value.is_complex())
        and value.shape == param.shape
    )


def capture(param: Tensor, inner_state: Mapping[Any, Any], mode: str) -> dict[str, Any]:
    """phi <- theta by value, plus copies of the inner state for ``pullback="pullback"``."""
    entry: dict[str, Any] = {SLOW: copy_like(param, param.detach())}
    if mode == "pullback":
        saved = {
            key: value.detach().clone()
            for key, value in inner_state.items()
            if is_param_shaped(key, value, param)
        }
        if saved:
            entry[PULLBACK] = saved
    return entry


def add_missing_copies(param: Tensor, inner_state: Mapping[Any, Any], entry: dict[str, Any]) -> None:
    """Gives every parameter-shaped inner buffer a pullback copy, zeros where none was saved.

    Zeros are the value a buffer that did not exist at the previous sync stands for (see
    :func:`pullback_pairs`), so this changes no result; it makes the copies exist as soon as
    the inner state does, so that a fresh optimizer's state lists them (DCP loads only the
    entries it finds there).
    """
    saved = entry.get(PULLBACK, {})
    for key, live in inner_state.items():
        if key not in saved and is_param_shaped(key, live, param):
            saved[key] = torch.zeros_like(live, memory_format=torch.preserve_format)
    if saved:
        entry[PULLBACK] = saved


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


def restore_entry(param: Tensor, index: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuilds one parameter's wrapper state from a state dict entry (copies, cast to ``param``).

    Raises:
        ValueError: when the entry lacks slow weights or a tensor has the wrong shape.
    """
    if not isinstance(entry.get(SLOW), Tensor):
        raise ValueError(f"Lookahead state dict entry {index} has no '{SLOW}'")
    copies = entry.get(PULLBACK) or {}
    tensors = {SLOW: entry[SLOW], **{(PULLBACK, k): v for k, v in copies.items()}}
    for name, value in tensors.items():
        if not isinstance(value, Tensor) or tuple(value.shape) != tuple(param.shape):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"Lookahead state dict entry {index} ({name}) has shape {shape}, "
                f"but the parameter has shape {tuple(param.shape)}; load it into an optimizer "
                "built over the same parameters in the same order"
            )
    restored: dict[str, Any] = {SLOW: copy_like(param, entry[SLOW])}
    if copies:
        restored[PULLBACK] = {k: copy_like(param, v) for k, v in copies.items()}
    return restored


def restore_state(
    groups: Sequence[Mapping[str, Any]],
    saved_groups: Sequence[Mapping[str, Any]],
    saved_state: Mapping[int, Mapping[str, Any]],
) -> dict[Tensor, dict[str, Any]]:
    """Maps the wrapper's part of an index-packed state back onto the parameters (copies).

    A parameter that does not require gradients may lack an entry
    (``torch.distributed.checkpoint`` drops the state of such parameters); its slow weights are
    re-captured from its current value, which is what they are for a parameter that never moves.

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
    missing = [i for i, p in id_map.items() if i not in saved_state and p.requires_grad]
    if missing or not set(saved_state) <= set(id_map):
        raise ValueError(
            f"The Lookahead state dict has slow weights for parameters {sorted(saved_state)}, "
            f"but its parameter groups list {sorted(id_map)}"
        )
    restored: dict[Tensor, dict[str, Any]] = {}
    with torch.no_grad():
        for index, param in id_map.items():
            if index in saved_state:
                restored[param] = restore_entry(param, index, saved_state[index])
            else:
                restored[param] = {SLOW: copy_like(param, param.detach())}
    return restored


def unwrap_step(value: Any) -> int:
    """A counter saved as an int or as a 0-dim tensor, as an int."""
    return int(value.item()) if isinstance(value, Tensor) else int(value)
