"""CIFAR-10/100 classification (paper §5.1, Table 1, Figs. 5, 8-10).

Paper protocol (conf/task_scale/cifar*_paper.yaml, conf/task_optim/): CIFAR ResNet-18 of the
Cutout code base, 200 epochs, batch 128, lr x0.2 at epochs 60/120/160, pad-4 crop + flip +
per-channel normalization; final test ("validation") accuracy. ``scale=cpu`` trains a
ResNet-20 on the same data with a shorter schedule.

Validation protocol (``protocol=val``, README "Fair comparisons"): ``task.val_size`` training
images (45k/5k) are held out by a fixed, class-stratified split drawn with ``task.split_seed``
(``experiments/data/splits.py``) before any ``limit_*``; the run trains on the rest, logs
``val_loss``/``val_acc`` beside ``test_loss``/``test_acc`` at every evaluation, and its target
metric is ``val_acc``. ``task_info.split`` records the seed, the sizes and the sha256 of the
held-out indices; ``limit_test`` limits the validation images as it limits the test images.

The whole dataset lives on the run's device as uint8; each step slices a batch from a
per-epoch permutation and augments it as one tensor, so data loading costs almost nothing and
every batch is a pure function of (seed, epoch, index).
"""

from __future__ import annotations

import math
from typing import Iterator, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from experiments import distributed
from experiments.config import Config
from experiments.data.cifar import CifarArrays, augment, load_cifar
from experiments.data.splits import split_record, stratified_split
from experiments.data.subset import subset_index, subset_info
from experiments.errors import UserError
from experiments.models.resnet_cifar import build as build_model
from experiments.tasks.base import Task, batch_generator, image_layout
from experiments.train import keep_freed_memory


def build(cfg: Config, device: torch.device) -> Task:
    t, bs = cfg.task, cfg.data.batch_size
    # airbench's bf16 step frees and re-faults ~1 GB of activations per step otherwise (272k page
    # faults; 1.16x per CPU-second kept; see keep_freed_memory: results unchanged).
    heap_kept = keep_freed_memory() if device.type == "cpu" else False
    full = load_cifar(cfg.data.root, t.num_classes)
    held_out, split = None, {}
    if cfg.protocol == "val":  # hold out the validation split first: the same images at every scale
        if t.val_size >= len(full.train_y):
            raise UserError(f"task.val_size={t.val_size} leaves none of the {len(full.train_y)} training images "
                            "to train on; lower task.val_size")
        train_idx, val_idx = stratified_split(full.train_y.numpy(), t.val_size, t.split_seed)
        split = split_record(train_idx, val_idx, t.split_seed)
        train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        keep = val_idx[subset_index(len(val_idx), t.limit_test, full.train_y[val_idx])]
        held_out = (full.train_x[keep], full.train_y[keep])
        full = CifarArrays(full.train_x[train_idx], full.train_y[train_idx], full.test_x, full.test_y)
    data = full.subset(t.limit_train, t.limit_test)
    train_x, train_y, test_x, test_y = data.train_x, data.train_y, data.test_x, data.test_y
    # Normalization constants of the images this run trains on (all of them without a limit).
    mean, std = (s.to(device)[None, :, None, None] for s in data.channel_stats())
    train_x, train_y, test_x, test_y = (a.to(device) for a in (train_x, train_y, test_x, test_y))
    val = None if held_out is None else tuple(a.to(device) for a in held_out)
    net = build_model(t.model, t.num_classes, t.width, t.bn_momentum)
    model, layout, memory_format = image_layout(net.to(device), cfg.trainer.channels_last)
    n = len(train_x)
    steps = math.ceil(n / bs)

    def prepare(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        x = augment(x, g, t.pad, t.pad_mode) if g is not None and t.augment else x
        x = (x.float().div_(255) - mean) / std
        return layout(x)

    if hasattr(model, "fit_whitening"):  # airbench: fixed whitening filters from training patches
        index = subset_index(n, 5000, train_y.cpu()).to(device)
        model.fit_whitening(prepare(train_x[index], None))

    def train_batches(epoch: int, start: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(n, generator=batch_generator(cfg.seed, epoch)).to(device)
        for i in range(start, steps):
            idx = distributed.shard(order[i * bs : (i + 1) * bs])  # data.batch_size is global
            yield prepare(train_x[idx], batch_generator(cfg.seed, epoch, i)), train_y[idx]

    def bn_batches(count: int) -> Iterator[torch.Tensor]:
        # Augmented training batches from a stream no training epoch uses (key -1).
        order = torch.randperm(n, generator=batch_generator(cfg.seed, -1)).to(device)
        for i in range(min(count, steps)):
            yield prepare(train_x[order[i * bs : (i + 1) * bs]], batch_generator(cfg.seed, -1, i))

    def loss(m: nn.Module, batch, carry):
        x, y = batch  # label smoothing trains only; evaluation reports the plain cross-entropy
        return F.cross_entropy(m(x), y, label_smoothing=t.label_smoothing), carry

    ebs = cfg.data.eval_batch_size

    def evaluate_split(m: nn.Module, xs: torch.Tensor, ys: torch.Tensor, name: str) -> dict:
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(xs), ebs):
            logits = m(prepare(xs[i : i + ebs], None)).float()
            y = ys[i : i + ebs]
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += len(y)
        return {f"{name}_loss": loss_sum / total, f"{name}_acc": correct / total}

    def evaluate_on(m: nn.Module, index: torch.Tensor | None = None) -> dict:
        if index is not None:  # a per-update score: the fixed test subset only
            return evaluate_split(m, test_x[index], test_y[index], "test")
        out = evaluate_split(m, *val, "val") if val is not None else {}
        return {**out, **evaluate_split(m, test_x, test_y, "test")}

    per_update = cfg.trainer.per_update
    per_update_evaluate = None
    if per_update:
        # A per-update score reads max_batches batches of a fixed class-stratified subset: the
        # test batch may be class-sorted, so its first batches would hold one or two classes.
        limit = per_update.max_batches * ebs
        index = subset_index(len(test_y), limit, test_y.cpu()).to(device) if per_update.max_batches else None
        per_update_evaluate = lambda m: evaluate_on(m, index)  # noqa: E731
    return Task(
        model=model, steps_per_epoch=steps, train_batches=train_batches, loss=loss,
        evaluate=evaluate_on, target_metric="test_acc" if val is None else "val_acc", bn_batches=bn_batches,
        examples_per_batch=bs,
        per_update_evaluate=per_update_evaluate,
        info={"memory_format": memory_format, "heap_kept": heap_kept, **split, **subset_info(
            train=(t.limit_train, len(full.train_y)), test=(t.limit_test, len(full.test_y)),
            **({} if val is None else {"val": (t.limit_test, t.val_size)}))},
    )
