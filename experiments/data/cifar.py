"""Reader for the official CIFAR python-pickle layout, and batched-tensor augmentation.

Layouts (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html):

- CIFAR-10: ``<root>/cifar-10-batches-py/data_batch_{1..5}``, ``test_batch``, ``batches.meta``;
  each batch a pickled dict with ``data`` (N x 3072 uint8, channel-major 32x32) and ``labels``.
- CIFAR-100: ``<root>/cifar-100-python/train``, ``test``, ``meta``; labels under ``fine_labels``.

The official files are Python 2 pickles (byte-string keys); files written by Python 3 have str
keys. Both load here. We parse the format ourselves instead of using torchvision's reader,
which rejects any file whose md5 differs from the official release (so no realistic fakes and
no re-encoded copies); checksums are checked where the archives are downloaded
(``scripts/data/prepare_cifar.py``).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from experiments.data.subset import subset_index
from experiments.errors import DataError

LAYOUT = {
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    100: ("cifar-100-python", ["train"], ["test"], "fine_labels"),
}


@dataclass
class CifarArrays:
    train_x: torch.Tensor  # (N, 3, 32, 32) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor

    def channel_stats(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training images in [0, 1] (normalization constants)."""
        x = self.train_x.double().div_(255)
        return x.mean(dim=(0, 2, 3)).float(), x.std(dim=(0, 2, 3)).float()

    def subset(self, limit_train: int = 0, limit_test: int = 0) -> "CifarArrays":
        """The fixed, class-stratified subsets of ``limit_train`` training and ``limit_test`` test
        images (``experiments/data/subset.py``); 0 keeps a split whole, in its order."""

        def take(x: torch.Tensor, y: torch.Tensor, limit: int) -> Tuple[torch.Tensor, torch.Tensor]:
            index = subset_index(len(y), limit, y)
            return (x, y) if len(index) == len(y) else (x[index], y[index])  # whole: the arrays themselves

        return CifarArrays(*take(self.train_x, self.train_y, limit_train), *take(self.test_x, self.test_y, limit_test))


def _how_to_get(num_classes: int) -> str:
    return (f"Run `make data-cifar{num_classes}` (downloads the official archive and checks its md5) "
            f"or set data.root to the folder that contains {LAYOUT[num_classes][0]}/.")


def _read_batch(path: Path, label_key: str, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            raw = pickle.load(f, encoding="bytes")
        entry: Dict[str, object] = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, AttributeError, ValueError, TypeError) as err:
        raise DataError(f"{path} is not a readable CIFAR batch ({type(err).__name__}: {err}). "
                        f"The file may be truncated or corrupt: {_how_to_get(num_classes)}") from err
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape} "
                        f"and {len(labels)} labels. {_how_to_get(num_classes)}")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise DataError(f"{path}: labels outside [0, {num_classes}). {_how_to_get(num_classes)}")
    return data, labels


def load_cifar(root: str | Path, num_classes: int) -> CifarArrays:
    if num_classes not in LAYOUT:
        raise ValueError(f"Invalid num_classes for CIFAR: {num_classes}; use 10 or 100")
    folder, train_files, test_files, label_key = LAYOUT[num_classes]
    base = Path(root) / folder
    missing = [f for f in train_files + test_files if not (base / f).is_file()]
    if missing:
        raise DataError(f"CIFAR-{num_classes} not found: looked for {base / missing[0]}. {_how_to_get(num_classes)}")

    def stack(files: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        parts = [_read_batch(base / f, label_key, num_classes) for f in files]
        x = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
        y = np.concatenate([p[1] for p in parts])
        return torch.from_numpy(x), torch.from_numpy(y)

    train_x, train_y = stack(train_files)
    test_x, test_y = stack(test_files)
    return CifarArrays(train_x, train_y, test_x, test_y)


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices ``i`` in ``[-(n-1), 2(n-1)]`` folded into ``[0, n)`` by mirroring at the edges (numpy ``reflect``)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4, pad_mode: str = "zeros") -> torch.Tensor:
    """Random translation by up to ``pad`` pixels and a horizontal flip, on a whole batch at once.

    ``x`` is (B, C, H, W). The translation is a random HxW crop of the image padded by ``pad``
    pixels: zeros (``pad_mode="zeros"``, the paper's pad-4 crop) or the mirrored image edge
    (``"reflect"``, airbench's translate-2). Offsets and flips are drawn from ``generator`` (CPU)
    so the batch is reproducible from the run seed and its position.
    """
    b, c, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    if pad_mode == "reflect":  # index the image itself: mirrored offsets instead of a padded copy
        source, rows, cols = x, _reflect(rows - pad, h), _reflect(cols - pad, w)
    else:
        source = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return source[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
