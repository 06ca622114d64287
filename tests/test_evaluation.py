"""Evaluation of fast, slow and averaged weights: reuse right after a sync, the run's precision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose
from experiments.evaluation import evaluate
from experiments.optim import build_optimizer
from experiments.tasks import build_task
from fakes import write_cifar


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"), n_train=64, n_test=32)


def _setup(root: Path, optim: str = "lookahead_sgd", *extra: str):
    """A smoke CIFAR task whose evaluate() counts its calls, and its optimizers (k = 3)."""
    la = ["optim.lookahead.k=3"] if optim.startswith("lookahead") else []
    cfg = OmegaConf.to_object(compose(["task=cifar10", f"optim={optim}", "scale=smoke", f"data.root={root}", *la, *extra]))
    torch.manual_seed(0)
    task = build_task(cfg, torch.device("cpu"))
    opt = build_optimizer(cfg.optim, task.model)
    calls = []
    inner = task.evaluate

    def counting(model):
        calls.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return inner(model)

    task.evaluate = counting
    return cfg, task, opt, calls


def _steps(task, opt, n: int) -> None:
    batches = task.train_batches(0, 0)
    for _ in range(n):
        loss, _ = task.loss(task.model, next(batches), None)
        loss.backward()
        opt.optimizer.step()
        opt.optimizer.zero_grad(set_to_none=True)
        if opt.averaged is not None:
            opt.averaged.update_parameters(task.model)


def test_slow_columns_reuse_the_fast_metrics_only_right_after_a_sync(cifar_root):
    cfg, task, opt, calls = _setup(cifar_root)
    _steps(task, opt, 2)  # mid-period: phi != theta, both evaluated
    mid = evaluate(task, opt, cfg.trainer)
    assert len(calls) == 2 and mid["test_loss_slow"] != mid["test_loss_fast"]
    _steps(task, opt, 1)  # the 3rd step syncs: theta = phi
    calls.clear()
    synced = evaluate(task, opt, cfg.trainer)
    assert len(calls) == 1  # the slow evaluation was skipped
    with opt.optimizer.slow_weights(), torch.no_grad():
        task.model.eval()
        direct = task.evaluate(task.model)  # what evaluating phi gives
        task.model.train()
    assert synced["test_loss_slow"] == synced["test_loss_fast"] == direct["test_loss"]
    assert synced["test_acc_slow"] == direct["test_acc"] and synced["test_acc"] == direct["test_acc"]
    assert set(synced) == set(mid)  # the same columns either way


@pytest.mark.parametrize("slow_bn", ["recompute", "both"])
def test_recomputed_batchnorm_variants_are_always_evaluated(cifar_root, slow_bn):
    cfg, task, opt, calls = _setup(cifar_root, "lookahead_sgd", f"trainer.slow_bn={slow_bn}", "trainer.bn_batches=2")
    _steps(task, opt, 3)  # synced
    out = evaluate(task, opt, cfg.trainer)
    assert len(calls) == 2  # fast, and phi with re-estimated statistics (the kept-statistics one is reused)
    if slow_bn == "both":
        assert out["test_loss_slow"] == out["test_loss_fast"] and "test_loss_slow_bn" in out
    else:
        assert out["test_loss_slow"] != out["test_loss_fast"] and out["test_loss"] == out["test_loss_slow"]


def test_without_fast_evaluation_the_slow_weights_are_still_evaluated(cifar_root):
    cfg, task, opt, calls = _setup(cifar_root, "lookahead_sgd", "trainer.eval_fast=false")
    _steps(task, opt, 3)
    out = evaluate(task, opt, cfg.trainer)
    assert len(calls) == 1 and "test_loss_slow" in out and "test_loss_fast" not in out


def test_polyak_average_is_evaluated_once_averaging_started(cifar_root):
    cfg, task, opt, calls = _setup(cifar_root, "polyak_sgd")
    evaluate(task, opt, cfg.trainer)
    assert len(calls) == 1  # nothing averaged yet: the live iterate stands in for the average
    _steps(task, opt, 2)
    calls.clear()
    out = evaluate(task, opt, cfg.trainer)
    assert len(calls) == 2 and out["test_loss"] == out["test_loss_avg"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_evaluation_runs_in_the_runs_precision(cifar_root, precision):
    cfg, task, opt, calls = _setup(cifar_root, "lookahead_sgd", f"trainer.precision={precision}")
    _steps(task, opt, 1)
    evaluate(task, opt, cfg.trainer)
    evaluate(task, opt, cfg.trainer, per_update=True)
    expected = (True, torch.bfloat16) if precision == "bf16" else (False,)
    assert all(c[: len(expected)] == expected for c in calls) and len(calls) == 4
