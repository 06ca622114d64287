"""Config schema of the ImageNet classification task."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import TaskConfig


@dataclass
class ImageNetTaskConfig(TaskConfig):
    """ImageNet ResNet-50/152 (paper §5.2). Sizes per scale in conf/task_scale/."""

    model: str = "resnet50"  # any torchvision ResNet name
    num_classes: int = 1000
    image_size: int = 224
    resize_size: int = 256
    limit_train: int = 0
    limit_val: int = 0
