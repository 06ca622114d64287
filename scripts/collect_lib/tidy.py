"""The three tidy tables of an artifact: one row per run, long-format curves, and the summary.

Groups are the grid minus the seed: ``scale, task, dataset, optim``, the artifact's grid keys
(every override key of its runs that can change a result) and the descriptor columns
(``records.DESCRIPTORS``, functions of the grid, so they never split a group; they only label
it). Statistics use completed runs only; ``n_runs`` counts every member of the group, so
``n < n_runs`` shows that some runs diverged, failed or are unfinished.

95% CI: the Student-t half-width t_{0.975, n-1} * std / sqrt(n) (std with ddof = 1), the
interval for the mean over seeds; NaN for n < 2.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .records import DESCRIPTORS, Run, descriptor, error_line, last_value

DIGITS = 8  # significant digits of every float the tables write (collect_lib.FLOAT_FORMAT)
MAX_POINTS = 100  # per (run, metric) in curves.csv; evenly spaced, first and last kept
NOT_CURVES = ("step", "epoch", "time_s", "lr")
# runs.csv's last columns: how a run went and where, never part of a group's identity.
BOOKKEEPING = ("target_metric", "steps", "time_s", "eval_s", "eval_share", "commit", "dirty", "device", "error")


def _sort_key(value: Any) -> tuple:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (0, 0.0, "")
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def as_written(value: Any) -> Any:
    """A float as the tables write it (DIGITS significant digits). Statistics are computed from
    the values runs.csv shows, so tables rebuilt from the committed record (which holds these
    digits; restore.recorded_runs) are the same bytes as those built from the run folders."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value):
        return float(f"{value:.{DIGITS}g}")
    return value


def sort_rows(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Deterministic order over mixed-type columns (missing first, then numbers, then text)."""
    order = sorted(range(len(df)), key=lambda i: tuple(_sort_key(df[c].iat[i]) for c in columns))
    return df.iloc[order].reset_index(drop=True)


def grid_keys(runs: Sequence[Run]) -> List[str]:
    """The artifact's grid keys: every grid override key seen in its runs, sorted."""
    return sorted({key for run in runs for key in run.grid()})


def runs_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: identity, grid, descriptors, final metrics, cost and provenance."""
    keys = grid_keys(runs)
    rows = []
    for run in runs:
        m, c = run.manifest, run.config
        task = c.get("task") or {}
        row: Dict[str, Any] = {
            "run": run.run_id, "status": run.status, "seed": m.get("seed", c.get("seed")),
            "scale": m.get("scale", c.get("scale")), "task": m.get("task", task.get("name")),
            "dataset": task.get("dataset"), "optim": m.get("optim", (c.get("optim") or {}).get("name")),
        }
        grid = run.grid()
        # A run without this override has the config's value (None for a config-group key).
        row.update({key: grid[key] if key in grid else descriptor(c, key) for key in keys})
        row.update({d: descriptor(c, d) for d in DESCRIPTORS if d not in keys})
        row.update({f"final_{k}": v for k, v in sorted((m.get("final") or {}).items())})
        row["final_train_loss"] = last_value(run.metrics, "train_loss")
        target = m.get("target_metric")
        if target:
            row[f"best_{target}"] = m.get("best")
        git = m.get("git") or {}
        # Evaluation's wall time is kept apart from training's (time_s leaves it out), across
        # resumes; its share of the two together is what the suite holds to 10 % at cpu scale.
        eval_s = m.get("eval_time_s")
        share = eval_s / (eval_s + m["time_s"]) if eval_s is not None and m.get("time_s") else None
        row.update({"target_metric": target, "steps": m.get("steps"), "time_s": m.get("time_s"),
                    "eval_s": eval_s, "eval_share": share,
                    "commit": git.get("commit"), "dirty": git.get("dirty"), "device": m.get("device"),
                    "error": error_line(m)})
        rows.append(row)
    if not rows:  # every member failed or ran at another scale: the tables exist, empty
        return pd.DataFrame(columns=["run", "status", "seed", "scale", "task", "dataset", "optim"])
    df = pd.DataFrame(rows).dropna(axis=1, how="all")
    front = [c for c in df if not c.startswith(("final_", "best_")) and c not in BOOKKEEPING]
    metrics = sorted(c for c in df if c.startswith(("final_", "best_")))
    df[metrics] = df[metrics].apply(lambda column: column.map(as_written))
    back = [c for c in BOOKKEEPING if c in df]
    df = df[front + metrics + back]
    return sort_rows(df, [c for c in group_columns(df) if c in df] + ["seed", "run"])


def group_columns(runs_df: pd.DataFrame) -> List[str]:
    """Columns that define a group: identity without the seed, the grid and the descriptors."""
    skip = {"run", "status", "seed", *BOOKKEEPING}
    return [c for c in runs_df if c not in skip and not c.startswith(("final_", "best_"))]


def metric_columns(runs_df: pd.DataFrame) -> List[str]:
    return [c for c in runs_df if c.startswith(("final_", "best_"))] + (["time_s"] if "time_s" in runs_df else [])


def ci95(std: float, n: int) -> float:
    """Student-t 95% half-width of the mean of n values with sample std ``std``."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def summary_table(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Per group and metric: mean, std, n (completed runs), ci95 and n_runs (all runs)."""
    groups = group_columns(runs_df)
    rows = []
    for _, members in runs_df.groupby(groups, dropna=False, sort=False):
        done = members[members["status"] == "completed"]
        ident = {c: members[c].iat[0] for c in groups}
        for metric in metric_columns(runs_df):
            if members[metric].isna().all():
                continue
            values = pd.to_numeric(done[metric], errors="coerce").to_numpy(float)
            values = values[np.isfinite(values)]
            n = len(values)
            std = float(np.std(values, ddof=1)) if n > 1 else math.nan
            rows.append({**ident, "metric": metric, "mean": float(np.mean(values)) if n else math.nan,
                         "std": std, "n": n, "ci95": ci95(std, n), "n_runs": len(members)})
    df = pd.DataFrame(rows, columns=[*groups, "metric", "mean", "std", "n", "ci95", "n_runs"])
    return sort_rows(df, [*groups, "metric"])


def _subsample(n: int) -> np.ndarray:
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, MAX_POINTS)).astype(int))


def curves_table(runs: Sequence[Run], runs_df: pd.DataFrame) -> pd.DataFrame:
    """Long format: run, its identity and grid columns (descriptors only where they vary), seed,
    step, epoch, metric, value; one row per logged value (train_loss, evaluation and per-update
    rows)."""
    keys = set(grid_keys(runs))
    varying = [c for c in group_columns(runs_df) if c in ("scale", "task", "dataset", "optim")
               or c in keys or runs_df[c].nunique(dropna=False) > 1]
    ident = runs_df.set_index("run")[[*varying, "seed"]]
    frames = []
    for run in runs:
        if run.metrics is None:
            continue
        metrics = [c for c in run.metrics if c not in NOT_CURVES]
        long = run.metrics.melt(id_vars=["step", "epoch"], value_vars=metrics, var_name="metric")
        long = long.dropna(subset=["value"])
        parts = [g.iloc[_subsample(len(g))] for _, g in long.groupby("metric", sort=True)]
        if not parts:
            continue
        long = pd.concat(parts).assign(run=run.run_id, **ident.loc[run.run_id].to_dict())
        frames.append(long)
    columns = ["run", *varying, "seed", "step", "epoch", "metric", "value"]
    if not frames:
        return pd.DataFrame(columns=columns)
    df = pd.concat(frames, ignore_index=True)[columns]
    return sort_rows(df, ["run", "metric", "step"])
