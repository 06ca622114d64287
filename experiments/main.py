"""One run from a composed config: own the directory, check, build, train, record.

Exit behaviour (contract): a config or data problem prints one line saying what and how to fix
it and exits 2; divergence is a result (status ``diverged``, exit 0, so sweeps go on); an
interruption saves a checkpoint, records ``interrupted`` and exits 130/143; any other error
records ``failed``. Inside a sweep (``-m``) the error is raised to the sweeper
(``hydra_plugins/lookahead_sweeper``), which records it in the sweep summary and goes on.

Record integrity (contract):

- The run directory is locked for the run's lifetime (``experiments/rundir.py``); a second
  process on it stops with "run directory in use by pid N".
- A run whose manifest says ``completed`` or ``diverged`` is a result and is skipped, but only
  when its config fingerprint and data fingerprint equal the new command's
  (``experiments/fingerprint.py``); otherwise the run stops and names what differs. The same
  check guards resuming an unfinished run from its checkpoint, so records are never mixed.
- A failure before training (bad value, missing data, busy directory) leaves no half-record: a
  directory this attempt created is removed again, an existing one is left as it was.
- A dirty tree's diff is saved as ``git.diff`` beside the manifest, its sha256 in the manifest.
"""

from __future__ import annotations

import hashlib
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments import fingerprint
from experiments.console import log, log_to, say
from experiments.errors import UserError
from experiments.records import Manifest, atomic_write_bytes
from experiments.rundir import RunDirLock, remove_if_only_leftovers

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FINAL = ("completed", "diverged")  # statuses that are results: a re-launch skips them


def _validate(cfg: DictConfig):
    from experiments.cli import check_declared
    from experiments.config import Config

    check_declared(cfg)  # `+trainer.max_stepz=5` in a sweep member is an error, as in a single run
    try:
        obj = OmegaConf.to_object(cfg)
    except Exception as err:  # omegaconf wraps __post_init__ errors; unwrap the message
        cause = err.__cause__ or err
        text = str(cause)
        raise UserError(text if text.startswith("Invalid") else f"Invalid config: {text}") from err
    assert isinstance(obj, Config)
    return obj


def run(cfg: DictConfig) -> float | None:
    """Entry point under ``@hydra.main``: takes the run directory and mode from Hydra."""
    hc = HydraConfig.get()
    return execute(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task), hc.mode == RunMode.MULTIRUN)


def execute(cfg: DictConfig, run_dir: Path, overrides: list, multirun: bool = False) -> float | None:
    """Run one composed config in ``run_dir`` (also used by tests with Hydra's compose API).

    Returns the final target metric (``None`` when there is none). Single runs exit 2 on a user
    error; in a sweep every error is raised for the sweeper to record.
    """
    existed = (run_dir / "manifest.json").exists()
    try:
        with RunDirLock(run_dir), log_to(run_dir / "run.log"):
            return _execute_locked(cfg, run_dir, overrides, multirun)
    except _BeforeTraining as wrapped:
        err = wrapped.__cause__
        if not existed:
            remove_if_only_leftovers(run_dir)
        if multirun or not isinstance(err, UserError):
            raise err from None
        say(f"error: {err}", error=True)
        sys.exit(2)
    except UserError as err:  # the directory is locked by another process: nothing was touched
        if multirun:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


class _BeforeTraining(Exception):
    """Carries an error raised before the run's records were written (``__cause__``)."""


def _execute_locked(cfg: DictConfig, run_dir: Path, overrides: list, multirun: bool) -> float | None:
    previous = Manifest.read(run_dir / "manifest.json")
    try:
        config = _validate(cfg)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        data_print = fingerprint.data_fingerprint(resolved)
        final = previous is not None and previous.get("status") in FINAL
        if previous and config.resume and (final or (run_dir / "checkpoint.pt").exists()):
            _check_same(previous, resolved, data_print, run_dir)
            if final:
                return _skip(previous, run_dir, config)
        built = _build(config, run_dir)
    except Exception as err:
        raise _BeforeTraining() from err
    try:
        return _train(cfg, config, resolved, data_print, built, run_dir, overrides, previous)
    except Exception as err:
        user = isinstance(err, UserError)
        message = str(err) if user else traceback.format_exc()
        log.error(message)
        _record_failure(run_dir, message)
        if multirun or not user:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _check_same(previous: Dict[str, Any], resolved: Dict[str, Any], data_print: Dict[str, Any], run_dir: Path) -> None:
    """Stop unless the stored run was made from the same config and data as this command."""
    what = "holds a finished run" if previous.get("status") in FINAL else "holds an unfinished run"
    fix = ("use another experiment_name or hydra.run.dir for the new run, or resume=false to redo this one "
           "from scratch in place")
    old_config = previous.get("config")
    if not isinstance(old_config, dict):
        raise UserError(f"{run_dir} {what} whose manifest has no config (made by an older version); {fix}")
    if previous.get("config_hash") != fingerprint.config_hash(resolved):
        diff = fingerprint.config_changes(old_config, resolved)
        if diff:
            more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
            raise UserError(f"{run_dir} {what} with another config: {'; '.join(diff[:3])}{more}; {fix}")
    old_data = previous.get("data_fingerprint")
    if not isinstance(old_data, dict) or old_data.get("sha256") != data_print.get("sha256"):
        was = old_data.get("sha256", "none")[:12] if isinstance(old_data, dict) and old_data.get("sha256") else "none"
        gone = f", {data_print['missing']} of its files missing" if data_print.get("missing") else ""
        raise UserError(f"{run_dir} {what} on other data: data fingerprint {was} -> "
                        f"{(data_print.get('sha256') or 'none')[:12]} (data.root={resolved['data']['root']}{gone}); "
                        f"{fix}")


