"""Mirror metrics rows to Weights & Biases (``logger.wandb=true``); the CSV stays the record.

``logger.mode=auto`` logs online only when the user is logged in (an API key is configured)
and offline otherwise, so a run never blocks on the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from experiments.config import LoggerConfig


class WandbSink:
    def __init__(self, cfg: LoggerConfig, config: Dict[str, Any], run_dir: Path) -> None:
        import wandb

        mode = cfg.mode
        if mode == "auto":
            mode = "online" if wandb.api.api_key else "offline"
        self._wandb = wandb
        self._run = wandb.init(project=cfg.project, config=config, dir=str(run_dir), mode=mode,
                               name=run_dir.name, id=None, resume="allow", reinit="finish_previous")

    def __call__(self, row: Dict[str, Any]) -> None:
        self._run.log({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))

    def close(self) -> None:
        self._run.finish()
