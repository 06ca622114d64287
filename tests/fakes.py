"""Fake datasets in the real on-disk formats, written by tests into tmp_path.

Each writer reproduces the official layout byte-for-byte in structure (names, keys, dtypes,
shapes), with random content, so the production readers run on them unchanged.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


class _Py2Pickler(pickle._Pickler):
    """Pickles ``bytes`` with Python 2 ``str`` opcodes, as the official CIFAR files were written:
    ``pickle.load(f, encoding="bytes")`` then yields ``b"data"`` keys and ``encoding="latin1"``
    yields ``"data"`` keys."""

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = _save_py2_str


def _dump(path: Path, obj: dict, py2: bool) -> None:
    with open(path, "wb") as f:
        if py2:
            _Py2Pickler(f, protocol=2).dump({k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in obj.items()})
        else:
            pickle.dump(obj, f, protocol=4)


def write_cifar(root: Path, num_classes: int = 10, n_train: int = 50, n_test: int = 20,
                py2: bool = True, seed: int = 0, class_sorted_test: bool = False) -> Path:
    """Write ``cifar-10-batches-py/`` (5 train batches + test_batch + batches.meta) or
    ``cifar-100-python/`` (train, test, meta) under ``root``; returns ``root``.

    ``class_sorted_test``: the test batch holds equally many images of every class, sorted by
    class (as a test batch written from per-class image folders is, e.g. data/cifar10 here);
    otherwise labels are drawn at random."""
    rng = np.random.default_rng(seed)
    label_key = "labels" if num_classes == 10 else "fine_labels"

    def batch(n: int, name: str, class_sorted: bool = False) -> dict:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # before the labels: the same random fakes
        labels = ([i * num_classes // n for i in range(n)] if class_sorted
                  else [int(v) for v in rng.integers(0, num_classes, n)])
        d = {"batch_label": name, "data": data, label_key: labels, "filenames": [f"{i}.png" for i in range(n)]}
        if num_classes == 100:
            d["coarse_labels"] = [int(v) // 5 for v in d[label_key]]
        return d

    if num_classes == 10:
        base = root / "cifar-10-batches-py"
        base.mkdir(parents=True, exist_ok=True)
        per = -(-n_train // 5)
        for i in range(5):
            _dump(base / f"data_batch_{i + 1}", batch(per, f"training batch {i + 1} of 5"), py2)
        _dump(base / "test_batch", batch(n_test, "testing batch 1 of 1", class_sorted_test), py2)
        _dump(base / "batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": per}, py2)
    else:
        base = root / "cifar-100-python"
        base.mkdir(parents=True, exist_ok=True)
        _dump(base / "train", batch(n_train, "training batch 1 of 1"), py2)
        _dump(base / "test", batch(n_test, "testing batch 1 of 1", class_sorted_test), py2)
        _dump(base / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]}, py2)
    return root
