"""Learning-rate schedules as a per-step multiplier of the base lr (a ``LambdaLR``).

With ``s`` the optimizer step (from 0), ``T`` the total steps, ``w`` the warmup steps:

- ``constant``:      f(s) = 1
- ``multistep``:     f(s) = gamma ** #{m in milestones : s >= m * T}   (paper CIFAR: x0.2 at 30/60/80 %)
- ``cosine``:        f(s) = m + (1 - m) * (1 + cos(pi * s / T)) / 2, with m = ``min_lr_frac``
- ``linear``:        f(s) = 1 - (1 - m) * s / T
- ``triangle``:      f rises linearly from a = ``start_lr_frac`` at s = 0 to 1 at s = p T
                     (p = ``peak_at``), then falls linearly to m at s = T (airbench: a 0.2, p 0.23, m 0.07)
- ``inverse_sqrt``:  f(s) = sqrt(w / max(s + 1, w)); this is the Transformer schedule
                     d^-0.5 min(s^-0.5, s w^-1.5) normalised so the peak equals ``optim.lr``.

Every schedule is multiplied by a linear warmup min(1, (s + 1) / w) when ``w > 0``. Using
``inverse_sqrt`` with ``w = 0`` and ``decay_from > 0`` gives the decay without the ramp, which
is how "Lookahead + Adam without warmup" (paper Fig. 7b) keeps the same decay.

SWA runs (``optim.averaging.kind=swa``) replace the schedule's end by SWA's tail: from step
S = round(start T) the factor anneals by a half cosine over A = round(anneal T) steps from f(S)
to r = ``swa_lr``, then stays at r while the iterates are averaged:

    f_swa(s) = f(s)                      for s < S
    f_swa(s) = (1 - c) f(S) + c r,       c = (1 - cos(pi min(1, (s - S + 1) / A))) / 2   (c = 1 if A = 0)

This is ``torch.optim.swa_utils.SWALR``'s cosine anneal, written into the one ``LambdaLR`` so the
scheduler's state stays a step count (SWALR would be a second scheduler taking over mid-run,
with its own epoch counter to checkpoint and its anneal starting from whatever lr it finds).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from experiments.config import AveragingConfig, ScheduleConfig


def lr_factor(cfg: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    total = max(total_steps, 1)
    w = cfg.warmup_steps
    boundaries = [round(m * total) for m in cfg.milestones]
    m = cfg.min_lr_frac

    def shape(s: int) -> float:
        if cfg.name == "constant":
            return 1.0
        if cfg.name == "multistep":
            return cfg.gamma ** sum(s >= b for b in boundaries)
        if cfg.name == "cosine":
            return m + (1 - m) * (1 + math.cos(math.pi * min(s, total) / total)) / 2
        if cfg.name == "linear":
            return 1 - (1 - m) * min(s, total) / total
        if cfg.name == "triangle":
            t, p, a = min(s, total) / total, cfg.peak_at, cfg.start_lr_frac
            return a + (1 - a) * t / p if t < p else 1 - (1 - m) * (t - p) / (1 - p)
        ref = max(w, cfg.decay_from, 1)  # inverse_sqrt
        return math.sqrt(ref / max(s + 1, ref))

    def factor(s: int) -> float:
        ramp = min(1.0, (s + 1) / w) if w > 0 else 1.0
        return ramp * shape(s)

    return factor


def swa_tail(base: Callable[[int], float], swa: AveragingConfig, total_steps: int) -> Callable[[int], float]:
    """``base`` with SWA's annealed constant tail from ``swa.start`` of the run (module docstring)."""
    first, anneal = round(swa.start * total_steps), round(swa.anneal * total_steps)
    at_start = base(first)

    def factor(s: int) -> float:
        if s < first:
            return base(s)
        c = (1 - math.cos(math.pi * min(1.0, (s - first + 1) / anneal))) / 2 if anneal > 0 else 1.0
        return (1 - c) * at_start + c * swa.swa_lr

    return factor


def build_scheduler(cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, total_steps: int,
                    averaging: AveragingConfig | None = None) -> LambdaLR:
    factor = lr_factor(cfg, total_steps)
    if averaging is not None and averaging.kind == "swa":
        factor = swa_tail(factor, averaging, total_steps)
    return LambdaLR(optimizer, factor)
