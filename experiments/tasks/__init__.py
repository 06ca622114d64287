"""The task registry: one entry per ``task=`` choice, each a schema and a ``build`` function.

Task modules are imported lazily by :func:`build_task`, so composing a config never imports
torchvision or a dataset reader it does not need.
"""

from __future__ import annotations

import importlib
from typing import Dict

import torch

from experiments.config import Config, TaskConfig
from experiments.tasks.schemas import TASK_SCHEMAS

# task name -> module under experiments.tasks that defines build(cfg, device) -> Task
MODULES: Dict[str, str] = {
    "nqm": "nqm",
    "cifar10": "cifar",
    "cifar100": "cifar",
    "ptb": "ptb",
    "wmt14": "wmt",
    "imagenet": "imagenet",
}


def build_task(cfg: Config, device: torch.device):
    name = cfg.task.name
    if name not in MODULES:
        raise ValueError(f"Unknown task: {name!r}; choose one of {', '.join(MODULES)}")
    module = importlib.import_module(f"experiments.tasks.{MODULES[name]}")
    return module.build(cfg, device)


__all__ = ["MODULES", "TASK_SCHEMAS", "TaskConfig", "build_task"]
