"""Shared pieces of the figures drawn from trained runs (`make collect` output).

Inputs are the tidy tables of `scripts/collect.py`: `results/<artifact>/curves.csv` (long:
run, group columns, seed, step, epoch, metric, value), `summary.csv` and `table.csv`. Curves
are averaged over seeds at each logged step (mean line, +-1 std band, n in the legend); an
"arm" is one group of an artifact (an optimizer and the grid values that vary), labelled from
its optimizer's style plus those values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from . import _style

# Group columns that may tell arms apart, and how a legend names them.
ARM_COLUMNS = {
    "optim.lookahead.k": "k={:g}", "optim.lookahead.alpha": "α={:g}", "optim.lr": "lr={:g}",
    "optim.momentum": "momentum={:g}", "data.batch_size": "batch {:g}",
}
TASK_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet",
              "ptb": "Penn Treebank", "wmt14": "WMT14 en-de", "nqm": "NQM"}


def read(results_dir: Path, artifact: str, name: str, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """One collected table of an artifact, optionally only some metrics."""
    df = pd.read_csv(Path(results_dir) / artifact / name)
    return df[df["metric"].isin(list(metrics))].reset_index(drop=True) if metrics is not None else df


def arm_columns(df: pd.DataFrame, candidates: Sequence[str] = tuple(ARM_COLUMNS)) -> list[str]:
    """The candidate columns that vary among this frame's runs (what distinguishes arms)."""
    per_run = df.drop_duplicates("run") if "run" in df else df
    return [c for c in candidates if c in per_run and per_run[c].nunique(dropna=True) > 1]


def arm_label(optim: str, row: pd.Series, columns: Sequence[str]) -> str:
    parts = [ARM_COLUMNS[c].format(row[c]) for c in columns if c in row and pd.notna(row[c])]
    return _style.label(optim) + (f" ({', '.join(parts)})" if parts else "")


def seed_mean(curves: pd.DataFrame, by: Sequence[str], x: str = "epoch") -> pd.DataFrame:
    """Mean, std and n over seeds of each (group, metric, x) point."""
    keys = [*by, "metric", x]
    g = curves.groupby(keys, dropna=False, sort=True)["value"]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    return out.assign(std=out["std"].fillna(0.0))


def draw_arms(ax: Axes, mean: pd.DataFrame, columns: Sequence[str], x: str = "epoch",
              transform=None, band: bool = True, **line) -> None:
    """One line (+-1 std band) per arm of `mean` (from `seed_mean`), styled by optimizer; arms
    sharing an optimizer get lighter shades in the order of `columns`."""
    arms = mean.drop_duplicates(["optim", *columns]).sort_values(["optim", *columns], kind="stable")
    for optim, same in arms.groupby("optim", sort=False):
        for i, (_, arm) in enumerate(same.iterrows()):
            sel = np.ones(len(mean), bool)
            for c in ["optim", *columns]:
                sel &= (mean[c] == arm[c]).to_numpy() | (mean[c].isna() & pd.isna(arm[c])).to_numpy()
            g = mean[sel].sort_values(x)
            y, s = g["mean"].to_numpy(float), g["std"].to_numpy(float)
            lo, hi = y - s, y + s
            if transform is not None:
                y, lo, hi = transform(y), transform(lo), transform(hi)
            color = _style.tint(optim, 1.0 - 0.55 * i / max(len(same) - 1, 1))
            n = int(g["n"].max())
            ax.plot(g[x], y, color=color, label=f"{arm_label(optim, arm, columns)}, n={n}", **line)
            if band and n > 1:
                ax.fill_between(g[x], lo, hi, color=color, alpha=0.15, lw=0)


def no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no runs for {what}", ha="center", va="center", transform=ax.transAxes)


def task_name(task: str) -> str:
    return TASK_NAMES.get(task, task)


def curves_by_task(summary: pd.DataFrame, metrics: Sequence[str], ylabels: Sequence[str],
                   title: str, columns: Sequence[str] | None = None, transforms=None):
    """A row of panels: each metric (train loss, test accuracy, ...) for each task present."""
    tasks = sorted(summary["task"].unique())
    cols = columns if columns is not None else arm_columns(summary)
    fig, axes = _style.new_figure(len(tasks) * len(metrics), "triple" if len(tasks) * len(metrics) > 2 else "double")
    for i, (task, metric) in enumerate((t, m) for t in tasks for m in metrics):
        ax, j = axes[i], list(metrics).index(metric)
        part = summary[(summary["task"] == task) & (summary["metric"] == metric)]
        if part.empty:
            no_data(ax, f"{task} {metric}")
            continue
        draw_arms(ax, part, cols, transform=(transforms or {}).get(metric))
        ax.set(xlabel="epoch", ylabel=ylabels[j], title=task_name(task))
        if metric == "train_loss":
            ax.set_yscale("log")
    axes[0].legend()
    _style.title(fig, title, summary)
    return fig, axes


def load_sensitivity(results_dir: Path, artifact: str) -> pd.DataFrame:
    """Train-loss curves (panel 'curve') and final test accuracy per group (panel 'final')."""
    curves = read(results_dir, artifact, "curves.csv", ["train_loss"]).assign(panel="curve")
    final = read(results_dir, artifact, "summary.csv", ["final_test_acc"]).assign(panel="final")
    return pd.concat([curves, final], ignore_index=True)


def summarize_sensitivity(df: pd.DataFrame, key: str) -> pd.DataFrame:
    curves = seed_mean(df[df["panel"] == "curve"], ["scale", "task", "dataset", "optim", key])
    return pd.concat([curves.assign(panel="curve"), df[df["panel"] == "final"]], ignore_index=True)


