"""Config schema of the ImageNet classification task."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import TaskConfig
from experiments.tasks.limits import check_limits


@dataclass
class ImageNetTaskConfig(TaskConfig):
    """ImageNet ResNet-50/152 (paper §5.2). Sizes per scale in conf/task_scale/.

    Training images: RandomResizedCrop(``image_size``, scale=(``min_crop_scale``, 1)) + flip;
    validation images: Resize(``resize_size``) + CenterCrop(``image_size``) (single crop).
    ``limit_train`` / ``limit_val`` > 0 (smoke scale) use a fixed, class-stratified random subset
    of that many images, the same in every run whatever its seed (``experiments/data/subset.py``;
    recorded in ``task_info.subset``); 0 uses the whole split.
    """

    model: str = "resnet50"  # any torchvision classification model name (resnet50, resnet152, ...)
    num_classes: int = 1000  # must equal the number of class folders in train/
    image_size: int = 224
    resize_size: int = 256
    min_crop_scale: float = 0.08  # RandomResizedCrop's smallest area fraction (torchvision default)
    limit_train: int = 0  # > 0: a fixed stratified subset of N training images (smoke runs); 0: all
    limit_val: int = 0  # > 0: a fixed stratified subset of N validation images; 0: all
    # The validation protocol (protocol=val): val_per_class training images of every class are held
    # out (experiments/data/splits.py, drawn by split_seed, never the run seed) and evaluated as
    # val_*; the official validation set, the test set ImageNet results report, is then test_*.
    val_per_class: int = 10
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_limits(self, "limit_train", "limit_val")
        if self.val_per_class < 1 or self.split_seed < 0:
            raise ValueError(f"Invalid task.val_per_class={self.val_per_class!r} / task.split_seed="
                             f"{self.split_seed!r}: hold out at least one image per class, with a seed >= 0")
        if not 0 < self.image_size <= self.resize_size:
            raise ValueError(f"Invalid task.image_size={self.image_size!r} / task.resize_size={self.resize_size!r}: "
                             "need 0 < image_size <= resize_size (e.g. 224 and 256)")
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ValueError(f"Invalid task.min_crop_scale: {self.min_crop_scale!r}; use a fraction in (0, 1]")
        if self.num_classes < 2 or self.limit_train < 0 or self.limit_val < 0:
            raise ValueError(f"Invalid task.num_classes={self.num_classes!r} / limit_train / limit_val: "
                             "num_classes must be >= 2 and the limits >= 0")