def _skip(previous: Dict[str, Any], run_dir: Path, config) -> float | None:
    say(f"skip {run_dir}: already {previous['status']} (same config and data)")
    if config.logger.wandb and not previous.get("wandb_id"):
        from experiments.wandb_sink import replay

        run_id = replay(config.logger, previous, run_dir)
        Manifest(run_dir / "manifest.json", previous).update(wandb_id=run_id)
        say(f"logged the finished run's metrics.csv to wandb (id {run_id})")
    return (previous.get("final") or {}).get(previous.get("target_metric", ""), None)


def _build(config, run_dir: Path) -> Dict[str, Any]:
    import torch  # noqa: F401  (imported late: `--help` and config errors stay fast)

    from experiments import distributed, runtime
    from experiments.optim import build_optimizer
    from experiments.tasks import build_task

    device = distributed.local_device(runtime.select_device(config.trainer))
    rank, world = distributed.init(device)
    threads = runtime.configure(config.trainer, config.seed, device)
    task = build_task(config, device)
    opt = build_optimizer(config.optim, task.model)
    return {"device": device, "rank": rank, "world": world, "threads": threads, "task": task, "opt": opt}


def _record_failure(run_dir: Path, error: str) -> None:
    path = run_dir / "manifest.json"
    try:
        Manifest(path, Manifest.read(path) or {}).update(status="failed", error=error, end_time=time.time())
    except OSError as err:  # e.g. the disk is full: say so, the manifest keeps its last state
        say(f"error: could not record the failure in {path}: {err}", error=True)


def _provenance(run_dir: Path) -> Dict[str, Any]:
    from experiments import runtime

    git = runtime.git_state(PROJECT_ROOT)
    diff = git.pop("diff", "")
    if git["dirty"]:
        atomic_write_bytes(run_dir / "git.diff", diff.encode())
        git["diff_file"] = "git.diff"
        git["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
    else:
        (run_dir / "git.diff").unlink(missing_ok=True)
    return git


def _train(cfg: DictConfig, config, resolved: Dict[str, Any], data_print: Dict[str, Any], built: Dict[str, Any],
           run_dir: Path, overrides: list, previous: Optional[Dict[str, Any]]) -> float | None:
    from experiments import runtime
    from experiments.train import fit

    task, opt = built["task"], built["opt"]
    if built["rank"] != 0:  # other ranks train in lockstep and write nothing
        fit(config, task, opt, run_dir)
        return None
    fresh = not (config.resume and (run_dir / "checkpoint.pt").exists())
    if fresh:  # records of an earlier attempt (resume=false, or a run that never checkpointed) go
        previous = None
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    previous = previous or {}
    manifest = Manifest(run_dir / "manifest.json", {
        "run_dir": str(run_dir.relative_to(Path.cwd())) if run_dir.is_relative_to(Path.cwd()) else run_dir.name,
        "config": resolved,
        "config_hash": fingerprint.config_hash(resolved),
        "data_fingerprint": data_print,
        "overrides": overrides,
        "git": _provenance(run_dir),
        "versions": runtime.versions(),
        "device": runtime.device_description(built["device"], built["threads"]),
        **_machine_facts(built["device"]),
        "threads": built["threads"],
        "world_size": built["world"],
        "seed": config.seed,
        "scale": config.scale,
        "task": config.task.name,
        "optim": config.optim.name,
        "target_metric": task.target_metric,
        "start_time": previous.get("start_time", time.time()),
        "attempts": int(previous.get("attempts", 0)) + 1,
        **({"wandb_id": previous["wandb_id"]} if previous.get("wandb_id") else {}),
    })
    manifest.update(status="running", resumed=False)
    sinks = [_log_row]
    wandb = None
    if config.logger.wandb:
        from experiments.wandb_sink import WandbSink

        wandb = WandbSink(config.logger, resolved, run_dir, run_id=previous.get("wandb_id"))
        manifest.update(wandb_id=wandb.run_id)
        sinks.append(wandb)
    result: Dict[str, Any] = fit(config, task, opt, run_dir, sinks=sinks)
    signum = result.pop("signal", None)
    manifest.update(**result, resumed=result.get("resumed_from", 0) > 0, task_info=task.info, end_time=time.time())
    if wandb is not None:
        wandb.close()
    say(_summary(manifest.content, run_dir))
    if result["status"] == "interrupted":
        sys.exit(128 + (signum or 2))
    final = result["final"] or {}
    return final.get(task.target_metric)


def _machine_facts(device) -> Dict[str, Any]:
    from experiments import runtime

    native = getattr(runtime, "native_bf16", None)
    return {"native_bf16": native(device)} if native is not None else {}


def _log_row(row: Dict[str, Any]) -> None:
    if len(row) > 5 or "train_loss" not in row:  # evaluation rows, not every loss row
        shown = ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
        log.info(shown)


def _summary(m: Dict[str, Any], run_dir: Path) -> str:
    """``completed: test_acc 0.81 (fast 0.809, slow 0.81) after 2738 steps, 23.4 min training; runs/...``."""
    final, target = m.get("final") or {}, m.get("target_metric", "")
    parts = [f"{m.get('status')}:"]
    if target in final:
        variants = [f"{v} {final[f'{target}_{v}']:.4g}" for v in ("fast", "slow", "avg") if f"{target}_{v}" in final]
        parts.append(f"{target} {final[target]:.4g}" + (f" ({', '.join(variants)})" if variants else ""))
    minutes = (m.get("time_s") or 0.0) / 60
    parts.append(f"after {m.get('steps', 0)} steps, {minutes:.1f} min training;")
    return " ".join(parts) + f" {run_dir}"
