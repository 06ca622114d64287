"""The one place optimizers are built from an :class:`OptimConfig`.

The inner optimizer comes from an explicit table of torch.optim classes (so ``optim=adam`` is
exactly ``torch.optim.Adam``) and the two Schedule-Free optimizers of the ``schedulefree``
package; any other name is handed to timm's factory, so the timm optimizers that work on CPU
(``experiments.config.TIMM_INNER``, checked when the config is validated) can serve as the inner
optimizer. Lookahead and the averages (Polyak, EMA, SWA) are then added on top from their own
config blocks, never from name prefixes; what the run reports is an
``experiments.reported.ReportedWeights``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from experiments.config import SCHEDULE_FREE_INNER, OptimConfig, check_inner
from experiments.reported import Averaged, ReportedWeights, ScheduleFreeX, SlowWeights, averaged_model
from lookahead import Lookahead

Params = Iterable[torch.nn.Parameter]


def _sgd(c: OptimConfig, p: Params) -> torch.optim.Optimizer:
    return torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay, **c.extra)


def _adam_like(cls: type) -> Callable[[OptimConfig, Params], torch.optim.Optimizer]:
    def build(c: OptimConfig, p: Params) -> torch.optim.Optimizer:
        return cls(p, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay, **c.extra)

    return build


def _adafactor(c: OptimConfig, p: Params) -> torch.optim.Optimizer:
    return torch.optim.Adafactor(p, lr=c.lr, weight_decay=c.weight_decay, **c.extra)


def _sgd_schedulefree(c: OptimConfig, p: Params) -> torch.optim.Optimizer:
    # momentum is Schedule-Free's interpolation beta (y = (1 - beta) z + beta x), 0.9 in the
    # paper. Warmup comes from the loop's schedule (schedule.warmup_steps): the lr it puts into
    # the groups is what the package's own warmup would compute (lr * (k + 1) / w).
    import schedulefree

    return schedulefree.SGDScheduleFree(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, **c.extra)


def _adamw_schedulefree(c: OptimConfig, p: Params) -> torch.optim.Optimizer:
    import schedulefree

    return schedulefree.AdamWScheduleFree(p, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay,
                                          **c.extra)


INNER: Dict[str, Callable[[OptimConfig, Params], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam_like(torch.optim.Adam),
    "adamw": _adam_like(torch.optim.AdamW),
    "radam": _adam_like(torch.optim.RAdam),
    "adafactor": _adafactor,
    "sgd_schedulefree": _sgd_schedulefree,
    "adamw_schedulefree": _adamw_schedulefree,
}


def _timm(c: OptimConfig, p: Params) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    check_inner(c.inner)  # OptimConfig.__post_init__ has checked it already; this is for hand-made configs
    kwargs = dict(c.extra)
    if c.momentum:
        kwargs["momentum"] = c.momentum
    return create_optimizer_v2(list(p), opt=c.inner, lr=c.lr, weight_decay=c.weight_decay, **kwargs)


@dataclass
class Optimizers:
    """The optimizer the loop steps, and what the run reports when it is not the live iterate."""

    optimizer: torch.optim.Optimizer
    reported: Optional[ReportedWeights] = None

    @property
    def lookahead(self) -> bool:
        return isinstance(self.optimizer, Lookahead)

    @property
    def averaged(self) -> Optional[AveragedModel]:
        return self.reported.averaged if isinstance(self.reported, Averaged) else None


NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def param_groups(cfg: OptimConfig, model: nn.Module) -> Params:
    """``model.parameters()``, or two groups when ``optim.norm_lr_scale`` != 1.

    The normalization layers' parameters get ``lr * s`` and ``weight_decay / s``: torch.optim
    couples the decay to the lr (p -= lr * (g + wd p)), so their per-step decay lr * wd is the
    same as the other parameters' while their gradient step is s times larger (airbench).
    """
    s = cfg.norm_lr_scale
    if s == 1:
        return model.parameters()
    norm = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) not in norm]},
            {"params": [p for p in params if id(p) in norm], "lr": cfg.lr * s, "weight_decay": cfg.weight_decay / s}]


def build_optimizer(cfg: OptimConfig, model: nn.Module) -> Optimizers:
    inner = INNER.get(cfg.inner, _timm)(cfg, param_groups(cfg, model))
    if cfg.lookahead is not None:
        la = cfg.lookahead
        opt = Lookahead(inner, k=la.k, alpha=la.alpha, pullback=la.pullback, foreach=la.foreach,
                        buffers=model if la.buffers else None)
        return Optimizers(opt, SlowWeights(opt))
    if cfg.averaging is not None:
        a = cfg.averaging
        return Optimizers(inner, Averaged(averaged_model(model, a.kind, a.decay), f"_{a.suffix}", a.start, a.every))
    if cfg.inner in SCHEDULE_FREE_INNER:
        return Optimizers(inner, ScheduleFreeX(inner))
    return Optimizers(inner)
