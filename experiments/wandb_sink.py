"""Mirror metrics rows to Weights & Biases (``logger=wandb``); the CSV stays the record.

``logger.mode=auto`` logs online only when the user is logged in (an API key is configured)
and offline otherwise, so a run never blocks on the network. One run directory is one wandb
run: its id is kept in the manifest (``wandb_id``) and a resumed run continues that id; runs are
grouped by ``experiment_name`` and named by their run directory (the command-line overrides).
A finished run first asked for with ``logger=wandb`` is replayed from its ``metrics.csv``.
"""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path
from typing import Any, Dict, Optional

from experiments.config import LoggerConfig


def _init(cfg: LoggerConfig, config: Dict[str, Any], run_dir: Path, run_id: Optional[str]):
    import wandb

    mode = cfg.mode
    if mode == "auto":  # WANDB_MODE (e.g. disabled, in tests) wins over the guess
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb.api.api_key else "offline")
    run_id = run_id or uuid.uuid4().hex[:8]  # chosen here so the manifest can hold it before init
    return wandb.init(project=cfg.project, config=config, dir=str(run_dir), mode=mode, name=run_dir.name,
                      group=str(config.get("experiment_name") or "single"), id=run_id, resume="allow",
                      reinit="finish_previous")


class WandbSink:
    def __init__(self, cfg: LoggerConfig, config: Dict[str, Any], run_dir: Path, run_id: Optional[str] = None) -> None:
        self._run = _init(cfg, config, run_dir, run_id)
        self.run_id: str = self._run.id

    def __call__(self, row: Dict[str, Any]) -> None:
        self._run.log({k: v for k, v in row.items() if k != "step" and v not in ("", None)}, step=int(row["step"]))

    def close(self) -> None:
        self._run.finish()


def replay(cfg: LoggerConfig, manifest: Dict[str, Any], run_dir: Path) -> str:
    """Log a finished run's ``metrics.csv`` to a new wandb run; returns its id."""
    sink = WandbSink(cfg, manifest.get("config") or {}, run_dir)
    with open(run_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            sink({k: float(v) if k != "step" else int(v) for k, v in row.items() if v != ""})
    sink._run.summary.update({"status": manifest.get("status")})
    sink.close()
    return sink.run_id
