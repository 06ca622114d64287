"""Config schemas of every task (kept apart from the task code so composing stays light)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Type

from experiments.config import TaskConfig, _check, _check_choice
from experiments.tasks.imagenet_config import ImageNetTaskConfig
from experiments.tasks.limits import check_limits
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
    """CIFAR-10/100 image classification (paper §5.1).

    ``limit_train`` / ``limit_test`` > 0 (smoke scale) use a fixed, class-stratified random subset
    of that many training / test images, the same in every run whatever its seed
    (``experiments/data/subset.py``; recorded in ``task_info.subset``); the normalization
    constants are then those of the training subset. 0 uses the whole split, in file order.
    Under ``protocol=val`` the training set is split first (``val_size``, ``split_seed``), then
    ``limit_train`` applies to its training part and ``limit_test`` to the validation part too.
    """

    num_classes: int = 10
    model: str = "resnet18"  # resnet18 (paper, Cutout code base) | resnet20 | resnet32 | resnet56
    width: int = 0  # 0: the architecture's own width; otherwise the first stage's channels
    # BatchNorm running-statistics momentum (torch's convention: the weight of the new batch).
    # None: the architecture's own (airbench 0.4, tuned jointly with its weight EMA; ResNets 0.1).
    bn_momentum: Optional[float] = None
    augment: bool = True
    pad: int = 4  # augmentation: translate by up to pad pixels (a random crop of the padded image)
    pad_mode: str = "zeros"  # zeros (the paper's pad-4 crop) | reflect (airbench's translate-2)
    label_smoothing: float = 0.0  # training loss only (airbench: 0.2); eval loss is plain cross-entropy
    limit_train: int = 0  # > 0: a fixed stratified subset of N training images (smoke runs); 0: all
    limit_test: int = 0  # > 0: a fixed stratified subset of N test images; 0: all
    # The validation protocol (top-level protocol=val) holds out a fixed,
    # class-stratified split of val_size training images (experiments/data/splits.py; 45k/5k),
    # evaluated as val_* beside test_*; it depends on split_seed only, never on the run seed.
    # Under the paper's protocol (the default) both are unused: all 50k train, test is reported.
    val_size: int = 5000
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_limits(self, "limit_train", "limit_test")
        _check_choice("task.pad_mode", self.pad_mode, ("zeros", "reflect"))
        _check("task.pad", self.pad, 0 <= self.pad < 32, "translate by 0-31 pixels")
        if self.bn_momentum is not None:
            _check("task.bn_momentum", self.bn_momentum, 0.0 < self.bn_momentum <= 1.0, "use a value in (0, 1]")
        _check("task.label_smoothing", self.label_smoothing, 0.0 <= self.label_smoothing < 1.0, "use a value in [0, 1)")
        if self.val_size < 1:
            raise ValueError(f"Invalid task.val_size: {self.val_size!r}; the number of training images the "
                             "validation protocol holds out must be positive")
        if self.split_seed < 0:
            raise ValueError(f"Invalid task.split_seed: {self.split_seed!r}; use a seed >= 0")


TASK_SCHEMAS: Dict[str, Type[TaskConfig]] = {
    "nqm": NQMTaskConfig,
    "cifar": CifarTaskConfig,
    "ptb": PTBTaskConfig,
    "wmt": WMTTaskConfig,
    "imagenet": ImageNetTaskConfig,
}
