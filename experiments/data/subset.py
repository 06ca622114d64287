"""Fixed subsets of a dataset, for runs that use only part of it (``task.limit_*`` knobs, smoke scale).

Protocol:

- The subset is drawn from a generator seeded by :data:`SUBSET_SEED`, a constant: it does not
  depend on the run seed, the optimizer or the scale, so every run that asks for N examples of a
  split sees the very same N (results of different arms and seeds stay comparable), and the
  task records the seed in its ``info`` (the manifest's ``task_info.subset``).
- Labelled data (CIFAR, ImageNet) is stratified: every class keeps its share of the split up to
  rounding (with equal classes, N / classes each, within one), so a class-sorted split (the
  CIFAR test batch written from per-class folders, ImageFolder trees) does not collapse to its
  first class, as the first N examples would.
- The subset comes in round-robin order: the first draw of every class, then the second, ...
  (in random order within each round), so any prefix of it is stratified too (a
  per-update evaluation that reads only its first batches, BLEU on its first sentences).
- A limit of 0 (or one at least the split's size) keeps the whole split in its original order:
  exactly the examples, and the order, that a run without a limit uses.

Token streams (PTB) are subsampled as one contiguous window (:func:`stream_window`), since the
language model reads them in order and carries its state along.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

# One constant for every run, never a run seed; any value would do (this one is the month of the
# paper's arXiv id, 1907.08610). Changing it changes every limited run's data.
SUBSET_SEED = 1907


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(SUBSET_SEED)


def subset_index(n: int, limit: int, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Indices (int64) of the ``limit`` examples of a split of ``n`` that a limited run uses.

    Args:
        n: examples in the split.
        limit: how many to keep; ``<= 0`` or ``>= n`` keeps all of them, as ``arange(n)``.
        labels: (n,) integer class labels to stratify by; ``None``: one class (a plain random subset).
    """
    if limit <= 0 or limit >= n:
        return torch.arange(n)
    labels = torch.zeros(n, dtype=torch.long) if labels is None else torch.as_tensor(labels).long()
    if labels.shape != (n,):
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected ({n},)")
    perm = torch.randperm(n, generator=_generator())
    drawn = labels[perm] - labels.min()
    # Rank of each drawn example among the draws of its class: a random order within each class.
    by_class = torch.argsort(drawn, stable=True)
    counts = torch.bincount(drawn)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.long)
    rank[by_class] = torch.arange(n) - first[drawn[by_class]]
    # Sorting by the rank's quantile within the class takes every class in proportion to its
    # size; ties (equal quantiles) keep the random order of perm.
    quantile = (rank.double() + 0.5) / counts[drawn].double()
    return perm[torch.argsort(quantile, stable=True)[:limit]]


def stream_window(stream: torch.Tensor, limit: int, boundary: Optional[int] = None) -> Tuple[torch.Tensor, int]:
    """A window of ``limit`` consecutive tokens of ``stream`` and its start offset.

    The start is drawn with :data:`SUBSET_SEED` among the positions where a sentence begins (just
    after a ``boundary`` token, or 0) that leave room for the whole window. ``limit <= 0`` or
    ``>= len(stream)`` returns the stream itself (offset 0).
    """
    n = len(stream)
    if limit <= 0 or limit >= n:
        return stream, 0
    starts = torch.arange(n - limit + 1)
    if boundary is not None:
        after = torch.cat([torch.tensor([True]), stream[:-1] == boundary])
        starts = starts[after[: n - limit + 1]]
    start = int(starts[torch.randint(len(starts), (1,), generator=_generator())])
    return stream[start : start + limit], start


def subset_info(**splits: Tuple[int, int]) -> dict:
    """``{"subset": {...}}`` for the task's ``info`` when a limit is in use, else ``{}``.

    ``splits`` maps a split name to ``(limit, size)``; the record holds the seed and, per split,
    how many examples (sentences, tokens) the run used out of how many.
    """
    if not any(limit > 0 for limit, _ in splits.values()):
        return {}
    used = {name: {"used": min(limit, n) if limit > 0 else n, "of": n} for name, (limit, n) in splits.items()}
    return {"subset": {"seed": SUBSET_SEED, **used}}
