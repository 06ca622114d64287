"""One run from a composed config: validate, build, train, record.

Exit behaviour (contract): a config or data problem prints one line saying what and how to fix
it and exits 2; divergence is a result (status ``diverged``, exit 0, so sweeps go on); an
interruption saves a checkpoint, records ``interrupted`` and exits 130/143; any other error
records ``failed``. Inside a sweep (``-m``) failures are recorded and the sweep goes on.
A run whose manifest already says ``completed`` or ``diverged`` is a result and is skipped, so
re-launched sweeps only do what is missing (a diverged run would diverge again from its last
checkpoint; delete its directory to retry it); a re-run of an unfinished run (``interrupted``,
``failed``) resumes from its checkpoint.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments.errors import UserError
from experiments.records import Manifest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _validate(cfg: DictConfig):
    from experiments.config import Config

    try:
        obj = OmegaConf.to_object(cfg)
    except Exception as err:  # omegaconf wraps __post_init__ errors; unwrap the message
        cause = err.__cause__ or err
        raise UserError(f"Invalid config: {cause}") from err
    assert isinstance(obj, Config)
    return obj


def run(cfg: DictConfig) -> float | None:
    """Entry point under ``@hydra.main``: takes the run directory and mode from Hydra."""
    hc = HydraConfig.get()
    return execute(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task), hc.mode == RunMode.MULTIRUN)


FINAL = ("completed", "diverged")  # statuses that are results: a re-launch skips them


def execute(cfg: DictConfig, run_dir: Path, overrides: list, multirun: bool = False) -> float | None:
    """Run one composed config in ``run_dir`` (also used by tests with Hydra's compose API)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = Manifest.read(run_dir / "manifest.json")
    if previous and previous.get("status") in FINAL and cfg.get("resume", True):
        print(f"skip {run_dir}: already {previous['status']}")
        return (previous.get("final") or {}).get(previous.get("target_metric", ""), None)
    try:
        return _run(cfg, run_dir, overrides)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        _record_failure(run_dir, str(err))
        if multirun:
            return None
        sys.exit(2)
    except KeyboardInterrupt:
        raise
    except Exception:
        _record_failure(run_dir, traceback.format_exc())
        if multirun:
            traceback.print_exc()
            return None
        raise


def _record_failure(run_dir: Path, error: str) -> None:
    path = run_dir / "manifest.json"
    Manifest(path, Manifest.read(path) or {}).update(status="failed", error=error, end_time=time.time())


def _run(cfg: DictConfig, run_dir: Path, overrides: list) -> float | None:
    config = _validate(cfg)
    import torch  # noqa: F401  (imported late: `--help` and config errors stay fast)

    from experiments import runtime
    from experiments.optim import build_optimizer
    from experiments.tasks import build_task
    from experiments.train import fit

    from experiments import distributed

    device = distributed.local_device(runtime.select_device(config.trainer))
    rank, world = distributed.init(device)
    threads = runtime.configure(config.trainer, config.seed, device)
    task = build_task(config, device)
    opt = build_optimizer(config.optim, task.model)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if rank != 0:  # other ranks train in lockstep and write nothing
        fit(config, task, opt, run_dir)
        return None
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    previous = Manifest.read(run_dir / "manifest.json") or {}
    manifest = Manifest(run_dir / "manifest.json", {
        "run_dir": str(run_dir.relative_to(Path.cwd())) if run_dir.is_relative_to(Path.cwd()) else run_dir.name,
        "config": resolved,
        "overrides": overrides,
        "git": runtime.git_state(PROJECT_ROOT),
        "versions": runtime.versions(),
        "device": runtime.device_description(device, threads),
        "threads": threads,
        "world_size": world,
        "seed": config.seed,
        "scale": config.scale,
        "task": config.task.name,
        "optim": config.optim.name,
        "target_metric": task.target_metric,
        "start_time": previous.get("start_time", time.time()),
        "resumed": bool(previous),
    })
    manifest.update(status="running")
    sinks = []
    if config.logger.wandb:
        from experiments.wandb_sink import WandbSink

        sinks.append(WandbSink(config.logger, resolved, run_dir))
    result: Dict[str, Any] = fit(config, task, opt, run_dir, sinks=sinks)
    signum = result.pop("signal", None)
    manifest.update(**result, task_info=task.info, end_time=time.time())
    for sink in sinks:
        sink.close()
    if result["status"] == "interrupted":
        sys.exit(128 + (signum or 2))
    final = result["final"] or {}
    return final.get(task.target_metric)
