"""Evaluation of the weights a run reports: the live iterate, or a kind of reported weights.

Column suffixes: ``_fast`` is the live iterate theta; the reported kind's own suffix
(``experiments/reported.py``: ``_slow`` Lookahead's phi, ``_avg`` Polyak, ``_ema``, ``_swa``,
``_x`` Schedule-Free) its weights; the unsuffixed metric is what the run reports (phi for
Lookahead, since Algorithm 1 returns phi; the average for the averaging kinds; x for
Schedule-Free; theta otherwise). Every kind goes through the same code below.

BatchNorm statistics are buffers, not parameters, so the optimizer does not move them: during
training they track the fast weights (averaged copies average them along with the weights).
``trainer.slow_bn`` decides what the reported weights are evaluated with (named for Lookahead's
slow weights, where it started; it applies to every kind):

- ``keep`` (default): the running statistics as they are (accumulated by the fast weights);
  cheap, and what every public implementation does implicitly.
- ``recompute``: re-estimate them for phi on ``trainer.bn_batches`` training batches
  (``torch.optim.swa_utils.update_bn``: cumulative average, train mode, no gradient) and put
  the original buffers back afterwards.
- ``both``: report ``keep`` as ``_slow`` and log the recomputed variant as ``_slow_bn`` (for
  the other kinds ``_ema`` and ``_ema_bn``, ...), so a run measures the difference.

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
points); the test is generic (every parameter and buffer equal), so it holds for any kind. A
recomputed-statistics variant (``_slow`` under ``recompute``, ``_slow_bn`` under ``both``) is
always evaluated: its buffers differ from the running ones. An average that has not started
yet (Polyak before ``optim.averaging.start``) reports the live iterate in its columns.
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


def _tensors(model: nn.Module) -> List[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


def _same(module: nn.Module, live: List[torch.Tensor]) -> bool:
    mine = _tensors(module)
    return len(mine) == len(live) and all(torch.equal(a, b) for a, b in zip(mine, live))


def evaluate(task: Task, opt: Optimizers, cfg: TrainerConfig, per_update: bool = False) -> Metrics:
    """Evaluate what the run reports, plus the live iterate (``_fast``) and its variants as columns."""
    model = task.model
    device = next(model.parameters()).device
    amp = autocast_dtype(cfg, device)
    view = opt.reported
    with torch.random.fork_rng(devices=[]), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        if view is None:
            return _run(task, model, per_update)
        out: Metrics = {}
        fast = None
        if cfg.eval_fast or per_update or not view.ready():
            fast = _run(task, model, per_update)
            out.update(_suffix(fast, "_fast"))
        if not view.ready():  # an average that has not started: the live iterate stands in for it
            return {**fast, **out, **_suffix(fast, view.suffix)}
        recompute = cfg.slow_bn in ("recompute", "both") and task.bn_batches is not None
        keep = cfg.slow_bn != "recompute" or not recompute  # the statistics-as-they-are variant is wanted
        # The live weights and statistics, to tell whether the reported ones equal them (Lookahead
        # right after a sync), in which case the fast metrics are reused.
        live = [t.detach().clone() for t in _tensors(model)] if keep and fast is not None else None
        with view.weights(model) as reported_model:
            if keep:
                same = live is not None and _same(reported_model, live)
                reported = fast if same else _run(task, reported_model, per_update)
                out.update(_suffix(reported, view.suffix))
            if recompute:
                with recomputed_bn(reported_model, task, cfg.bn_batches):
                    with_bn = _run(task, reported_model, per_update)
                out.update(_suffix(with_bn, view.suffix if cfg.slow_bn == "recompute" else f"{view.suffix}_bn"))
                if cfg.slow_bn == "recompute":
                    reported = with_bn
        return {**reported, **out}
