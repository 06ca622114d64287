"""Lookahead over buffers: tensors that are not optimized but are averaged like the weights.

airbench (Jordan 2024) interpolates every floating entry of the model's ``state_dict`` at each
sync, BatchNorm running statistics included, so that the slow model carries statistics of its
own. ``Lookahead(..., buffers=...)`` does the same: every buffer b has a slow copy phi_b, taken
when the wrapper is built, and at every sync

    phi_b <- phi_b + alpha * (b - phi_b)
    b     <- phi_b

exactly as for a parameter (the same kernel, in the same call). ``slow_weights()`` swaps phi_b
in along with the slow weights and ``load_slow_weights()`` keeps it.

Settings: buffers belong to no parameter group, so they follow group 0: they sync after the
steps where group 0 syncs, with group 0's ``"lookahead_alpha"`` (an alpha schedule thus applies
to them as to group 0). ``pullback`` does not concern them: they have no inner state.

Sources: ``buffers=model`` (a Module) takes its floating buffers, looked up by name whenever
they are used, so ``model.to(...)`` after building is followed (it replaces a module's buffer
tensors by new ones); integer buffers (``num_batches_tracked``) are skipped. ``buffers=[...]``
takes those tensors, which must be floating: an integer counter has no meaningful average.
The list holds the tensor objects, so move the model before building the wrapper.

State dict: the slow buffers are saved, in order, as a list under the top-level key
``"lookahead_buffers"`` (they are in no parameter group; the buffers themselves are in the
model's state dict). ``torch.distributed.checkpoint`` keeps only ``state`` and
``param_groups`` and so drops this key: a state dict without it loads with a warning and the
slow buffers restart from the current buffers.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module

from lookahead._dtensor import copy_like
from lookahead._format import is_lookahead_layout
from lookahead._state import follows

BUFFERS = "lookahead_buffers"

_FIX = "build the wrapper with the same buffers= as the one that saved it (same model, same order)"


class SlowBuffers:
    """The buffers a Lookahead averages, and their slow copies phi_b (see the module docstring)."""

    def __init__(self, source: Module | Iterable[Tensor], params: Sequence[Tensor]) -> None:
        if isinstance(source, Tensor):
            raise TypeError("Lookahead buffers= takes a Module or a list of tensors, got one tensor")
        if isinstance(source, Module):
            self._module: Module | None = source
            self._names = [n for n, b in source.named_buffers() if b.is_floating_point()]
            self._tensors: list[Tensor] = []
        else:
            self._module, self._names, self._tensors = None, [], list(source)
        live = self.live()
        param_ids = {id(p) for p in params}
        for i, b in enumerate(live):
            if not isinstance(b, Tensor):
                raise TypeError(f"Lookahead buffer {i} is a {type(b).__name__}, not a tensor")
            if not b.is_floating_point():
                raise TypeError(
                    f"Lookahead buffer {i} has dtype {b.dtype}; only floating tensors are "
                    "interpolated (BatchNorm's num_batches_tracked is an integer counter): pass "
                    "[b for b in model.buffers() if b.is_floating_point()], or the model itself"
                )
            if id(b) in param_ids:
                raise ValueError(f"Lookahead buffer {i} is a parameter of the optimizer; pass buffers only")
        if len({id(b) for b in live}) != len(live):
            raise ValueError("Lookahead buffers= lists a tensor twice; pass each buffer once")
        with torch.no_grad():
            self.slow = [copy_like(b, b) for b in live]  # phi_b,0 = b_0

    def __len__(self) -> int:
        return len(self.slow)

    def live(self) -> list[Tensor]:
        """The buffers b (a module's are looked up by name: ``model.to`` replaces them)."""
        if self._module is None:
            return self._tensors
        buffers = dict(self._module.named_buffers())
        missing = [name for name in self._names if name not in buffers]
        if missing:
            raise RuntimeError(f"the model no longer has the buffers {missing} that Lookahead averages")
        return [buffers[name] for name in self._names]

    def pairs(self) -> tuple[list[Tensor], list[Tensor]]:
        """The buffers and their slow copies, re-cast where a buffer changed dtype or device."""
        live = self.live()
        with torch.no_grad():
            self.slow = [phi if follows(phi, b) else copy_like(b, phi) for b, phi in zip(live, self.slow)]
        return live, self.slow

    def load(self, slow: list[Tensor] | None) -> None:
        """Takes the slow buffers :func:`to_load` returned; None re-captures phi_b <- b."""
        if slow is None:
            with torch.no_grad():
                slow = [copy_like(b, b) for b in self.live()]
        self.slow = slow

    def restored(self, saved: Any) -> list[Tensor]:
        """Copies of saved slow buffers, cast to the buffers; checks everything first.

        Raises:
            ValueError: when the count or a shape differs from this wrapper's buffers.
        """
        live = self.live()
        if not isinstance(saved, Sequence) or not all(isinstance(t, Tensor) for t in saved):
            raise ValueError(f"The Lookahead state dict's {BUFFERS!r} is not a list of tensors; {_FIX}")
        if len(saved) != len(live):
            raise ValueError(
                f"The Lookahead state dict holds {len(saved)} slow buffers ({BUFFERS!r}), but this "
                f"optimizer averages {len(live)}; {_FIX}"
            )
        for i, (b, phi) in enumerate(zip(live, saved)):
            if tuple(phi.shape) != tuple(b.shape):
                raise ValueError(
                    f"Lookahead slow buffer {i} has shape {tuple(phi.shape)} in the state dict, but "
                    f"the buffer has shape {tuple(b.shape)}; {_FIX}"
                )
        with torch.no_grad():
            return [copy_like(b, phi) for b, phi in zip(live, saved)]


def joined(
    buffers: SlowBuffers | None, fast: list[Tensor], slow: list[Tensor]
) -> tuple[list[Tensor], list[Tensor]]:
    """``fast`` and ``slow`` followed by the buffers and their slow copies (if any)."""
    if buffers is None:
        return fast, slow
    live, phi = buffers.pairs()
    return fast + live, slow + phi


def to_load(slow: SlowBuffers | None, state_dict: Mapping[str, Any]) -> list[Tensor] | None:
    """The slow buffers to load from ``state_dict`` (checked copies), or None where it has none
    (then they are re-captured from the buffers; with a warning if it is a Lookahead state dict:
    an inner-only one warns anyway).

    Raises:
        ValueError: when the state dict has slow buffers and the wrapper none, or they mismatch.
    """
    if BUFFERS not in state_dict:
        if slow is not None and is_lookahead_layout(state_dict):
            warnings.warn(
                f"the Lookahead state dict has no {BUFFERS!r} (DCP drops it): the slow buffers "
                "were re-captured from the current buffers",
                stacklevel=3,
            )
        return None
    if slow is None:
        raise ValueError(
            f"The Lookahead state dict holds slow buffers ({BUFFERS!r}), but this optimizer was "
            "built without buffers=; pass the buffers it was saved with, or delete the key to drop them"
        )
    return slow.restored(state_dict[BUFFERS])
