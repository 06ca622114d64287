"""ImageNet in the ImageFolder layout: reader, standard transforms, deterministic loaders.

Layout (the contract for ``data.root``)::

    <root>/train/<wnid>/<image>.JPEG     (ILSVRC2012_img_train.tar: one tar per class, extracted)
    <root>/val/<wnid>/<image>.JPEG       (ILSVRC2012_img_val.tar is flat: sort it with
                                          scripts/data/prepare_imagenet.py)

Classes are the sorted folder names of ``train/`` (so wnid ``n01440764`` is class 0, as in
torchvision's ImageFolder); ``val/`` may only use those names. Every image is decoded by Pillow
and converted to RGB (ImageNet holds greyscale and CMYK JPEGs).

Transforms (pytorch/examples ``imagenet/main.py``, the paper's code base): training
RandomResizedCrop(size) + RandomHorizontalFlip; validation Resize(256) + CenterCrop(224).
Workers return uint8 tensors; the task normalises with the ImageNet mean/std on its device,
which equals ToTensor + Normalize and moves 4x fewer bytes between processes.

Reproducibility. The batches of epoch ``e`` are the slices of ``randperm(n)`` drawn from
``batch_generator(seed, e)``; batch ``b`` draws one augmentation seed per position from
``batch_generator(seed, e, b)``, and each image is cropped and flipped under its own seed (the
global RNG is forked, so neither the main process's nor a worker's RNG is touched). Hence
every batch is a pure function of (seed, epoch, batch index): it does not depend on
``num_workers``, on where a run was resumed, or on the number of DDP ranks (rank ``r`` takes
positions ``r::world`` of the same global batch, with their seeds). Exact pixel equality also
needs the same Pillow/torchvision versions (resampling code).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from experiments import distributed
from experiments.data.splits import per_class_split, split_record
from experiments.data.subset import subset_index
from experiments.errors import DataError
from experiments.tasks.base import batch_generator

MEAN = (0.485, 0.456, 0.406)  # ImageNet channel statistics in [0, 1] (pytorch/examples)
STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
Sample = Tuple[str, int]
Key = Tuple[int, int]  # (image index, augmentation seed); seed < 0: no random transform


def how_to_get(root: Path) -> str:
    return ("ImageNet cannot be downloaded automatically: after accepting the terms at "
            "https://image-net.org, get ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and the "
            "devkit, extract train/ into one folder per wnid, sort val/ with "
            "`python scripts/data/prepare_imagenet.py --val-dir VAL --devkit DEVKIT`, and set "
            f"data.root to the folder holding train/ and val/ (now: {root}).")


def scan(root: Path, split: str, classes: Optional[Sequence[str]] = None) -> Tuple[List[str], List[Sample]]:
    """Sorted class names and ``(path, class index)`` pairs of ``root/split``."""
    base = Path(root) / split
    if not base.is_dir():
        raise DataError(f"ImageNet not found: looked for {base} (class folders of images). {how_to_get(Path(root))}")
    found = sorted(d.name for d in base.iterdir() if d.is_dir())
    if not found:
        raise DataError(f"{base} holds no class folders; a flat validation folder must be sorted first. "
                        f"{how_to_get(Path(root))}")
    names = list(classes) if classes is not None else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(f"{base} has class folders that train/ lacks: {unknown[:5]}. The two splits must use "
                        f"the same wnids. {how_to_get(Path(root))}")
    index = {name: i for i, name in enumerate(names)}
    samples = []
    for c in found:  # os.scandir: no stat() per file, which matters for 1.28M images
        with os.scandir(base / c) as entries:
            files = sorted(e.path for e in entries if e.name.lower().endswith(EXTENSIONS) and e.is_file())
        samples += [(f, index[c]) for f in files]
    if not samples:
        raise DataError(f"No images ({', '.join(EXTENSIONS)}) under {base}/<class>/. {how_to_get(Path(root))}")
    return names, samples


def limited(samples: List[Sample], limit: int) -> List[Sample]:
    """The fixed class-stratified subset of ``limit`` samples (``experiments/data/subset.py``);
    ``limit`` 0 keeps the (class-sorted) list as it is."""
    if limit <= 0 or limit >= len(samples):
        return samples
    index = subset_index(len(samples), limit, torch.tensor([label for _, label in samples]))
    return [samples[i] for i in index.tolist()]


def train_transform(size: int, min_scale: float = 0.08) -> T.Compose:
    return T.Compose([T.RandomResizedCrop(size, scale=(min_scale, 1.0)), T.RandomHorizontalFlip(), T.PILToTensor()])


def eval_transform(size: int, resize: int) -> T.Compose:
    return T.Compose([T.Resize(resize), T.CenterCrop(size), T.PILToTensor()])


class ImageList(Dataset):
    """Map-style dataset keyed by ``(index, seed)``: returns ``(uint8 CHW tensor, label)``."""

    def __init__(self, samples: List[Sample], transform: T.Compose) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: Key) -> Tuple[torch.Tensor, int]:
        index, seed = key
        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except OSError as err:
            raise DataError(f"{path} is not a readable image ({err}); re-extract it or remove it.") from err
        if seed < 0:
            return self.transform(rgb), label
        with torch.random.fork_rng(devices=[]):  # torchvision's random transforms use the global RNG
            torch.manual_seed(seed)
            return self.transform(rgb), label


class EpochBatches:
    """Batch sampler over ``(index, seed)`` keys; set ``epoch`` and ``start`` before iterating.

    Batch ``b`` of epoch ``e`` is ``randperm(n)[b * size : (b + 1) * size]`` under
    ``batch_generator(seed, e)`` (the last partial batch is dropped, so every step sees the same
    global batch and every rank the same share), with per-position seeds from
    ``batch_generator(seed, e, b)``; ``sharded`` keeps this rank's positions only.
    """

    def __init__(self, n: int, size: int, seed: int, sharded: bool = True, epoch: int = 0) -> None:
        self.n, self.size, self.seed, self.sharded = n, size, seed, sharded
        self.steps = n // size
        self.epoch, self.start = epoch, 0

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[List[Key]]:
        return self._batches(self.epoch, self.start)

    def _batches(self, epoch: int, start: int) -> Iterator[List[Key]]:
        order = torch.randperm(self.n, generator=batch_generator(self.seed, epoch))
        for b in range(start, self.steps):
            idx = order[b * self.size : (b + 1) * self.size]
            seeds = torch.randint(0, 2**62, (len(idx),), generator=batch_generator(self.seed, epoch, b))
            keys = torch.stack([idx, seeds], 1)
            yield [tuple(k) for k in (distributed.shard(keys) if self.sharded else keys).tolist()]


def eval_batches(n: int, size: int) -> List[List[Key]]:
    """This rank's share of ``range(n)`` (positions ``rank::world``), in batches of ``size``."""
    mine = distributed.shard(torch.arange(n)).tolist()
    return [[(i, -1) for i in mine[j : j + size]] for j in range(0, len(mine), size)]


