"""Validation splits held out of a training set (the validation protocol, ``protocol=val``).

Protocol (README "Fair comparisons"): hyperparameters are selected on a validation split that
is part of the training set, never on the test set. The split is

- **fixed**: a pure function of the labels, the size and ``split_seed``; it does not depend on
  the run seed, the optimizer or the scale, so every arm and seed of a study trains and
  validates on the very same images;
- **stratified**: class j of n_j examples gives q_j of the V held-out examples, q_j the
  largest-remainder rounding of V n_j / n (so the q_j sum to V; with equal classes, V / classes
  each: 500 per class for CIFAR-10's 5k of 50k, 50 for CIFAR-100), or exactly ``per_class``
  of each class (ImageNet: 10 per class);
- **recorded**: :func:`split_record` (the task's ``info``, i.e. the manifest's ``task_info``)
  holds the seed, both sizes and the sha256 of the held-out indices, so two runs can be shown
  to have held out the same images.

Within each class the held-out examples are the first q_j of a permutation drawn from
``numpy.random.RandomState(split_seed)``: NumPy freezes that legacy generator's stream (NEP 19),
so the split is the same under every NumPy version. Classes are visited in sorted order, each
with its own permutation from the one stream.
"""

from __future__ import annotations

import hashlib
from typing import Dict, Optional, Tuple

import numpy as np


def _labels(labels) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-d array of integer classes; got shape {y.shape}, dtype {y.dtype}")
    return y


def _quotas(counts: np.ndarray, val_size: int) -> np.ndarray:
    """Largest-remainder apportionment of ``val_size`` over classes of ``counts`` examples
    (ties to the lower class index)."""
    exact = val_size * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    left = val_size - int(quota.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - quota)))  # largest remainder first
    quota[order[:left]] += 1
    return quota


def _take(y: np.ndarray, classes: np.ndarray, quota: np.ndarray, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    # Each class's indices in file order, from one stable sort (ImageNet: 1000 classes, 1.28M labels).
    by_class = np.argsort(y, kind="stable")
    ends = np.cumsum(np.unique(y, return_counts=True)[1])
    held = []
    for c, q, members in zip(classes, quota, np.split(by_class, ends[:-1])):
        if q >= len(members):
            raise ValueError(f"class {c} has {len(members)} examples; holding out {q} would leave none to train on")
        held.append(members[rng.permutation(len(members))[:q]])
    val = np.sort(np.concatenate(held)) if held else np.empty(0, np.int64)
    mask = np.ones(len(y), bool)
    mask[val] = False
    return np.flatnonzero(mask).astype(np.int64), val.astype(np.int64)


def stratified_split(labels, val_size: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``: ``val_size`` examples held out of ``labels``, class-stratified.

    Both index arrays are int64 and sorted (file order); together they partition
    ``range(len(labels))``. Deterministic in ``(labels, val_size, seed)``.
    """
    y = _labels(labels)
    if not 0 < val_size < len(y):
        raise ValueError(f"val_size={val_size} must lie strictly between 0 and the {len(y)} training examples")
    classes, counts = np.unique(y, return_counts=True)
    return _take(y, classes, _quotas(counts, val_size), seed)


def per_class_split(labels, per_class: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)`` holding out exactly ``per_class`` examples of every class."""
    y = _labels(labels)
    if per_class < 1:
        raise ValueError(f"per_class={per_class} must be positive")
    classes = np.unique(y)
    return _take(y, classes, np.full(len(classes), per_class, np.int64), seed)


def indices_sha256(index) -> str:
    """sha256 of the indices as little-endian int64 (what the manifest records)."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(index, dtype="<i8")).tobytes()).hexdigest()


def split_record(train_idx, val_idx, seed: int, per_class: Optional[int] = None) -> Dict[str, object]:
    """``{"split": {...}}`` for a task's ``info``: the seed, sizes and the held-out indices' hash."""
    record: Dict[str, object] = {"seed": int(seed), "train": int(len(train_idx)), "val": int(len(val_idx)),
                                 "val_sha256": indices_sha256(val_idx), "stratified": True}
    if per_class is not None:
        record["per_class"] = int(per_class)
    return {"split": record}
