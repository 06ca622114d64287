"""Config schemas of every task (kept apart from the task code so composing stays light)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Type

from experiments.config import TaskConfig
from experiments.tasks.imagenet_config import ImageNetTaskConfig
from experiments.tasks.ptb_config import PTBTaskConfig
from experiments.tasks.wmt_config import WMTTaskConfig


@dataclass
class NQMTaskConfig(TaskConfig):
    """Noisy quadratic model (paper §3): ``chains`` independent replicas trained side by side."""

    dim: int = 100
    chains: int = 1000
    steps_per_epoch: int = 100
    dtype: str = "float64"


@dataclass
class CifarTaskConfig(TaskConfig):
    """CIFAR-10/100 image classification (paper §5.1)."""

    num_classes: int = 10
    model: str = "resnet18"  # resnet18 (paper, Cutout code base) | resnet20 | resnet32 | resnet56
    width: int = 0  # 0: the architecture's own width; otherwise the first stage's channels
    augment: bool = True
    limit_train: int = 0  # > 0: use only the first N training images (smoke runs)
    limit_test: int = 0


TASK_SCHEMAS: Dict[str, Type[TaskConfig]] = {
    "nqm": NQMTaskConfig,
    "cifar": CifarTaskConfig,
    "ptb": PTBTaskConfig,
    "wmt": WMTTaskConfig,
    "imagenet": ImageNetTaskConfig,
}
