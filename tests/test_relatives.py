"""Lookahead's relatives as arms of the loop: EMA, SWA, Schedule-Free, timm inner optimizers,
airbench's Lookahead variant. Each family trains through the real loop and resumes bit-identically;
the averaging math is pinned by hand."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import assert_same_run, compose, interrupted_then_resumed, smoke_cifar, train
from experiments.config import AveragingConfig, ScheduleConfig
from experiments.evaluation import evaluate
from experiments.optim import build_optimizer
from experiments.schedules import build_scheduler
from experiments.tasks import build_task
from fakes import write_cifar

# Each family with what it reports (its column suffix) and the overrides it needs at 12 steps.
ARMS = {
    "ema_sgd": ("_ema", ["optim.averaging.decay=0.9"]),
    "swa_sgd": ("_swa", ["optim.averaging.start=0.25", "optim.averaging.anneal=0.25", "optim.averaging.every=2"]),
    "schedulefree_sgd": ("_x", ["schedule.warmup_steps=3", "optim.lr=0.5"]),  # schedule: constant (optim_schedule)
    "schedulefree_adamw": ("_x", ["optim.lr=1e-3"]),
    "lookahead_lion": ("_slow", ["optim.lookahead.k=3"]),
    "lookahead_sgd": ("_slow", ["+la=airbench"]),  # decaying alpha, BatchNorm statistics interpolated
}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"), n_train=64, n_test=32)


_cifar = smoke_cifar


@pytest.mark.parametrize("optim", list(ARMS), ids=[f"{o}{'+la=airbench' if '+la=airbench' in a[1] else ''}"
                                                   for o, a in ARMS.items()])
def test_every_family_trains_reports_its_weights_and_resumes_bit_identically(optim, cifar_root, tmp_path,
                                                                             monkeypatch):
    suffix, extra = ARMS[optim]
    overrides = _cifar(cifar_root, optim, *extra)
    whole = train(overrides, tmp_path / "whole")
    assert whole["status"] == "completed" and whole["steps"] == 12
    final = whole["final"]
    assert final["test_acc"] == final[f"test_acc{suffix}"] and "test_acc_fast" in final
    if suffix != "_slow":  # an average (or x) differs from the live iterate after 12 steps
        assert final[f"test_loss{suffix}"] != final["test_loss_fast"]
    resumed = interrupted_then_resumed(overrides, tmp_path / "cut", monkeypatch, call=7)  # mid-period, mid-epoch
    assert resumed["status"] == "completed" and resumed["resumed"]
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    assert whole["final"] == resumed["final"]


def _setup(root: Path, optim: str, *extra: str):
    cfg = OmegaConf.to_object(compose(["task=cifar10", f"optim={optim}", "scale=smoke", f"data.root={root}", *extra]))
    torch.manual_seed(0)
    task = build_task(cfg, torch.device("cpu"))
    return cfg, task, build_optimizer(cfg.optim, task.model)


def _step(task, opt, batches, n: int = 1) -> None:
    for _ in range(n):
        loss, _ = task.loss(task.model, next(batches), None)
        loss.backward()
        opt.optimizer.step()
        opt.optimizer.zero_grad(set_to_none=True)


def test_ema_is_the_exponential_average_of_the_iterates_buffers_included(cifar_root):
    cfg, task, opt = _setup(cifar_root, "ema_sgd", "optim.averaging.decay=0.75")
    batches = task.train_batches(0, 0)
    expected = None
    for step in range(1, 4):
        _step(task, opt, batches)
        opt.reported.after_step(task.model, step, 12)
        live = {k: v.detach().clone() for k, v in task.model.state_dict().items() if v.is_floating_point()}
        # The first update copies the iterate; then ema <- 0.75 ema + 0.25 theta, statistics too.
        expected = live if expected is None else {k: 0.75 * expected[k] + 0.25 * live[k] for k in live}
        got = opt.averaged.module.state_dict()
        for k, v in expected.items():
            torch.testing.assert_close(got[k], v, rtol=1e-6, atol=1e-7)
    assert int(opt.averaged.n_averaged) == 3


def test_swa_replaces_the_end_of_the_schedule_by_an_annealed_constant_tail():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    swa = AveragingConfig(kind="swa", start=0.5, anneal=0.2, swa_lr=0.1)
    sched = build_scheduler(ScheduleConfig(name="linear"), opt, 10, swa)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # Steps 0-4: linear decay 1 - s/10. From S = 5 a half cosine over A = 2 steps from f(5) = 0.5
    # to 0.1: c = (1 - cos(pi/2))/2 = 0.5 at step 5, c = 1 from step 6 on.
    want = [1 - s / 10 for s in range(5)] + [0.5 * 0.5 + 0.5 * 0.1] + [0.1] * 4
    assert lrs == pytest.approx([2.0 * w for w in want])


def test_swa_averages_from_its_start_every_few_steps(cifar_root):
    cfg, task, opt = _setup(cifar_root, "swa_sgd", "optim.averaging.start=0.5", "optim.averaging.every=2")
    batches = task.train_batches(0, 0)
    for step in range(1, 9):
        _step(task, opt, batches)
        opt.reported.after_step(task.model, step, 8)
    assert int(opt.averaged.n_averaged) == 2  # steps 6 and 8 (S = 4; (s - 4) % 2 == 0 for s > 4)
    assert opt.reported.suffix == "_swa"


def test_schedule_free_reports_x_and_evaluating_it_leaves_training_untouched(cifar_root):
    cfg, task, opt = _setup(cifar_root, "schedulefree_sgd", "optim.lr=0.5")
    opt.reported.train_mode()
    batches = task.train_batches(0, 0)
    _step(task, opt, batches, 3)
    y = [p.detach().clone() for p in task.model.parameters()]
    # x as the package computes it, on a copy: x = y + (1 - 1/beta) (z - y).
    twin = copy.deepcopy(opt.optimizer)
    twin.eval()
    x = [p.detach().clone() for g in twin.param_groups for p in g["params"]]
    seen = []
    inner = task.evaluate
    task.evaluate = lambda model: (seen.append([p.detach().clone() for p in model.parameters()]), inner(model))[1]
    out = evaluate(task, opt, cfg.trainer)
    assert len(seen) == 2 and all(torch.equal(a, b) for a, b in zip(seen[1], x))  # _fast on y, then x
    assert all(torch.equal(a, b) for a, b in zip(task.model.parameters(), y))  # y back, bit for bit
    assert all(g["train_mode"] for g in opt.optimizer.param_groups)
    assert out["test_loss"] == out["test_loss_x"] != out["test_loss_fast"]


def test_airbench_lookahead_decays_alpha_and_interpolates_batchnorm_statistics(cifar_root, tmp_path):
    m = train(_cifar(cifar_root, "lookahead_sgd", "+la=airbench", "trainer.max_steps=10"), tmp_path)
    assert m["status"] == "completed"
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    group = ck["optimizer"]["param_groups"][0]
    # The alpha set for the next fast step t = 11 of T = 10 (past the end: alpha_end).
    assert group["lookahead_alpha"] == pytest.approx(1 - 0.95**5)
    assert "lookahead_buffers" in ck["optimizer"]
    # Step 10 synced (k = 5): the running statistics were reset to their slow copies.
    slow = ck["optimizer"]["lookahead_buffers"]
    live = [v for k, v in ck["model"].items() if k.endswith(("running_mean", "running_var"))]
    assert len(live) == len(slow) and all(torch.equal(a, b) for a, b in zip(live, slow))
    assert math.isfinite(m["final"]["test_loss"])


@pytest.mark.parametrize("bad, what", [
    (["optim=schedulefree_sgd", "schedule.name=cosine"], "schedule.name=constant"),
    (["optim=lookahead_sgd", "optim.inner=sgd_schedulefree", "schedule.name=constant"], "reports its own average"),
    (["optim=ema_sgd", "optim.averaging.decay=1.0"], "optim.averaging.decay"),
    (["optim=swa_sgd", "optim.averaging.kind=swag"], "optim.averaging.kind"),
    (["optim=lookahead_sgd", "optim.lookahead.alpha_end=1.5"], "optim.lookahead.alpha_end"),
])
def test_bad_relative_configs_fail_before_training_with_the_fix(bad, what, cifar_root):
    with pytest.raises(Exception, match=what.replace(".", r"\.").replace("+", r"\+")):
        OmegaConf.to_object(compose(["task=cifar10", "scale=smoke", f"data.root={cifar_root}", *bad]))


@pytest.mark.parametrize("optim", ["ema_sgd", "schedulefree_sgd"])
def test_recomputed_batchnorm_statistics_apply_to_every_kind_and_are_put_back(optim, cifar_root):
    cfg, task, opt = _setup(cifar_root, optim, "trainer.slow_bn=both", "trainer.bn_batches=2")
    opt.reported.train_mode()
    batches = task.train_batches(0, 0)
    for step in range(1, 4):
        _step(task, opt, batches)
        opt.reported.after_step(task.model, step, 8)
    with opt.reported.weights(task.model) as reported:
        before = {k: v.clone() for k, v in reported.state_dict().items()}
    out = evaluate(task, opt, cfg.trainer)
    suffix = opt.reported.suffix
    assert f"test_loss{suffix}_bn" in out and out[f"test_loss{suffix}_bn"] != out[f"test_loss{suffix}"]
    with opt.reported.weights(task.model) as reported:  # the statistics (and weights) as they were
        assert all(torch.equal(v, before[k]) for k, v in reported.state_dict().items())
