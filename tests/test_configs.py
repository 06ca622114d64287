"""Every config file composes and validates; bad values and typos fail before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONF_DIR, compose
from experiments.config import Config

OPTIMS = sorted(p.stem for p in (Path(CONF_DIR) / "optim").glob("*.yaml"))
TASKS = sorted(p.stem for p in (Path(CONF_DIR) / "task").glob("*.yaml"))
SCALES = sorted(p.stem for p in (Path(CONF_DIR) / "scale").glob("*.yaml"))


def _extra(optim: str) -> list:
    return ["optim.inner=lion"] if optim.endswith("timm") else []


def _check(task: str, optim: str, scale: str) -> Config:
    cfg = OmegaConf.to_object(compose([f"task={task}", f"optim={optim}", f"scale={scale}", *_extra(optim)]))
    assert isinstance(cfg, Config)
    assert cfg.optim.name == optim and cfg.task.name == task and cfg.scale == scale
    # Lookahead's hyperparameters are always explicit in the resolved config.
    assert (cfg.optim.lookahead is not None) == optim.startswith("lookahead_")
    return cfg


@pytest.mark.parametrize("optim", OPTIMS)
def test_every_optimizer_composes(optim):
    for task in ("nqm", "cifar10"):
        _check(task, optim, "paper")


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("task", TASKS)
def test_every_task_composes_at_every_scale(task, scale):
    for optim in ("sgd", "lookahead_sgd", "adam", "lookahead_adam"):
        _check(task, optim, scale)


def test_paper_values_reach_the_config():
    cfg = OmegaConf.to_object(compose(["task=cifar10", "optim=lookahead_sgd"]))
    assert (cfg.optim.lr, cfg.optim.lookahead.k, cfg.optim.lookahead.alpha) == (0.1, 5, 0.8)
    assert cfg.trainer.epochs == 200 and cfg.data.batch_size == 128
    assert cfg.schedule.milestones == [0.3, 0.6, 0.8] and cfg.schedule.gamma == 0.2
    sgd = OmegaConf.to_object(compose(["task=cifar100", "optim=sgd"]))
    assert (sgd.optim.lr, sgd.optim.weight_decay, sgd.optim.momentum) == (0.05, 1e-3, 0.9)


@pytest.mark.parametrize("override, message", [
    ("optim.lookahead.k=0", "optim.lookahead.k"),
    ("optim.lookahead.alpha=1.5", "optim.lookahead.alpha"),
    ("optim.lookahead.pullback=sometimes", "optim.lookahead.pullback"),
    ("optim.lr=-1", "optim.lr"),
    ("schedule.name=warp", "schedule.name"),
    ("trainer.slow_bn=average", "trainer.slow_bn"),
])
def test_invalid_values_fail_validation_with_the_key(override, message):
    cfg = compose(["task=nqm", "optim=lookahead_sgd", override])
    with pytest.raises(Exception, match=message.replace(".", r"\.")):
        OmegaConf.to_object(cfg)


@pytest.mark.parametrize("override", ["task.bn_momentum=0", "task.bn_momentum=1.5"])
def test_invalid_cifar_values_fail_validation_with_the_key(override):
    cfg = compose(["task=cifar10", "optim=sgd", override])
    with pytest.raises(Exception, match=r"task\.bn_momentum"):
        OmegaConf.to_object(cfg)
    OmegaConf.to_object(compose(["task=cifar10", "optim=sgd", "task.bn_momentum=0.1"]))


@pytest.mark.parametrize("override", ["optim.lrr=0.1", "task.dimm=3", "trainer.epochs=abc", "task=nosuchtask"])
def test_typos_and_wrong_types_fail_at_composition(override):
    with pytest.raises(Exception):
        compose(["task=nqm", override])
