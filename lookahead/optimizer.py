"""The Lookahead optimizer (Zhang, Lucas, Hinton, Ba 2019), wrapping any torch optimizer."""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from lookahead import _state
from lookahead._state import PULLBACK_MODES, check_hyperparameters
from lookahead._sync import copy_, lookahead_sync_

__all__ = ["Lookahead", "PULLBACK_MODES"]

# What pickling/deepcopy keeps; hooks and an lr_scheduler's patched `step` are dropped, as
# torch.optim.Optimizer.__getstate__ drops them.
_PICKLED = ("defaults", "state", "optimizer", "k", "alpha", "pullback", "foreach", "fast_steps")


class Lookahead(Optimizer):
    r"""Lookahead: k fast steps of an inner optimizer, then one slow step toward where they led.

    Algorithm 1 of Zhang et al. (2019), with fast weights theta (the parameters), slow weights
    phi and an inner optimizer A::

        phi = theta                          # phi_0 = theta_0, captured here in __init__
        every step():       theta <- theta + A(grad)           # one fast step
        every k-th step():  phi   <- phi + alpha * (theta - phi)
                            theta <- phi

    optax calls k ``sync_period`` and alpha ``slow_step_size``. The inner optimizer's state at a
    sync is kept (``pullback="none"``, the paper's main algorithm), cleared (``"reset"``: the
    inner state of every parameter is deleted, as if the inner optimizer were new), or
    interpolated like the weights (``"pullback"``): every parameter-shaped floating tensor of
    the inner state (momentum buffer, ``exp_avg``, ``exp_avg_sq``, ...) becomes
    ``saved + alpha * (buf - saved)``, where ``saved`` is a copy of its value at the previous
    sync (zeros for a buffer that did not exist then), and the result is saved for the next
    sync. ``step`` counts and tensors of other shapes are left alone.

    Args:
        optimizer: the inner optimizer A, built over the model's parameters.
        k: fast steps per sync (default: 5, the paper's and the official code's value).
        alpha: slow step size in [0, 1] (default: 0.5; the paper's CIFAR-100 grid, Table 5,
            finds alpha=0.5 and 0.8 within noise of each other at k=5; the official code
            defaults to 0.8: pass alpha=0.8 to match it).
        pullback: ``"none"``, ``"reset"`` or ``"pullback"`` (default: ``"none"``).
        foreach: vectorize the sync with ``torch._foreach_*`` kernels grouped by device and
            dtype; ``None`` chooses like torch.optim (foreach on CUDA, a for-loop on CPU).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=5)
        >>> for _ in range(10):
        ...     opt.zero_grad()
        ...     model(torch.randn(8, 4)).pow(2).mean().backward()
        ...     opt.step()
        >>> with opt.slow_weights():   # the parameters hold phi here, theta again afterwards
        ...     val_loss = model(torch.randn(8, 4)).pow(2).mean()
        >>> opt.load_slow_weights()    # end of training: keep phi, as the paper does

    The wrapper is a real ``torch.optim.Optimizer``: ``param_groups`` *is* the inner
    optimizer's list (so lr schedulers and ``GradScaler`` act on the real groups), and step and
    state-dict hooks fire on it. ``state`` holds the wrapper's own per-parameter state
    (``"slow_param"``, and ``"pullback_state"`` with ``pullback="pullback"``); the inner
    optimizer's state stays in ``optimizer.state``. ``state_dict()`` returns::

        {"state": {0: {"slow_param": Tensor, ...}, 1: ...},   # index-packed like torch.optim
         "param_groups": <the inner state dict's param_groups>,
         "inner": optimizer.state_dict(),
         "lookahead": {"k": 5, "alpha": 0.5, "pullback": "none", "fast_steps": 7}}

    and ``load_state_dict`` restores all of it (k, alpha and pullback included, as torch.optim
    restores lr), so a resumed run continues bit for bit, also mid-period. An inner-only state
    dict (a plain optimizer's, or the official implementation's) loads with a warning: the
    slow weights are re-captured from the current parameters and the period restarts.

    .. note::
        Unlike the prior art, phi_0 = theta_0 is captured eagerly (timm starts phi at
        theta_k, torch-optimizer at theta_1); slow weights, counter and pullback copies survive
        ``state_dict()`` (the official code loses them); pullback copies are made by value
        (the official code aliases the live buffer, which scales it by alpha*(2-alpha)); every
        parameter is synced, also those without a gradient; slow weights are cast lazily to
        each parameter's current device and dtype, so ``model.to(...)`` after
        building the optimizer is fine. Memory: one copy of the parameters (plus the pullback
        copies), and one transient copy inside :meth:`slow_weights`. BatchNorm running
        statistics are buffers, not parameters: this class never touches them; whether to
        evaluate phi with them as they are or to recompute them
        (``torch.optim.swa_utils.update_bn``) is the caller's choice.

        AMP: pass the wrapper to ``scaler.unscale_(opt)`` and ``scaler.step(opt)``; a step the
        scaler skips (inf/NaN gradients) does not advance the counter. DDP: gradients are
        all-reduced before ``step()``, so every rank makes the same updates and phi stays
        identical on every rank without communication. torch.compile: compile the model
        (``model = torch.compile(model)``) and keep ``opt.step()`` eager; its cost is the inner
        step plus a sync every k steps. ``torch.compile(opt.step)`` also works (checked with
        torch 2.13 and 2.15 on CPU, SGD and Adam: equal to eager within float rounding, no
        recompilation as the counter advances).

    References:
        Zhang, Lucas, Hinton, Ba. "Lookahead Optimizer: k steps forward, 1 step back".
        NeurIPS 2019. https://arxiv.org/abs/1907.08610
    """

    def __init__(
        self,
        optimizer: Optimizer,
        k: int = 5,
        alpha: float = 0.5,
        *,
        pullback: Literal["none", "reset", "pullback"] = "none",
        foreach: bool | None = None,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"Lookahead wraps a torch.optim.Optimizer, got {type(optimizer).__name__}; build "
                "the inner optimizer first: Lookahead(torch.optim.SGD(model.parameters(), lr=0.1))"
            )
        check_hyperparameters(k, alpha, pullback)
        if foreach is not None and not isinstance(foreach, bool):
            raise TypeError(f"Invalid foreach: {foreach!r}; use True, False or None")
        self.optimizer = optimizer
        self.k, self.alpha, self.pullback, self.foreach = int(k), float(alpha), pullback, foreach
        self.fast_steps = 0
        self._constructed, self._swapped = False, False
        defaults = {**optimizer.defaults, "lookahead_k": self.k, "lookahead_alpha": self.alpha}
        # Optimizer.__init__ sets up the hooks and `self.state`, assigns `param_groups = []` and
        # then calls add_param_group for each group it is given. The groups already live in
        # the inner optimizer, so both calls only capture the slow weights (see below).
        super().__init__(optimizer.param_groups, defaults)
        self._constructed = True

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The inner optimizer's ``param_groups`` (the same list, also after loading)."""
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        # Only Optimizer.__init__ assigns this before construction ends; later assignments
        # rebind the inner optimizer's list so that the two never disagree.
        if self._constructed:
            self.optimizer.param_groups = groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group to the inner optimizer and captures its slow weights (phi_0 = theta)."""
        if self._constructed:
            self.optimizer.add_param_group(param_group)
            param_group = self.optimizer.param_groups[-1]
        self._capture(param_group["params"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Delegates to the inner optimizer's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(  # type: ignore[override]
        self, closure: Callable[[], float] | None = None
    ) -> float | None:
        """One fast step of the inner optimizer (``closure`` goes to it; its loss is returned),
        then the outer update after every k-th call."""
        if self._swapped:
            raise RuntimeError("Lookahead.step() was called inside slow_weights(); leave it first")
        loss = self.optimizer.step(closure)
        self.fast_steps += 1
        if self.fast_steps % self.k == 0:
            self._sync()
        return loss

    @contextlib.contextmanager
    def slow_weights(self) -> Iterator[None]:
        """Puts phi into the parameters; restores theta bit for bit on exit, also when the body
        raises. Buffers (BatchNorm running statistics) are not touched."""
        if self._swapped:
            raise RuntimeError("slow_weights() blocks do not nest")
        fast, slow = self._pairs()
        with torch.no_grad():
            backup = [p.detach().clone(memory_format=torch.preserve_format) for p in fast]
        copy_(fast, slow, foreach=self.foreach)
        self._swapped = True
        try:
            yield
        finally:
            copy_(fast, backup, foreach=self.foreach)
            self._swapped = False

    def load_slow_weights(self) -> None:
        """Copies phi into the parameters for good, e.g. at the end of training (Algorithm 1
        returns phi). The counter is kept; further steps continue the current period from phi."""
        if self._swapped:
            raise RuntimeError("load_slow_weights() was called inside slow_weights()")
        fast, slow = self._pairs()
        copy_(fast, slow, foreach=self.foreach)

    @torch._disable_dynamo
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Returns the wrapper's and the inner optimizer's state (format in the class docstring)."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        params, _ = self._pairs()  # casts the slow weights to the parameters' current dtype
        index: dict[int, int] = {}
        for i, p in enumerate(params):
            index.setdefault(id(p), i)  # the first index of a parameter, as torch.optim packs
        inner = self.optimizer.state_dict()
        state_dict: dict[str, Any] = {
            "state": {index[id(p)]: s for p, s in self.state.items() if id(p) in index},
            "param_groups": inner["param_groups"],
            "inner": inner,
            "lookahead": {
                "k": self.k, "alpha": self.alpha, "pullback": self.pullback,
                "fast_steps": self.fast_steps,
            },
        }
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    @torch._disable_dynamo
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Loads a state dict made by :meth:`state_dict`, or an inner-only one (with a warning).

        Raises:
            ValueError: when the state dict was made for a different number of parameters or
                groups, or holds invalid k/alpha/pullback values.
        """
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        if "lookahead" in state_dict and "inner" in state_dict:
            self._load_own(state_dict)
        else:
            warnings.warn(
                "Lookahead.load_state_dict got a state dict without Lookahead entries (a plain "
                "optimizer's, or the official implementation's): it was loaded into the inner "
                "optimizer; the slow weights were re-captured from the current parameters and "
                "the sync period restarted",
                stacklevel=2,
            )
            self.optimizer.load_state_dict(state_dict)
            self.state = defaultdict(dict)
            self.fast_steps = 0
            self._capture(self._params())
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def __getstate__(self) -> dict[str, Any]:
        return {key: self.__dict__[key] for key in _PICKLED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__({**state, "_constructed": True, "_swapped": False})

    def __repr__(self) -> str:
        inner = repr(self.optimizer).replace("\n", "\n    ")
        head = f"Lookahead(k={self.k}, alpha={self.alpha}, pullback={self.pullback!r},"
        return f"{head}\n    {inner}\n)"

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _capture(self, params: list[Tensor]) -> None:
        """phi <- theta (by value) for ``params``, plus the inner-state copies for pullback."""
        with torch.no_grad():
            for p in params:
                self.state[p] = {_state.SLOW: _state.copy_like(p, p)}
                if self.pullback == "pullback":
                    saved = _state.capture_inner(p, self.optimizer.state.get(p, {}))
                    if saved:
                        self.state[p][_state.PULLBACK] = saved

    def _pairs(self) -> tuple[list[Tensor], list[Tensor]]:
        """The parameters and their slow weights, re-cast where a parameter moved."""
        fast = self._params()
        slow = []
        for i, p in enumerate(fast):
            try:
                entry = self.state[p]
                phi = entry[_state.SLOW]
            except KeyError:
                raise RuntimeError(
                    f"parameter {i} (shape {tuple(p.shape)}) has no slow weights: it was added "
                    "to the inner optimizer directly; add groups with Lookahead.add_param_group"
                ) from None
            if not _state.follows(phi, p):
                phi = entry[_state.SLOW] = _state.copy_like(p, phi)
            slow.append(phi)
        return fast, slow

    def _sync(self) -> None:
        fast, slow = self._pairs()
        lookahead_sync_(slow, fast, self.alpha, foreach=self.foreach)
        if self.pullback == "reset":
            for p in fast:
                self.optimizer.state.pop(p, None)
        elif self.pullback == "pullback":
            _state.pullback_(
                fast, self.optimizer.state, self.state, self.alpha, foreach=self.foreach
            )

    def _load_own(self, state_dict: dict[str, Any]) -> None:
        meta = state_dict["lookahead"]
        check_hyperparameters(meta["k"], meta["alpha"], meta["pullback"])
        # Check and copy everything before changing anything: a failure leaves `self` intact.
        new_state = _state.restore_state(
            self.param_groups, state_dict["inner"]["param_groups"], state_dict["state"]
        )
        self.optimizer.load_state_dict(state_dict["inner"])
        self.state = new_state
        self.k, self.alpha, self.pullback = int(meta["k"]), float(meta["alpha"]), meta["pullback"]
        self.fast_steps = int(meta["fast_steps"])
