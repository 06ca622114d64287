"""Evaluation of the weights a run reports: fast, slow (Lookahead) or averaged (Polyak).

Column suffixes: ``_fast`` is the live iterate theta, ``_slow`` the Lookahead slow weights phi,
``_avg`` the Polyak average; the unsuffixed metric is what the run reports (phi for Lookahead,
since Algorithm 1 returns phi; the average for Polyak; theta otherwise).

BatchNorm statistics are buffers, not parameters, so the optimizer does not move them: during
training they track the fast weights. ``trainer.slow_bn`` decides what the slow weights are
evaluated with:

- ``keep`` (default): the running statistics as they are (accumulated by the fast weights);
  cheap, and what every public implementation does implicitly.
- ``recompute``: re-estimate them for phi on ``trainer.bn_batches`` training batches
  (``torch.optim.swa_utils.update_bn``: cumulative average, train mode, no gradient) and put
  the original buffers back afterwards.
- ``both``: report ``keep`` as ``_slow`` and log the recomputed variant as ``_slow_bn``, so a
  run measures the difference.

The per-update evaluations of a ``trainer.per_update`` window (Fig. 10) follow the same setting:
between syncs phi does not move, so with ``keep`` its per-update score moves only with the
statistics the fast weights' steps update, and ``both`` shows phi's own score beside it. Each
re-estimation costs ``trainer.bn_batches`` forward passes, once per update in the window.

Evaluation runs under a forked RNG so it never changes the training trajectory, and in the
run's precision (the autocast dtype training uses, ``experiments.runtime.autocast_dtype``), so
a bf16 run is scored by the network it trains and its evaluation gets bf16's speed too.

Right after a sync (every k-th step) theta = phi bit for bit. With ``keep`` statistics the slow
evaluation would then repeat the fast one on the same weights and buffers, so the fast metrics
are reused as the ``_slow`` columns (identical values, half the evaluation cost at those
points). A recomputed-statistics variant (``_slow`` under ``recompute``, ``_slow_bn`` under
``both``) is always evaluated: its buffers differ from the running ones. Polyak's average is a
separate model with its own averaged buffers and is always evaluated once averaging started.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from typing import Dict, Iterator, List

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from experiments.config import TrainerConfig
from experiments.optim import Optimizers
from experiments.runtime import autocast_dtype
from experiments.tasks.base import Task

Metrics = Dict[str, float]


def _suffix(metrics: Metrics, suffix: str) -> Metrics:
    return {f"{k}{suffix}": v for k, v in metrics.items()}


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@contextlib.contextmanager
def recomputed_bn(model: nn.Module, task: Task, n_batches: int) -> Iterator[None]:
    """Re-estimate BatchNorm statistics for the current weights; restore the old ones on exit."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [copy.deepcopy(bn.state_dict()) for bn in bns]
    try:
        assert task.bn_batches is not None
        update_bn(itertools.islice(task.bn_batches(n_batches), n_batches), model)
        yield
    finally:
        for bn, state in zip(bns, saved):
            bn.load_state_dict(state)


def _run(task: Task, model: nn.Module, per_update: bool) -> Metrics:
    fn = task.per_update_evaluate if per_update and task.per_update_evaluate else task.evaluate
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return fn(model)
    finally:
        model.train(was_training)


def _same(params: List[torch.Tensor], saved: List[torch.Tensor]) -> bool:
    return all(torch.equal(p, q) for p, q in zip(params, saved))


def evaluate(task: Task, opt: Optimizers, cfg: TrainerConfig, per_update: bool = False) -> Metrics:
    """Evaluate what the run reports, plus the fast/slow/averaged variants as columns."""
    model = task.model
    device = next(model.parameters()).device
    amp = autocast_dtype(cfg, device)
    with torch.random.fork_rng(devices=[]), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        if opt.lookahead:
            out: Metrics = {}
            fast = None
            if cfg.eval_fast or per_update:
                fast = _run(task, model, per_update)
                out.update(_suffix(fast, "_fast"))
            recompute = cfg.slow_bn in ("recompute", "both") and task.bn_batches is not None
            keep = cfg.slow_bn != "recompute" or not recompute  # the running-statistics variant is wanted
            params = [p for group in opt.optimizer.param_groups for p in group["params"]]
            # theta, to tell inside slow_weights() whether phi equals it (right after a sync).
            theta = [p.detach().clone() for p in params] if keep and fast is not None else None
            with opt.optimizer.slow_weights():
                if keep:
                    slow = fast if theta is not None and _same(params, theta) else _run(task, model, per_update)
                    out.update(_suffix(slow, "_slow"))
                if recompute:
                    with recomputed_bn(model, task, cfg.bn_batches):
                        slow_bn = _run(task, model, per_update)
                    out.update(_suffix(slow_bn, "_slow" if cfg.slow_bn == "recompute" else "_slow_bn"))
                    if cfg.slow_bn == "recompute":
                        slow = slow_bn
            return {**slow, **out}
        if opt.averaged is not None:
            live = _run(task, model, per_update)
            # Before averaging starts the average holds nothing yet: report the live iterate.
            started = int(opt.averaged.n_averaged.item()) > 0
            avg = _run(task, opt.averaged.module, per_update) if started else live
            return {**avg, **_suffix(live, "_fast"), **_suffix(avg, "_avg")}
        return _run(task, model, per_update)
