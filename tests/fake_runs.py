"""Fake run directories in the real run-record format, for collect and the figures.

A fake sweep is the real one: its jobs come from the experiment file through Hydra's sweeper
(``experiments.sweep.sweep_jobs``, command-line values narrowing the grid), each job's config is the
composed, resolved config, and its directory is Hydra's ``override_dirname``. Only the numbers
are made up: ``metrics.csv`` is written by the loop's own writer (``MetricsLog``) with the
columns the loop logs for that task and optimizer (train_loss every 2 steps; an evaluation row
per epoch with the task's split-prefixed metrics, ``_fast``/``_slow`` for Lookahead, ``_fast``/
``_avg`` for Polyak; ``update_*`` rows inside a ``trainer.per_update`` window), and
``manifest.json`` by ``Manifest`` with the fields the loop records.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf

from experiments.records import Manifest, MetricsLog
from experiments.sweep import compose, run_dirname, sweep_jobs

STEPS_PER_EPOCH, EPOCHS, LOG_EVERY = 4, 3, 2
# task name -> (metrics an evaluation returns, target metric, higher is better)
TASKS = {
    "cifar10": (("test_loss", "test_acc"), "test_acc", True),
    "cifar100": (("test_loss", "test_acc"), "test_acc", True),
    "imagenet": (("val_loss", "val_acc1", "val_acc5"), "val_acc1", True),
    "ptb": (("val_loss", "val_ppl", "test_loss", "test_ppl"), "val_ppl", False),
    "wmt14": (("test_loss", "test_bleu"), "test_bleu", True),
    "nqm": (("val_loss", "val_excess_loss"), "val_loss", False),
}


def _values(names: Sequence[str], loss: float) -> Dict[str, float]:
    out = {}
    for name in names:
        kind = name.split("_")[-1]
        out[name] = {"loss": loss, "acc": 1 - loss / 4, "acc1": 0.9 - loss / 4, "acc5": 1 - loss / 8,
                     "ppl": math.exp(loss + 3), "bleu": 30 - 5 * loss}.get(kind, loss / 2)
    return out


def _evaluate(cfg: dict, loss: float, per_update: bool = False) -> Dict[str, float]:
    """What experiments/evaluation.py returns: reported weights, then the variants."""
    names = TASKS[cfg["task"]["name"]][0]
    optim = cfg["optim"]
    if optim.get("lookahead"):
        fast, slow = _values(names, loss * 1.1), _values(names, loss)
        out = {**slow, **{f"{k}_fast": v for k, v in fast.items()}, **{f"{k}_slow": v for k, v in slow.items()}}
        if cfg["trainer"].get("slow_bn") == "both":  # recomputed statistics
            out.update({f"{k}_slow_bn": v for k, v in _values(names, loss * 0.95).items()})
    elif optim.get("averaging"):
        live, avg = _values(names, loss * 1.05), _values(names, loss)
        out = {**avg, **{f"{k}_fast": v for k, v in live.items()}, **{f"{k}_avg": v for k, v in avg.items()}}
    else:
        out = _values(names, loss)
    return {f"update_{k}": v for k, v in out.items()} if per_update else out


def write_run(run_dir: Path, config: DictConfig, overrides: Sequence[str], status: str = "completed") -> None:
    """One run directory: .hydra/config.yaml (unresolved, as Hydra saves it beside every job)
    and overrides.yaml, metrics.csv and manifest.json (with the resolved config).

    ``status``: completed; diverged (a huge train loss at step 2, then stop); failed (a
    failure before the manifest was filled in: only status and error)."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(config))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    cfg = OmegaConf.to_container(config, resolve=True)
    manifest = Manifest(run_dir / "manifest.json", {})
    if status == "failed":
        manifest.update(status="failed", error="UserError: CIFAR-100 not found: looked for DIR", end_time=1.0)
        return
    names, target, higher = TASKS[cfg["task"]["name"]]
    rate = 0.05 + (zlib.crc32(run_dir.name.encode()) % 100) / 1000  # differs per run, fixed per name
    per_update = cfg["trainer"].get("per_update") or {"start_epoch": 0, "steps": 0}
    first = round(per_update["start_epoch"] * STEPS_PER_EPOCH)
    window = range(first + 1, first + per_update["steps"] + 1)
    log = MetricsLog(run_dir / "metrics.csv")
    final: Dict[str, float] = {}
    best: Optional[float] = None
    step = 0
    for step in range(1, STEPS_PER_EPOCH * EPOCHS + 1):
        loss = 2.0 * math.exp(-rate * step) + 0.01 * cfg["seed"]
        base = {"step": step, "epoch": step / STEPS_PER_EPOCH, "time_s": 0.01 * step, "lr": cfg["optim"]["lr"]}
        if step % LOG_EVERY == 0:
            log.append({**base, "train_loss": 1e6 if status == "diverged" else loss})
            if status == "diverged":
                break
        if step in window:
            log.append({**base, **_evaluate(cfg, loss, per_update=True)})
        if step % STEPS_PER_EPOCH == 0:
            final = _evaluate(cfg, loss)
            log.append({**base, **final})
            value = final[target]
            best = value if best is None or (value > best) == higher else best
    manifest.update(
        run_dir=run_dir.name, config=cfg, overrides=list(overrides), git={"commit": "0" * 40, "dirty": False},
        versions={}, device="CPU (fake run)", threads=1, world_size=1, seed=cfg["seed"], scale=cfg["scale"],
        task=cfg["task"]["name"], optim=cfg["optim"]["name"], target_metric=target, start_time=0.0,
        resumed=False, status=status, final=final, best=best, steps=step, time_s=0.01 * step, task_info={},
        end_time=1.0)


def write_sweep(runs: Path, args: Sequence[str], outcome: Optional[Callable[[list], str]] = None) -> int:
    """Every job of ``run.py -m *args`` as a fake run under ``runs/<experiment_name>/``; the
    configs are composed once per job without its seed (the seed changes nothing else).
    ``outcome``: job overrides -> status (default: every run completed). Returns the number
    of runs."""
    jobs, master = sweep_jobs(args)
    configs: Dict[tuple, DictConfig] = {}
    for job in jobs:
        arm = tuple(o for o in job if not o.startswith("seed="))
        if arm not in configs:
            configs[arm] = compose(job)
        cfg = configs[arm].copy()
        cfg.seed = int(next(o for o in job if o.startswith("seed=")).split("=")[1])
        run_dir = runs / cfg.experiment_name / run_dirname(job, master)
        write_run(run_dir, cfg, job, outcome(job) if outcome else "completed")
    return len(jobs)