def plot_sensitivity(summary: pd.DataFrame, key: str, xlabel: str, title: str):
    """Train loss per (optimizer, value of `key`), and final test accuracy against `key`."""
    fig, (ax_a, ax_b) = _style.new_figure(2, "double")
    curves, final = summary[summary["panel"] == "curve"], summary[summary["panel"] == "final"]
    if curves.empty:
        no_data(ax_a, "train_loss")
    else:
        draw_arms(ax_a, curves, [key], band=False, lw=0.9)
        ax_a.set(yscale="log", xlabel="epoch", ylabel="train loss", title="(a) train loss, mean over seeds")
        ax_a.legend()
    for optim, g in final.groupby("optim", sort=True):
        g = g.sort_values(key)
        ax_b.errorbar(g[key], 100 * g["mean"], yerr=100 * g["ci95"].fillna(0), fmt=f"{_style.marker(optim)}-",
                      color=_style.color(optim), capsize=2, label=f"{_style.label(optim)}, n={int(g['n'].min())}")
    ax_b.set(xlabel=xlabel, ylabel="final test accuracy (%)", title="(b) mean ± 95% CI over seeds")
    if len(final):
        ax_b.legend()
    _style.title(fig, title, summary)
    return fig, np.array([ax_a, ax_b])


def draw_cell(ax: Axes, x: float, cell: pd.Series, optim: str, offset: float = 0.25) -> None:
    """One table cell (a row of collect's table.csv) at `x`: ours as mean +- 95% CI (filled, only
    where a seed completed) and the paper's mean +- std (open diamond at x + offset, if given)."""
    if cell["n"] > 0:
        ax.errorbar(x, cell["mean"], yerr=np.nan_to_num(cell["ci95"]), fmt=_style.marker(optim),
                    color=_style.color(optim), capsize=2)
    if pd.notna(cell["paper_value"]):
        ax.errorbar(x + offset, cell["paper_value"], yerr=np.nan_to_num(cell["paper_std"]), fmt="D",
                    mfc="white", color=_style.color(optim), capsize=2, ms=3)


def draw_cells(ax: Axes, cells: pd.DataFrame, labels: Sequence[str], optims: Sequence[str], ylabel: str) -> None:
    """Table cells side by side (`draw_cell`), labelled and styled by `labels` and `optims`."""
    for i, ((_, cell), optim) in enumerate(zip(cells.iterrows(), optims)):
        draw_cell(ax, i, cell, optim)
    ax.set_xticks(range(len(labels)), [t.replace("alpha", "α") for t in labels], rotation=30, ha="right")
    ax.set(ylabel=ylabel, title="(b) ours ● (95% CI) vs paper ◇ (± std)")


GRID_ARM = ["optim.lookahead.k", "optim.lookahead.alpha"]


def load_grid(results_dir: Path, artifact: str, metric: str, column: str | None = None) -> pd.DataFrame:
    """A k/alpha grid: curves of `metric` (panel 'curve') and its table cells (panel 'table'),
    only those of `column` if given."""
    curves = read(results_dir, artifact, "curves.csv", [metric])
    table = pd.read_csv(Path(results_dir) / artifact / "table.csv")
    table = table if column is None else table[table["column"] == column]
    return pd.concat([curves.assign(panel="curve"), table.assign(panel="table")], ignore_index=True)


def grid_figure(summary: pd.DataFrame, metric: str, ylabel: str):
    """(fig, ax_a, ax_b, table) of a k/alpha grid: panel (a) drawn, the curves of `metric` per
    arm (mean over seeds); panel (b) left to the caller with the table cells."""
    fig, (ax_a, ax_b) = _style.new_figure(2, "double")
    curves, table = summary[summary["panel"] == "curve"], summary[summary["panel"] == "table"]
    if curves.empty:
        no_data(ax_a, metric)
    else:
        draw_arms(ax_a, curves, [c for c in GRID_ARM if c in curves], band=False, lw=0.9)
        ax_a.set(yscale="log", xlabel="epoch", ylabel=ylabel, title="(a) " + ylabel)
        ax_a.legend()
    return fig, ax_a, ax_b, table


def summarize_grid(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(seed means of the curves per (optimizer, k, alpha), the table cells once per label)."""
    curves = df[df["panel"] == "curve"]
    curves = seed_mean(curves, ["scale", "task", "dataset", "optim", *[c for c in GRID_ARM if c in curves]])
    return curves.assign(panel="curve"), df[df["panel"] == "table"].drop_duplicates(["row", "column"])


REPORT_METRICS = ("train_loss", "test_acc")


def report_curves(artifact: str, title: str):
    """``(SWEEP, REQUIRES, load, summarize, plot)`` of a reproduction-report figure: train loss and
    test accuracy (%) per dataset present, mean over seeds with a +-1 std band (n in the legend),
    one line per arm (optimizer and the grid values that vary); reported weights (slow for
    Lookahead). The report itself shows these two curves per dataset and gives no numbers."""
    sweep = f"make sweep-{artifact} SCALE=cpu && make collect"
    requires = [f"{artifact}/curves.csv"]

    def load(results_dir: Path) -> pd.DataFrame:
        """Train-loss and test-accuracy curves of every run."""
        return read(results_dir, artifact, "curves.csv", REPORT_METRICS)

    def summarize(df: pd.DataFrame) -> pd.DataFrame:
        """Mean and std over seeds per arm and epoch."""
        return seed_mean(df, ["scale", "task", "dataset", "optim", *arm_columns(df)])

    def plot(summary: pd.DataFrame):
        """Train loss and test accuracy (%) per dataset; returns (fig, axes), never saves."""
        return curves_by_task(summary, REPORT_METRICS, ("train loss", "test accuracy (%)"), title,
                              transforms={"test_acc": lambda y: 100 * y})

    return sweep, requires, load, summarize, plot
