"""An alpha schedule for Lookahead: alpha as a function of the fast step, set before every step.

airbench (Jordan 2024) averages the weights every 5 steps with the decay
d(t) = 0.95**5 * (t / T)**3 after T total steps; in Lookahead's terms that is k = 5 and
alpha(t) = 1 - d(t): no averaging at the start (alpha = 1), and alpha = 1 - 0.95**5 ~ 0.226 at
the end. :func:`alpha_power_schedule` builds that family, :class:`AlphaSchedule` any other.

Which alpha a sync uses: the sync at fast step t (the t-th ``step()`` that counts, t a multiple
of the group's k) uses alpha(t). The schedule is a step pre-hook on the wrapper that sets each
group's ``"lookahead_alpha"`` to alpha(t), t = the group's ``"lookahead_step"`` + 1, before
every step, and once when it is built (so ``opt.alpha`` shows the next step's value). It keeps
no state of its own: alpha depends only on the counter, which the optimizer's state dict holds,
so rebuilding the schedule on a resumed wrapper (before or after ``load_state_dict``) continues
bit for bit. A step that ``GradScaler`` skips calls no hook and advances no counter.

Per group: each group reads its own counter and syncs at multiples of its own k; one function
serves every group (also groups added later), or a list gives one per group, as LambdaLR's
``lr_lambda`` does. Buffers (``Lookahead(..., buffers=...)``) sync with group 0's alpha.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lookahead._state import ALPHA, STEP, unwrap_step
from lookahead.optimizer import Lookahead

__all__ = ["AlphaSchedule", "alpha_power_schedule"]

AlphaFn = Callable[[int], float]


class AlphaSchedule:
    """Sets every group's alpha to ``alpha_fn(t)`` before its fast step t (see the module docstring).

    Args:
        optimizer: the :class:`~lookahead.Lookahead` wrapper.
        alpha_fn: t -> alpha in [0, 1], with t = 1, 2, ... the fast step about to be taken; or a
            list of such functions, one per parameter group.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=5)
        >>> schedule = AlphaSchedule(opt, lambda t: max(0.5, 1 - t / 100))
        >>> opt.alpha   # alpha(1): the value the next step would sync with
        0.99

    Like an lr scheduler it is not part of the optimizer's pickle or state dict: build it again
    on a copy or a resumed wrapper. :meth:`state_dict` is empty (for tools that save every
    scheduler); :meth:`remove` detaches it, leaving the last alphas in the groups.
    """

    def __init__(self, optimizer: Lookahead, alpha_fn: AlphaFn | Sequence[AlphaFn]) -> None:
        if not isinstance(optimizer, Lookahead):
            raise TypeError(
                f"AlphaSchedule schedules a Lookahead wrapper's alpha, got {type(optimizer).__name__}"
            )
        self.optimizer, self._fn = optimizer, alpha_fn
        self.alpha_fns: list[AlphaFn] | None = list(alpha_fn) if isinstance(alpha_fn, Sequence) else None
        self.apply()  # fails here, not at the first step, on a bad function or group count
        self._handle = optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.apply())

    # Eager under torch.compile(opt.step): reading the counter in a graph would guard on its
    # value and recompile at every step (see Lookahead._advance).
    @torch._disable_dynamo
    def apply(self) -> None:
        """Sets each group's ``"lookahead_alpha"`` for its next fast step (the hook calls this)."""
        groups = self.optimizer.param_groups
        if self.alpha_fns is not None and len(self.alpha_fns) != len(groups):
            raise ValueError(
                f"AlphaSchedule has {len(self.alpha_fns)} alpha functions for {len(groups)} "
                "parameter groups; give one function, or one per group"
            )
        for index, group in enumerate(groups):
            fn = self._fn if self.alpha_fns is None else self.alpha_fns[index]
            t = unwrap_step(group.get(STEP, 0)) + 1  # a group without it fails in step()
            alpha = fn(t)
            if isinstance(alpha, torch.Tensor) and alpha.numel() == 1:  # e.g. a schedule tensor's entry
                alpha = alpha.item()
            if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
                raise ValueError(
                    f"the alpha schedule gave alpha={alpha!r} for fast step {t} of parameter group "
                    f"{index}; alpha must lie in [0, 1]"
                )
            group[ALPHA] = float(alpha)

    def remove(self) -> None:
        """Detaches the schedule; the groups keep the alphas it last set."""
        self._handle.remove()

    def state_dict(self) -> dict[str, Any]:
        """Empty: alpha is a function of the counter, which the optimizer's state dict holds."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to load (see :meth:`state_dict`)."""


def alpha_power_schedule(
    optimizer: Lookahead,
    total_steps: int,
    alpha_end: float | Sequence[float],
    power: float = 3.0,
) -> AlphaSchedule:
    r"""alpha(t) = 1 - (1 - alpha_end) * (min(t, T) / T) ** power, with T = ``total_steps``.

    alpha falls from 1 (no averaging) at t = 0 to ``alpha_end`` at t = T (exactly) and stays
    there.
    airbench's schedule is ``alpha_power_schedule(opt, T, alpha_end=1 - 0.95**5, power=3)``
    on ``Lookahead(inner, k=5)``, i.e. the decay d(t) = 1 - alpha(t) = 0.95**5 (t/T)**3.

    Args:
        optimizer: the :class:`~lookahead.Lookahead` wrapper.
        total_steps: T, the fast steps of the whole run (a positive int).
        alpha_end: alpha at t >= T, in [0, 1]; or one value per parameter group.
        power: the exponent (>= 0; default 3, airbench's).

    Returns:
        The :class:`AlphaSchedule`, already attached.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) or total_steps < 1:
        raise ValueError(f"Invalid total_steps: {total_steps!r}; it must be a positive int")
    if isinstance(power, bool) or not isinstance(power, numbers.Real) or not 0 <= power < math.inf:
        raise ValueError(f"Invalid power: {power!r}; it must be a finite number >= 0")
    ends = list(alpha_end) if isinstance(alpha_end, Sequence) else [alpha_end]
    for end in ends:
        if isinstance(end, bool) or not isinstance(end, numbers.Real) or not 0.0 <= end <= 1.0:
            raise ValueError(f"Invalid alpha_end: {end!r}; it must lie in [0, 1]")

    def make(end: float) -> AlphaFn:
        # alpha_end itself from T on: 1 - (1 - 0.3) is 0.30000000000000004 in floating point
        return lambda t: end if t >= total_steps else 1.0 - (1.0 - end) * (t / total_steps) ** power

    fns = [make(end) for end in ends]
    return AlphaSchedule(optimizer, fns if isinstance(alpha_end, Sequence) else fns[0])