def loader(dataset: ImageList, batches, workers: int, pin: bool, persistent: bool = True) -> DataLoader:
    """A DataLoader that fetches the given batches of keys with ``workers`` processes."""
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin,
                      persistent_workers=persistent and workers > 0)


@dataclass
class ImageNetData:
    classes: List[str]
    train: ImageList
    val: ImageList
    train_total: int = 0  # images in the split before any limit
    val_total: int = 0
    held_out: Optional[ImageList] = None  # protocol=val: val_per_class training images of every class
    split: Dict[str, Any] = field(default_factory=dict)  # their record (splits.split_record)


def load_imagenet(root: str | Path, image_size: int, resize_size: int, min_scale: float = 0.08,
                  limit_train: int = 0, limit_val: int = 0, num_classes: int = 0, val_per_class: int = 0,
                  split_seed: int = 0) -> ImageNetData:
    """Scan ``root/train`` and ``root/val`` (``num_classes > 0``: the class count train/ must have);
    raises :class:`DataError` naming what is missing. ``val_per_class > 0`` holds that many images
    of every class out of train (before ``limit_train``; ``limit_val`` limits them too)."""
    classes, train = scan(Path(root), "train")
    if num_classes and len(classes) != num_classes:
        raise DataError(f"{Path(root) / 'train'} has {len(classes)} class folders but task.num_classes={num_classes}; "
                        f"set task.num_classes={len(classes)} or point data.root at the full dataset")
    _, val = scan(Path(root), "val", classes)
    held_out, split = None, {}
    if val_per_class:
        try:
            kept, out = per_class_split(np.array([label for _, label in train]), val_per_class, split_seed)
        except ValueError as err:  # a class with too few images
            raise DataError(f"{Path(root) / 'train'}: cannot hold out task.val_per_class={val_per_class}: {err}") from err
        split = split_record(kept, out, split_seed, per_class=val_per_class)
        held_out = ImageList(limited([train[i] for i in out], limit_val), eval_transform(image_size, resize_size))
        train = [train[i] for i in kept]
    return ImageNetData(classes, ImageList(limited(train, limit_train), train_transform(image_size, min_scale)),
                        ImageList(limited(val, limit_val), eval_transform(image_size, resize_size)),
                        train_total=len(train), val_total=len(val), held_out=held_out, split=split)
