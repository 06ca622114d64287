"""ImageNet classification with torchvision ResNets (paper §5.2, Table 2, Fig. 6).

Paper protocol (conf/task_scale/imagenet_paper.yaml, conf/task_optim/imagenet_*.yaml): the
pytorch/examples ImageNet recipe, ResNet-50 (or ``task.model=resnet152``), global batch 256,
SGD lr 0.1 momentum 0.9 wd 1e-4, 90 epochs with x0.1 at 30/60; single-crop top-1/top-5 on val.
Multi-GPU: ``torchrun --nproc_per_node=N run.py task=imagenet ...``; ``data.batch_size`` stays
the global batch and each rank loads its share (see experiments/data/imagenet.py).

Metrics: ``val_loss``, ``val_acc1``, ``val_acc5`` (fractions), summed over ranks with counts.
"""

from __future__ import annotations

import itertools
from typing import Iterator, Tuple

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from experiments import distributed
from experiments.config import Config
from experiments.data.imagenet import MEAN, STD, EpochBatches, eval_batches, load_imagenet, loader
from experiments.data.subset import subset_info
from experiments.tasks.base import Task, image_layout


def build(cfg: Config, device: torch.device) -> Task:
    t, bs, world = cfg.task, cfg.data.batch_size, distributed.rank_world()[1]
    if bs % world:
        raise ValueError(f"data.batch_size={bs} (the global batch) must be divisible by the {world} ranks")
    data = load_imagenet(cfg.data.root, t.image_size, t.resize_size, t.min_crop_scale, t.limit_train, t.limit_val,
                         t.num_classes, val_per_class=t.val_per_class if cfg.protocol == "val" else 0,
                         split_seed=t.split_seed)
    if t.model not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"Unknown task.model: {t.model!r}; use a torchvision model name such as resnet50 or resnet152")
    model, layout, memory_format = image_layout(
        torchvision.models.get_model(t.model, weights=None, num_classes=t.num_classes).to(device),
        cfg.trainer.channels_last)
    mean, std = (torch.tensor(v, device=device).mul(255)[None, :, None, None] for v in (MEAN, STD))
    train = EpochBatches(len(data.train), bs, cfg.seed)
    if train.steps == 0:
        raise ValueError(f"data.batch_size={bs} exceeds the {len(data.train)} training images; lower it")
    workers, pin = cfg.data.num_workers, device.type == "cuda"
    train_loader, val_loader = (loader(data.train, train, workers, pin),
                                loader(data.val, eval_batches(len(data.val), cfg.data.eval_batch_size), workers, pin))
    # protocol=val: the held-out training images are val_*, the official validation set test_*.
    splits = {"val": val_loader} if data.held_out is None else {
        "val": loader(data.held_out, eval_batches(len(data.held_out), cfg.data.eval_batch_size), workers, pin),
        "test": val_loader}

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = (x.to(device, non_blocking=True).float() - mean) / std  # uint8 -> ToTensor + Normalize
        return layout(x)

    def train_batches(epoch: int, start: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        train.epoch, train.start = epoch, start
        for x, y in train_loader:
            yield prepare(x), y.to(device, non_blocking=True)

    def bn_batches(count: int) -> Iterator[torch.Tensor]:
        # A stream no training epoch uses (epoch -1), the same on every rank (identical statistics).
        stream = EpochBatches(len(data.train), bs // world, cfg.seed, sharded=False, epoch=-1)
        for x, _ in itertools.islice(loader(data.train, stream, workers, pin, persistent=False), count):
            yield prepare(x)

    def loss(m: nn.Module, batch, carry):
        return F.cross_entropy(m(batch[0]), batch[1]), carry

    def evaluate_on(m: nn.Module, max_batches: int = 0) -> dict:
        out = {}
        for name, batches in splits.items():
            sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1, top-5, count
            for x, y in itertools.islice(batches, max_batches or None):
                logits, y = m(prepare(x)).float(), y.to(device, non_blocking=True)
                hits = logits.topk(min(5, t.num_classes), dim=1).indices == y[:, None]
                sums += torch.stack([F.cross_entropy(logits, y, reduction="sum"), hits[:, 0].sum(), hits.any(1).sum(),
                                     torch.tensor(len(y), device=device)]).double()
            loss_sum, top1, top5, count = distributed.all_sum(sums.tolist(), device)
            out.update({f"{name}_loss": loss_sum / count, f"{name}_acc1": top1 / count, f"{name}_acc5": top5 / count})
        return out

    per_update = cfg.trainer.per_update
    return Task(
        model=model, steps_per_epoch=train.steps, train_batches=train_batches, loss=loss, evaluate=evaluate_on,
        target_metric="val_acc1", bn_batches=bn_batches, examples_per_batch=bs,
        per_update_evaluate=(lambda m: evaluate_on(m, per_update.max_batches)) if per_update else None,
        info={"classes": len(data.classes), "train_images": len(data.train), "val_images": len(data.val),
              "memory_format": memory_format, **data.split,
              **subset_info(train=(t.limit_train, data.train_total), val=(t.limit_val, data.val_total))},
    )
