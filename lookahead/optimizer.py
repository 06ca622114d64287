"""The Lookahead optimizer (Zhang, Lucas, Hinton, Ba 2019), wrapping any torch optimizer."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from lookahead import _buffers, _format, _state
from lookahead._settings import GroupSettings
from lookahead._state import ALPHA, K, MODE, PULLBACK_MODES, SLOW, STEP
from lookahead._sync import copy_, lookahead_sync_
from lookahead._view import LookaheadState

__all__ = ["Lookahead", "PULLBACK_MODES"]

# What pickling/deepcopy keeps; hooks and an lr_scheduler's patched `step` are dropped, as
# torch.optim.Optimizer.__getstate__ drops them. k, alpha, pullback and the counter live in
# the inner optimizer's param_groups.
_PICKLED = ("defaults", "optimizer", "foreach", "_own", "_read", "_copies_due", "_slow_buffers")


class Lookahead(GroupSettings, Optimizer):
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
        buffers: tensors that are not optimized but are synced like the parameters, e.g.
            BatchNorm running statistics, as airbench does: the model (its floating buffers)
            or a list of floating tensors. They follow group 0's k and alpha and are saved
            under ``"lookahead_buffers"``; see ``lookahead._buffers``. Default: none.

    k, alpha and pullback are per parameter group: they are the group keys
    ``"lookahead_k"``, ``"lookahead_alpha"`` and ``"lookahead_pullback"``, set from these
    arguments for every group that does not set them itself (as ``lr`` is)::

        inner = torch.optim.AdamW([{"params": body}, {"params": head, "lookahead_k": 10}])
        opt = Lookahead(inner, k=5)     # body: k=5, head: k=10; both alpha=0.5

    Each group counts its fast steps in ``"lookahead_step"`` and syncs when the count is a
    multiple of its k; ``opt.k``, ``opt.alpha``, ``opt.pullback`` read (when all groups agree)
    and set them for all groups, ``opt.fast_steps`` reads and sets the counter.

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
    state-dict hooks fire on it. ``state[p]`` shows, for each parameter, the inner optimizer's
    entries and the wrapper's own (``"slow_param"``, and ``"pullback_state"`` with
    ``pullback="pullback"``) as one dict; the inner optimizer keeps its part in
    ``optimizer.state``. ``state_dict()`` has torch.optim's layout (see ``lookahead._format``)::

        {"state": {0: {"momentum_buffer": Tensor, "slow_param": Tensor, ...}, 1: ...},
         "param_groups": [{"lr": 0.1, ..., "lookahead_k": 5, "lookahead_alpha": 0.5,
                           "lookahead_pullback": "none", "lookahead_step": 7, "params": [0, 1]}]}

    and ``load_state_dict`` restores all of it, so a resumed run continues bit for bit, also
    mid-period. State dicts of the earlier layout (``"inner"`` and ``"lookahead"`` keys) load
    too. An inner-only state dict (a plain optimizer's, or the official implementation's)
    loads with a warning: the slow weights are re-captured from the current parameters and the
    period restarts.

    .. note::
        Unlike the prior art, phi_0 = theta_0 is captured eagerly (timm starts phi at
        theta_k, torch-optimizer at theta_1); slow weights, counter and pullback copies survive
        ``state_dict()`` (the official code loses them); pullback copies are made by value
        (the official code aliases the live buffer, which scales it by alpha*(2-alpha)); every
        parameter is synced, also those without a gradient; slow weights are cast lazily to
        each parameter's current device and dtype, so ``model.to(...)`` after
        building the optimizer is fine. Memory: one copy of the parameters (plus the pullback
        copies, made at the first step), and one transient copy inside :meth:`slow_weights`.
        BatchNorm running statistics are buffers, not parameters: this class touches them
        only when given as ``buffers=``; otherwise whether to evaluate phi with them as they
        are or to recompute them (``torch.optim.swa_utils.update_bn``) is the caller's choice.

        AMP: pass the wrapper to ``scaler.unscale_(opt)`` and ``scaler.step(opt)``; a step the
        scaler skips (inf/NaN gradients) does not advance the counter. DDP: gradients are
        all-reduced before ``step()``, so every rank makes the same updates and phi stays
        identical on every rank without communication. FSDP2 (``fully_shard``) and other
        DTensor parameters: phi and the pullback copies are DTensors laid out like their
        parameter, and the sync and :meth:`slow_weights` work on the local shards (no
        communication, no gathering). ``torch.distributed.checkpoint``:
        ``get_optimizer_state_dict`` / ``set_optimizer_state_dict`` carry everything, flattened
        or not; DCP initializes a fresh wrapper (whose ``state`` is empty) with a zero-lr step,
        as it does any optimizer, and never steps one that has stepped. With
        ``pullback="reset"``, a state dict saved right after a sync holds no inner state (there
        is none); the inner entries DCP may fill in for it are dropped on loading.
        Gradient accumulation: k counts ``step()`` calls, i.e. optimizer steps, not
        micro-batches. torch.compile: ``torch.compile(opt.step)`` compiles the inner step; the
        counter and the sync run eagerly (a graph break), so advancing the counter never
        recompiles.

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
        buffers: torch.nn.Module | Iterable[Tensor] | None = None,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"Lookahead wraps a torch.optim.Optimizer, got {type(optimizer).__name__}; build "
                "the inner optimizer first: Lookahead(torch.optim.SGD(model.parameters(), lr=0.1))"
            )
        _state.check_hyperparameters(k, alpha, pullback)
        if foreach is not None and not isinstance(foreach, bool):
            raise TypeError(f"Invalid foreach: {foreach!r}; use True, False or None")
        self.optimizer, self.foreach = optimizer, foreach
        self._own: dict[Tensor, dict[str, Any]] = {}  # per parameter: slow weights, copies
        self._read = False  # whether `state[p]` was read (see lookahead._view)
        self._copies_due = True  # pullback copies of newly created inner buffers are due
        self._constructed, self._swapped = False, False
        defaults = {**optimizer.defaults, K: int(k), ALPHA: float(alpha), MODE: pullback}
        # Optimizer.__init__ sets up the hooks, assigns `param_groups = []` and then calls
        # add_param_group for each group it is given. The groups already live in the inner
        # optimizer, so those calls only set the Lookahead keys and capture the slow weights.
        super().__init__(optimizer.param_groups, defaults)
        self.state = LookaheadState(self)  # replaces Optimizer.__init__'s defaultdict
        self._slow_buffers = None if buffers is None else _buffers.SlowBuffers(buffers, self._params())
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
        """Adds a group to the inner optimizer and captures its slow weights (phi_0 = theta).

        The group's ``"lookahead_k"``, ``"lookahead_alpha"`` and ``"lookahead_pullback"``
        default to the wrapper's; its counter starts at the current one, so that a group with
        the same k syncs with the others.
        """
        if self._constructed:
            _state.set_group_defaults(dict(param_group), self.defaults, 0)  # check first
            step = self.fast_steps
            self.optimizer.add_param_group(param_group)
            param_group = self.optimizer.param_groups[-1]
        else:
            step = 0
        _state.set_group_defaults(param_group, self.defaults, step)
        inner = self.optimizer.state
        with torch.no_grad():
            for p in param_group["params"]:
                self._own[p] = _state.capture(p, inner.get(p, {}), param_group[MODE])
        self._copies_due = True

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Delegates to the inner optimizer's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(  # type: ignore[override]
        self, closure: Callable[[], float] | None = None
    ) -> float | None:
        """One fast step of the inner optimizer (``closure`` goes to it; its loss is returned),
        then the outer update of every group whose period ended."""
        if self._swapped:
            raise RuntimeError("Lookahead.step() was called inside slow_weights(); leave it first")
        loss = self.optimizer.step(closure)
        self._advance()
        return loss

    # Under torch.compile(opt.step) the counter stays a Python int read here, eagerly: were it
    # traced, each new value would be a new guard (a recompile), and the sync a second graph.
    @torch._disable_dynamo
    def _advance(self) -> None:
        """Counts the fast step in every group and syncs those whose period ended."""
        due = []
        for index, group in enumerate(self.param_groups):
            if STEP not in group:
                raise RuntimeError(
                    f"parameter group {index} has no Lookahead settings: it was added to the inner "
                    "optimizer directly; add groups with Lookahead.add_param_group"
                )
            group[STEP] = _state.unwrap_step(group[STEP]) + 1
            if _state.sync_due(group):
                due.append(group)
        if self._copies_due:  # the inner optimizer creates its buffers at its first step
            self._copies_due = False
            inner = self.optimizer.state
            for group in self.param_groups:
                if group[MODE] == "pullback":
                    for p in group["params"]:
                        _state.add_missing_copies(p, inner.get(p, {}), self._own[p])
        if due:
            self._sync(due)

    @contextlib.contextmanager
    def slow_weights(self) -> Iterator[None]:
        """Puts phi into the parameters; restores theta bit for bit on exit, also when the body
        raises. Buffers (BatchNorm running statistics) are swapped too when given as
        ``buffers=``, otherwise not touched. DTensor parameters are swapped shard by shard."""
        if self._swapped:
            raise RuntimeError("slow_weights() blocks do not nest")
        fast, slow = _buffers.joined(self._slow_buffers, *self._pairs())
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
        fast, slow = _buffers.joined(self._slow_buffers, *self._pairs())
        copy_(fast, slow, foreach=self.foreach)

    @torch._disable_dynamo
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Returns the inner optimizer's and the wrapper's state (layout in the class docstring)."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        params, _ = self._pairs()  # casts the slow weights to the parameters' current dtype
        inner = self.optimizer.state_dict()  # packed in the same order as `params`
        state: dict[int, Any] = {}
        for index, p in enumerate(params):
            state[index] = _format.merge_entry(index, inner["state"].get(index, {}), self._own[p])
        state_dict: dict[str, Any] = {"state": state, "param_groups": inner["param_groups"]}
        if self._slow_buffers is not None:  # in no group: a key of their own
            state_dict[_buffers.BUFFERS] = list(self._slow_buffers.pairs()[1])
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    @torch._disable_dynamo
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Loads a state dict made by :meth:`state_dict` (this or the earlier layout), or an
        inner-only one (with a warning).

        Raises:
            ValueError: when the state dict was made for a different number of parameters,
                groups or buffers, or holds invalid k/alpha/pullback values.
        """
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        slow_buffers = _buffers.to_load(self._slow_buffers, state_dict)  # checked before loading
        if "lookahead" in state_dict and "inner" in state_dict:
            self._load_own(_format.from_old_layout(state_dict))
        elif _format.is_lookahead_layout(state_dict):
            self._load_own(state_dict)
        else:
            warnings.warn(
                "Lookahead.load_state_dict got a state dict without Lookahead entries (a plain "
                "optimizer's, or the official implementation's): it was loaded into the inner "
                "optimizer; the slow weights were re-captured from the current parameters and "
                "the sync period restarted",
                stacklevel=2,
            )
            settings = [{key: g[key] for key in (K, ALPHA, MODE)} for g in self.param_groups]
            self.optimizer.load_state_dict(state_dict)
            self._own, self._read, self._copies_due = {}, False, True
            inner = self.optimizer.state
            with torch.no_grad():
                for group, keys in zip(self.param_groups, settings):
                    group.update({**keys, STEP: 0})
                    for p in group["params"]:
                        self._own[p] = _state.capture(p, inner.get(p, {}), group[MODE])
        if self._slow_buffers is not None:
            self._slow_buffers.load(slow_buffers)
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    def __getstate__(self) -> dict[str, Any]:
        return {key: self.__dict__[key] for key in _PICKLED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__({"_slow_buffers": None, **state, "_constructed": True, "_swapped": False})
        self.state = LookaheadState(self)

    def __repr__(self) -> str:
        inner = repr(self.optimizer).replace("\n", "\n    ")
        settings = []
        for name, key in (("k", K), ("alpha", ALPHA), ("pullback", MODE)):
            values = [group.get(key) for group in self.param_groups]
            shown = values[0] if len(set(values)) == 1 else values
            settings.append(f"{name}={shown!r}")
        if self._slow_buffers is not None:
            settings.append(f"buffers={len(self._slow_buffers)}")
        return f"Lookahead({', '.join(settings)},\n    {inner}\n)"

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _pairs(self, params: list[Tensor] | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """The parameters and their slow weights, re-cast where a parameter moved."""
        fast = self._params() if params is None else params
        slow = []
        for i, p in enumerate(fast):
            entry = self._own.get(p)
            if entry is None or SLOW not in entry:
                raise RuntimeError(
                    f"parameter {i} (shape {tuple(p.shape)}) has no slow weights: it was added "
                    "to the inner optimizer directly; add groups with Lookahead.add_param_group"
                )
            phi = entry[SLOW]
            if not _state.follows(phi, p):
                with torch.no_grad():
                    phi = entry[SLOW] = _state.copy_like(p, phi)
            slow.append(phi)
        return fast, slow

    def _sync(self, groups: list[dict[str, Any]] | None = None) -> None:
        """The outer update of ``groups`` (default: all), then their pullback mode; the buffers
        (if any) are synced with group 0."""
        groups = self.param_groups if groups is None else groups
        by_alpha: dict[float, tuple[list[Tensor], list[Tensor]]] = {}
        for group in groups:  # one kernel call per distinct alpha, not per group
            fast, slow = self._pairs(group["params"])
            if group is self.param_groups[0]:  # identity: `==` would compare the tensors
                fast, slow = _buffers.joined(self._slow_buffers, fast, slow)
            slow_all, fast_all = by_alpha.setdefault(group[ALPHA], ([], []))
            slow_all += slow
            fast_all += fast
        for alpha, (slow, fast) in by_alpha.items():
            lookahead_sync_(slow, fast, alpha, foreach=self.foreach)
        inner = self.optimizer.state
        for group in groups:
            if group[MODE] == "reset":
                for p in group["params"]:
                    inner.pop(p, None)
            elif group[MODE] == "pullback":
                _state.pullback_(group["params"], inner, self._own, group[ALPHA], foreach=self.foreach)

    def _load_own(self, state_dict: dict[str, Any]) -> None:
        saved_groups = state_dict["param_groups"]
        for index, group in enumerate(saved_groups):
            _state.check_group(group, index)
        inner_state, own_state = {}, {}
        for index, entry in state_dict["state"].items():
            inner_state[index], own_state[index] = _format.split_entry(entry)
        # pullback="reset" just after a sync: the inner state was deleted; entries that a
        # loader filled in from a fresh optimizer's layout (DCP does) are not part of it.
        for group in saved_groups:
            if group[MODE] == "reset" and _state.sync_due(group):
                for index in group["params"]:
                    inner_state.pop(index, None)
        # Check and copy everything before changing anything: a failure leaves `self` intact.
        new_own = _state.restore_state(self.param_groups, saved_groups, own_state)
        groups = [{**g, STEP: _state.unwrap_step(g[STEP])} for g in saved_groups]
        self.optimizer.load_state_dict(
            {"state": {i: s for i, s in inner_state.items() if s}, "param_groups": groups}
        )
        self._own, self._read, self._copies_due = new_own, False, True
