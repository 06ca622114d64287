"""The one place optimizers are built from an :class:`OptimConfig`.

The inner optimizer comes from an explicit table of torch.optim classes (so ``optim=adam`` is
exactly ``torch.optim.Adam``); any other name is handed to timm's factory, so the timm
optimizers that work on CPU (``experiments.config.TIMM_INNER``, checked when the config is
validated) can serve as the inner optimizer. Lookahead and Polyak averaging are then added on
top from their own config blocks, never from name prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from experiments.config import OptimConfig, check_inner
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


INNER: Dict[str, Callable[[OptimConfig, Params], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam_like(torch.optim.Adam),
    "adamw": _adam_like(torch.optim.AdamW),
    "radam": _adam_like(torch.optim.RAdam),
    "adafactor": _adafactor,
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
    """The optimizer the loop steps, plus the averaged model for Polyak runs."""

    optimizer: torch.optim.Optimizer
    averaged: Optional[AveragedModel] = None

    @property
    def lookahead(self) -> bool:
        return isinstance(self.optimizer, Lookahead)


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
        return Optimizers(Lookahead(inner, k=la.k, alpha=la.alpha, pullback=la.pullback, foreach=la.foreach))
    if cfg.averaging is not None:
        # Equal-weight (Polyak) average of parameters; buffers (BatchNorm statistics) are
        # averaged too so the averaged model can be evaluated as it is.
        return Optimizers(inner, AveragedModel(model, use_buffers=True))
    return Optimizers(inner)
