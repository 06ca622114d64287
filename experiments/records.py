"""What a run writes into its directory (contract, see the README's "Run records").

- ``metrics.csv``: one row per logged point. ``step`` counts optimizer steps (one Lookahead
  ``step()`` is one fast step), ``epoch`` is fractional, ``time_s`` is wall-clock training time.
  Evaluation rows carry split-prefixed metrics; Lookahead runs add ``*_fast`` and ``*_slow``
  columns, Polyak runs ``*_avg``; the unsuffixed column is the weights the run reports (slow for
  Lookahead, as the paper returns phi; averaged for Polyak).
- ``manifest.json``: resolved config, overrides, git commit and dirty flag, versions, device,
  seed, start/end time, ``status`` and final metrics.
- ``checkpoint.pt``: everything needed to continue bit-identically.

Every file is written to a temporary name and renamed, so a crash never leaves a half-written
record behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import torch

STATUSES = ("running", "completed", "diverged", "failed", "interrupted")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name unique to this writer, then rename: readers see old or new, never half.

    A failed write (a full disk) removes its temporary file before the error goes on.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class MetricsLog:
    """``metrics.csv`` with a growing column set; rows are kept so resume can truncate them."""

    def __init__(self, path: Path, sinks: Sequence[Callable[[Dict[str, Any]], None]] = ()) -> None:
        self.path = path
        self.sinks = list(sinks)  # e.g. wandb: called with every new row
        self.rows: List[Dict[str, Any]] = []
        self.columns: List[str] = []

    def load(self, n_rows: int) -> None:
        """Re-read the first ``n_rows`` rows (those covered by the checkpoint being resumed)."""
        if not self.path.exists():
            return
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            self.columns = list(reader.fieldnames or [])
            self.rows = [dict(r) for _, r in zip(range(n_rows), reader)]
        self._rewrite()

    def append(self, row: Dict[str, Any]) -> None:
        new = [c for c in row if c not in self.columns]
        self.rows.append(row)
        for sink in self.sinks:
            sink(row)
        if new or not self.path.exists():
            self.columns.extend(new)
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(_fmt(row))

    def _rewrite(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns)
        writer.writeheader()
        writer.writerows(_fmt(r) for r in self.rows)
        atomic_write_bytes(self.path, buffer.getvalue().encode())


def _fmt(row: Dict[str, Any]) -> Dict[str, Any]:
    # repr() of a Python float round-trips exactly, so resumed and uninterrupted runs match bit for bit.
    return {k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()}


class Manifest:
    """``manifest.json``: the identity card of a run, rewritten atomically on every change."""

    def __init__(self, path: Path, content: Dict[str, Any]) -> None:
        self.path = path
        self.content = content

    @staticmethod
    def read(path: Path) -> Dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def update(self, **fields: Any) -> None:
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"Invalid run status: {fields['status']!r}")
        self.content.update(fields)
        atomic_write_bytes(self.path, (json.dumps(self.content, indent=2, default=str) + "\n").encode())
