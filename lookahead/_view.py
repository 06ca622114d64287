"""``Lookahead.state``: per parameter, the inner optimizer's state and the wrapper's, as one dict.

The two live apart (the inner optimizer must see only its own keys: Adam, for one, initializes
a parameter's state when that state is empty), but tools that handle optimizer state read
``optimizer.state[param]`` and expect everything there: ``torch.distributed.checkpoint``
loads a flattened state dict key by key from the keys it finds in it, and initializes an
optimizer whose ``state`` is empty by a zero-learning-rate step. So this view

* merges, for ``state[p]``, the inner optimizer's entries (``state[p]["exp_avg"]``) with the
  wrapper's (``state[p]["slow_param"]``, ``state[p]["pullback_state"]``); writes go to the
  owner of the key, and
* lists a parameter once the wrapper has stepped, once the inner optimizer has state, or once
  ``state[p]`` was read (as ``defaultdict`` lists a key once it is read). A fresh wrapper's
  state is thus empty, like a fresh torch optimizer's, although phi_0 was captured at
  construction and ``state[p]["slow_param"]`` returns it; after the first step it is never
  empty, so DCP never steps a trained wrapper.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from lookahead._state import OWN_KEYS

if TYPE_CHECKING:
    from lookahead.optimizer import Lookahead


class ParamState(MutableMapping):
    """One parameter's merged state: the inner optimizer's keys first, then the wrapper's."""

    def __init__(self, owner: Lookahead, param: Tensor) -> None:
        self._owner, self._param = owner, param

    def _inner(self) -> dict[Any, Any]:
        return self._owner.optimizer.state.get(self._param, {})

    def _own(self) -> dict[str, Any]:
        return self._owner._own.get(self._param, {})

    def __getitem__(self, key: Any) -> Any:
        return (self._own() if key in OWN_KEYS else self._inner())[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        if key in OWN_KEYS:
            self._owner._own.setdefault(self._param, {})[key] = value
        else:
            self._owner.optimizer.state[self._param][key] = value

    def __delitem__(self, key: Any) -> None:
        del (self._own() if key in OWN_KEYS else self._inner())[key]

    def __iter__(self) -> Iterator[Any]:
        return iter([*self._inner(), *self._own()])

    def __len__(self) -> int:
        return len(self._inner()) + len(self._own())

    def __repr__(self) -> str:
        return repr(dict(self))


class LookaheadState(MutableMapping):
    """``Lookahead.state``: parameter -> :class:`ParamState` (see the module docstring)."""

    def __init__(self, owner: Lookahead) -> None:
        self._owner = owner

    def _listed(self) -> bool:
        owner = self._owner
        return owner._read or owner.fast_steps > 0 or len(owner.optimizer.state) > 0

    def _keys(self) -> list[Tensor]:
        # Dict lookups only: `tensor in list` would compare tensors elementwise.
        if not self._listed():
            return []  # nothing has state yet: the inner optimizer's state is empty too
        own, inner = self._owner._own, self._owner.optimizer.state
        return [*own, *(p for p in inner if p not in own)]

    def __getitem__(self, param: Tensor) -> ParamState:
        self._owner._read = True
        return ParamState(self._owner, param)

    def get(self, param: Tensor, default: Any = None) -> Any:
        return self[param] if param in self else default

    def __contains__(self, param: object) -> bool:
        own, inner = self._owner._own, self._owner.optimizer.state
        return (param in own and self._listed()) or param in inner

    def __setitem__(self, param: Tensor, value: Any) -> None:
        del self[param]
        self[param].update(value)

    def __delitem__(self, param: Tensor) -> None:
        self._owner._own.pop(param, None)
        self._owner.optimizer.state.pop(param, None)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __repr__(self) -> str:
        return repr(dict(self))
