"""Checkpoints that let a run continue bit-identically (CPU) from where it stopped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from experiments.errors import UserError
from experiments.optim import Optimizers
from experiments.records import atomic_torch_save
from experiments.tasks.base import Task


@dataclass
class Progress:
    """Where the loop is; saved with the weights so a resumed run picks up mid-epoch."""

    step: int = 0
    time_s: float = 0.0
    metrics_rows: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    best: Optional[float] = None
    final: dict = field(default_factory=dict)
    eval_time_s: float = 0.0  # wall-clock of evaluations so far (time_s leaves them out); across resumes


def save(path: Path, task: Task, opt: Optimizers, scheduler: Any, progress: Progress, carry: Any) -> None:
    state = {
        "model": task.model.state_dict(),
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        # What the reported weights keep beyond the optimizer (an AveragedModel's copy); the key
        # is "averaged" for the checkpoints written before other kinds existed.
        "averaged": opt.reported.state_dict() if opt.reported is not None else None,
        "progress": asdict(progress),
        "carry": carry,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    atomic_torch_save(state, path)


def load(path: Path, task: Task, opt: Optimizers, scheduler: Any) -> tuple[Progress, Any]:
    """Restore everything :func:`save` wrote.

    A file that does not unpickle, or that holds another run's model or optimizer, is a
    :class:`UserError` (one line, exit 2) naming the file to delete; the run stops before training.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling error means the same thing here
        raise UserError(
            f"Checkpoint {path} is unreadable ({type(err).__name__}: {_first_line(err)}). "
            "Delete it to start the run afresh, or set resume=false."
        ) from err
    try:
        task.model.load_state_dict(state["model"])
        opt.optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if opt.reported is not None:
            opt.reported.load_state_dict(state["averaged"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # not a checkpoint of this run's config
        raise UserError(
            f"Checkpoint {path} does not fit this run ({type(err).__name__}: {_first_line(err)}). "
            "Delete it to start the run afresh, or set resume=false."
        ) from err
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    device = next(task.model.parameters()).device
    carry = _to(state["carry"], device)
    return Progress(**state["progress"]), carry


def _first_line(err: BaseException) -> str:
    # torch's messages run over many lines; the first says what happened, the report is one line.
    return (str(err).strip().splitlines() or [""])[0]


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    return obj
