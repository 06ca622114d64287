"""The airbench recipe's parts: reflect-translate augmentation, the triangle schedule, the
BatchNorm-shift lr group, label smoothing, and the composed protocol."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import compose
from experiments.config import OptimConfig, ScheduleConfig
from experiments.data.cifar import augment
from experiments.models.resnet_cifar import build as build_model
from experiments.optim import build_optimizer
from experiments.schedules import lr_factor
from fakes import write_cifar


def test_reflect_augment_is_a_crop_of_the_mirror_padded_image():
    x = torch.arange(3 * 3 * 32 * 32, dtype=torch.float32).reshape(3, 3, 32, 32)
    a = augment(x, torch.Generator().manual_seed(1), pad=2, pad_mode="reflect")
    assert torch.equal(a, augment(x, torch.Generator().manual_seed(1), pad=2, pad_mode="reflect"))
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")  # torch's own reflection is the reference
    for i in range(3):
        crops = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(a[i], c) or torch.equal(a[i], c.flip(-1)) for c in crops)
    # zeros mode never mirrors: a shifted crop of it has zero rows or columns where reflect has pixels
    z = augment(x + 1, torch.Generator().manual_seed(1), pad=2)
    r = augment(x + 1, torch.Generator().manual_seed(1), pad=2, pad_mode="reflect")
    assert (z == 0).any() and not (r == 0).any()


def test_triangle_schedule_is_piecewise_linear_through_its_three_points():
    f = lr_factor(ScheduleConfig(name="triangle", start_lr_frac=0.2, peak_at=0.25, min_lr_frac=0.1), 100)
    assert f(0) == pytest.approx(0.2)
    assert f(25) == pytest.approx(1.0)
    assert f(100) == pytest.approx(0.1)
    assert f(10) == pytest.approx(0.2 + 0.8 * 10 / 25)  # on the rising line
    assert f(70) == pytest.approx(1 - 0.9 * 45 / 75)  # on the falling line
    assert max(f(s) for s in range(101)) == pytest.approx(1.0)


def test_norm_lr_scale_puts_norm_parameters_in_a_group_with_the_same_per_step_decay():
    model = build_model("airbench", 10)
    cfg = OptimConfig(name="sgd", inner="sgd", lr=1.5, momentum=0.85, nesterov=True, weight_decay=1e-3,
                      norm_lr_scale=64.0)
    groups = build_optimizer(cfg, model).optimizer.param_groups
    assert len(groups) == 2
    norm_ids = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert {id(p) for p in groups[1]["params"]} == norm_ids
    assert not norm_ids & {id(p) for p in groups[0]["params"]}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    assert groups[1]["lr"] == pytest.approx(96.0)
    assert groups[0]["lr"] * groups[0]["weight_decay"] == pytest.approx(groups[1]["lr"] * groups[1]["weight_decay"])
    # scale 1 leaves torch.optim's single group, so older checkpoints keep their layout
    plain = OptimConfig(name="sgd", inner="sgd", lr=0.1, momentum=0.9)
    assert len(build_optimizer(plain, model).optimizer.param_groups) == 1


def test_airbench_recipe_matches_airbench94s_update_in_mean_loss_form():
    """airbench94 passes torch SGD lr = 11.5 / K and weight_decay = wd / lr on a summed loss."""
    cfg = compose(["task=cifar10", "optim=sgd", "recipe=airbench", "scale=cpu"])
    K = 1024 * (1 + 1 / (1 - 0.85))
    lr_sum, wd_step = 11.5 / K, 0.0153 * 1024 / K
    assert cfg.optim.lr * 1 == pytest.approx(lr_sum * 1024, rel=1e-4)  # mean loss over 1024 = sum / 1024
    assert cfg.optim.lr * cfg.optim.weight_decay == pytest.approx(wd_step, rel=1e-4)
    assert (cfg.optim.momentum, cfg.optim.nesterov, cfg.optim.norm_lr_scale) == (0.85, True, 64.0)
    assert (cfg.task.model, cfg.task.pad, cfg.task.pad_mode, cfg.task.label_smoothing) == ("airbench", 2, "reflect", 0.2)
    assert (cfg.data.batch_size, cfg.trainer.precision, cfg.schedule.name) == (1024, "bf16", "triangle")
    la = compose(["task=cifar10", "optim=lookahead_sgd", "recipe=airbench", "scale=smoke"])
    assert la.optim.lr == cfg.optim.lr and la.optim.lookahead.k == 5  # same inner values under Lookahead
    assert la.data.batch_size == 8 and la.trainer.max_steps == 24  # smoke keeps its sizes
    plain = compose(["task=cifar10", "optim=sgd", "scale=cpu"])
    assert plain.task.model == "resnet20" and OmegaConf.select(plain, "optim.norm_lr_scale") == 1.0


def test_label_smoothing_trains_on_the_smoothed_loss_and_evaluates_the_plain_one(tmp_path):
    cifar_root = write_cifar(tmp_path, n_train=64, n_test=32)
    from experiments.tasks import build_task

    def task(smoothing):
        cfg = OmegaConf.to_object(compose(["task=cifar10", "optim=sgd", "scale=smoke", f"data.root={cifar_root}",
                                           "task.augment=false", f"task.label_smoothing={smoothing}"]))
        torch.manual_seed(0)
        return build_task(cfg, torch.device("cpu"))

    t, plain = task(0.3), task(0.0)
    t.model.eval(), plain.model.eval()
    assert t.evaluate(t.model) == plain.evaluate(plain.model)  # same init: evaluation ignores the smoothing
    t.model.train()
    x, y = next(t.train_batches(0, 0))
    loss, _ = t.loss(t.model, (x, y), None)
    logits = t.model(x)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.3).item(), rel=1e-5)
    assert not math.isclose(loss.item(), F.cross_entropy(logits, y).item(), rel_tol=1e-4)
