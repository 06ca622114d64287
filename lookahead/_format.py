"""The layout of ``Lookahead.state_dict()``: torch.optim's, so that tools that read or reshard
optimizer state dicts (``torch.distributed.checkpoint``, Accelerate) carry all of it.

::

    {"state": {0: {"momentum_buffer": T,            # the inner optimizer's entries for param 0
                   "slow_param": T,                 # the wrapper's: phi
                   "pullback_state": {...}},        # (pullback="pullback" only)
               1: ...},
     "param_groups": [{"lr": 0.1, ..., "lookahead_k": 5, "lookahead_alpha": 0.5,
                       "lookahead_pullback": "none", "lookahead_step": 7, "params": [0, 1]}]}

DCP keeps exactly ``state`` (re-keyed by fully qualified name, optionally flattened to
``state.<fqn>.<key>``) and ``param_groups``; anything else at the top level is dropped, which
is why the wrapper's per-parameter state sits beside the inner optimizer's and its settings and
counter sit in the groups (ints, as torch.optim's ``lr``; a counter saved as a tensor loads too).

Earlier versions saved ``{"state": <wrapper's entries>, "param_groups": ..., "inner":
optimizer.state_dict(), "lookahead": {"k", "alpha", "pullback", "fast_steps"}}``;
:func:`from_old_layout` converts such a state dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lookahead._state import ALPHA, K, MODE, OWN_KEYS, SLOW, STEP, check_hyperparameters


def merge_entry(index: int, inner: Mapping[Any, Any], own: Mapping[str, Any]) -> dict[Any, Any]:
    """One parameter's state dict entry: the inner optimizer's keys, then the wrapper's."""
    clash = [key for key in OWN_KEYS if key in inner]
    if clash:
        raise RuntimeError(
            f"the inner optimizer's state of parameter {index} uses the key(s) {clash}, which "
            "Lookahead's state dict reserves for the slow weights"
        )
    entry = dict(inner)
    entry.update({key: dict(v) if isinstance(v, dict) else v for key, v in own.items()})
    return entry


def split_entry(entry: Mapping[Any, Any]) -> tuple[dict[Any, Any], dict[str, Any]]:
    """The inner optimizer's part and the wrapper's part of one state dict entry."""
    inner = {key: value for key, value in entry.items() if key not in OWN_KEYS}
    own = {key: entry[key] for key in OWN_KEYS if key in entry}
    return inner, own


def is_lookahead_layout(state_dict: Mapping[str, Any]) -> bool:
    """Whether a state dict was made by Lookahead (any version), rather than by a plain optimizer."""
    if "lookahead" in state_dict and "inner" in state_dict:
        return True
    return any(isinstance(e, Mapping) and SLOW in e for e in state_dict.get("state", {}).values())


def from_old_layout(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Converts a state dict of the earlier layout (``"inner"`` and ``"lookahead"`` keys)."""
    meta, inner = state_dict["lookahead"], state_dict["inner"]
    check_hyperparameters(meta["k"], meta["alpha"], meta["pullback"])
    state = {
        index: merge_entry(index, inner["state"].get(index, {}), own)
        for index, own in state_dict["state"].items()
    }
    lookahead = {K: meta["k"], ALPHA: meta["alpha"], MODE: meta["pullback"], STEP: meta["fast_steps"]}
    groups = [{**group, **lookahead} for group in inner["param_groups"]]
    return {"state": state, "param_groups": groups}
