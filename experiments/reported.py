"""The weights a run reports, when they are not the live iterate: one interface for all kinds.

An optimizer family that averages iterates trains one set of weights and reports another:

==================  =========  ==============================================================
kind                suffix     reported weights
==================  =========  ==============================================================
Lookahead           ``_slow``  the slow weights phi (Algorithm 1 returns phi)
Polyak (equal)      ``_avg``   mean of the iterates since ``optim.averaging.start``
EMA                 ``_ema``   ema <- decay * ema + (1 - decay) * theta after every step
SWA                 ``_swa``   equal mean of the iterates of the constant-lr tail
Schedule-Free       ``_x``     the averaged sequence x of Defazio et al. (2024); the model's
                               parameters hold y during training
==================  =========  ==============================================================

Each kind is a :class:`ReportedWeights`: ``weights(model)`` is a context in which a module holds
the reported weights (the model itself, swapped in place and restored exactly; or a separate
averaged copy), ``ready()`` says whether there is anything to report yet (an average that has not
started reports the live iterate), ``after_step`` folds an iterate into an average, and
``state_dict``/``load_state_dict`` carry what a checkpoint needs beyond the optimizer.
``experiments/evaluation.py`` evaluates every kind through this interface alone, so BatchNorm
statistics (``trainer.slow_bn``), the reuse of equal weights and the run's precision are handled
once, the same way for all of them.

The averages are ``torch.optim.swa_utils.AveragedModel`` (EMA via ``get_ema_multi_avg_fn``) with
``use_buffers=True``: BatchNorm statistics are averaged with the weights, so the averaged copy can
be evaluated as it is (``trainer.slow_bn=recompute`` re-estimates them instead, ``update_bn``).
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, ContextManager, Iterator, List, Optional

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class ReportedWeights(abc.ABC):
    """What a run reports instead of the live weights."""

    suffix = ""

    def ready(self) -> bool:
        return True

    @abc.abstractmethod
    def weights(self, model: nn.Module) -> ContextManager[nn.Module]:
        """A context in which the returned module holds the reported weights."""

    def train_mode(self) -> None:
        """Put the optimizer into its training form (Schedule-Free: parameters hold y)."""

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Called after optimizer step ``step`` (1-based) of ``total_steps``."""

    def state_dict(self) -> Optional[dict]:
        return None

    def load_state_dict(self, state: Optional[dict]) -> None:
        pass


class SlowWeights(ReportedWeights):
    """Lookahead's slow weights phi, swapped into the model by ``Lookahead.slow_weights()``."""

    suffix = "_slow"

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer

    @contextlib.contextmanager
    def weights(self, model: nn.Module) -> Iterator[nn.Module]:
        with self.optimizer.slow_weights():
            yield model


class Averaged(ReportedWeights):
    """An ``AveragedModel`` of the iterates, updated every ``every`` steps after ``start``.

    Step s (1-based) enters the average when s > S and (s - S) % every == 0, with
    S = round(start * total_steps): Polyak from 0.8 of CIFAR training, EMA from the first step.
    """

    def __init__(self, averaged: AveragedModel, suffix: str, start: float, every: int) -> None:
        self.averaged, self.suffix, self.start, self.every = averaged, suffix, start, every

    def ready(self) -> bool:
        return int(self.averaged.n_averaged.item()) > 0

    @contextlib.contextmanager
    def weights(self, model: nn.Module) -> Iterator[nn.Module]:
        yield self.averaged.module

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        first = round(self.start * total_steps)
        if step > first and (step - first) % self.every == 0:
            self.averaged.update_parameters(model)

    def state_dict(self) -> Optional[dict]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state is not None:
            self.averaged.load_state_dict(state)


def averaged_model(model: nn.Module, kind: str, decay: float) -> AveragedModel:
    """Equal-weight (polyak, swa) or exponential (ema) average of ``model``, buffers included."""
    fn = get_ema_multi_avg_fn(decay) if kind == "ema" else None
    return AveragedModel(model, multi_avg_fn=fn, use_buffers=True)


class ScheduleFreeX(ReportedWeights):
    """Schedule-Free's x sequence, which the optimizer's ``eval()`` puts into the parameters.

    During training the parameters hold y = (1 - beta) z + beta x (beta: the momentum). The
    package's ``eval()`` sets p <- x by a lerp toward z and ``train()`` lerps back; the round trip
    is exact only up to rounding, so evaluating would nudge the training trajectory. Here y is
    copied aside, ``eval()`` gives x, and y is copied back afterwards (and the groups marked as
    in train mode): evaluation never changes training, as for every other kind.
    """

    suffix = "_x"

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def _params(self) -> List[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def train_mode(self) -> None:
        self.optimizer.train()

    @contextlib.contextmanager
    def weights(self, model: nn.Module) -> Iterator[nn.Module]:
        params = self._params()
        y = [p.detach().clone() for p in params]
        self.optimizer.eval()
        try:
            yield model
        finally:
            with torch.no_grad():
                for p, saved in zip(params, y):
                    p.copy_(saved)
            for group in self.optimizer.param_groups:
                group["train_mode"] = True
