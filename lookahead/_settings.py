"""Lookahead's settings as attributes: k, alpha, pullback and the fast-step counter.

They live in the inner optimizer's parameter groups (``"lookahead_k"``, ``"lookahead_alpha"``,
``"lookahead_pullback"``, ``"lookahead_step"``), so each group may have its own and DCP saves
them with the groups; ``opt.k`` and the others read the value the groups share and set it in
every group (and in ``defaults``, for groups added later).
"""

from __future__ import annotations

from typing import Any

from lookahead import _state
from lookahead._state import ALPHA, K, MODE, STEP


class GroupSettings:
    """Mixin for :class:`lookahead.Lookahead`; needs ``param_groups``, ``defaults`` and ``_constructed``."""

    def _common(self, key: str) -> Any:
        values = {group[key] for group in self.param_groups if key in group}
        if len(values) != 1:
            raise AttributeError(
                f"the parameter groups have different values of {key!r} ({sorted(values)}); "
                f"read opt.param_groups[i][{key!r}]"
            )
        return values.pop()

    def _set_all(self, key: str, value: Any) -> None:
        for group in self.param_groups:
            group[key] = value
        if key != STEP:
            self.defaults[key] = value  # for groups added later

    @property
    def k(self) -> int:
        """Fast steps per sync (the groups' ``"lookahead_k"``, when they agree)."""
        return self._common(K)

    @k.setter
    def k(self, value: int) -> None:
        _state.check_hyperparameters(value, 0.5, "none")
        self._set_all(K, int(value))

    @property
    def alpha(self) -> float:
        """The slow step size (the groups' ``"lookahead_alpha"``, when they agree)."""
        return self._common(ALPHA)

    @alpha.setter
    def alpha(self, value: float) -> None:
        _state.check_hyperparameters(1, value, "none")
        self._set_all(ALPHA, float(value))

    @property
    def pullback(self) -> str:
        """What a sync does to the inner state (the groups' ``"lookahead_pullback"``)."""
        return self._common(MODE)

    @pullback.setter
    def pullback(self, value: str) -> None:
        _state.check_hyperparameters(1, 0.5, value)
        self._set_all(MODE, value)

    @property
    def fast_steps(self) -> int:
        """The fast steps taken (the groups' ``"lookahead_step"``; 0 before the first group)."""
        groups = self.param_groups if self._constructed else []
        return _state.unwrap_step(groups[0].get(STEP, 0)) if groups else 0

    @fast_steps.setter
    def fast_steps(self, value: int) -> None:
        self._set_all(STEP, int(value))
