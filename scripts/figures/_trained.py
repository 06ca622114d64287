"""Shared pieces of the figures drawn from trained runs (`make collect` output).

Inputs are the tidy tables of `scripts/collect.py`: `results/<artifact>/curves.csv` (long:
run, group columns, seed, step, epoch, metric, value), `summary.csv` and `table.csv`. Curves
are averaged over seeds at each logged step (mean line, +-1 std band, n in the legend); an
"arm" is one group of an artifact (an optimizer and the grid values that vary), labelled from
its optimizer's style plus those values.

Every band and error bar says what it is: `spread_note` writes the panel's line ("band ±1 std
over seeds" or "bars: Student-t 95% CI", with the n of what is drawn), and `fill_std` /
`errorbars` draw an interval only where n > 1 (one seed has neither a std nor a CI).
"""

from __future__ import annotations

import re
import textwrap
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


def _ns(ns: Iterable) -> list[int]:
    return sorted({int(n) for n in ns if pd.notna(n) and n > 0})


def spread_note(ns: Iterable, kind: str = "std") -> str:
    """The line a panel carries to say what its bands or bars are, for curves or points whose
    seed counts are `ns`: kind "std" (curve bands, +-1 std over seeds), "ci" (error bars, the
    Student-t 95% CI of the mean over seeds) or "mean" (lines without a band). n = 1 has
    neither, and the note says so rather than promising an interval that is not drawn."""
    if kind not in ("std", "ci", "mean"):
        raise ValueError(f"kind must be 'std', 'ci' or 'mean', got {kind!r}")
    ns = _ns(ns)
    if not ns:
        return "no completed seeds"
    span = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"
    if kind == "mean":
        return "one seed (n = 1)" if ns[-1] == 1 else f"mean over seeds ({span}), no band"
    what = "band: ±1 std over seeds" if kind == "std" else "bars: t 95% CI over seeds"
    if ns[-1] == 1:
        return f"one seed (n = 1): no {'band' if kind == 'std' else 'interval'}"
    return f"{what} ({span}" + ("; none at n = 1)" if ns[0] == 1 else ")")


def titled(ax: Axes, title: str, note: str, width: int = 56) -> None:
    """A panel title with the spread note (`spread_note`) on the line(s) under it, wrapped to
    about the width of a panel of the 'double' size."""
    note = textwrap.fill(note, width)
    ax.set_title(f"{title}\n{note}" if title else note)


def fill_std(ax: Axes, x, mean, std, n: int, color, alpha: float = 0.15, transform=None) -> bool:
    """The +-1 std band of a seed mean, only if it has n > 1 seeds; True if drawn."""
    if int(n) <= 1:
        return False
    y, s = np.asarray(mean, float), np.asarray(std, float)
    lo, hi = y - s, y + s
    if transform is not None:
        lo, hi = transform(lo), transform(hi)
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0)
    return True


def errorbars(ax: Axes, x, y, ci, n, fmt: str, color, label: str | None = None, **style) -> None:
    """Points (and line, as `fmt` says) at every x; a Student-t 95% CI bar only on points with
    n > 1 and a finite CI (a single seed gets a bare marker, never a zero-length bar)."""
    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    ci, n = np.atleast_1d(np.asarray(ci, float)), np.atleast_1d(np.asarray(n, float))
    ci, n = np.broadcast_to(ci, x.shape), np.broadcast_to(n, x.shape)
    ax.plot(x, y, fmt, color=color, label=label, **style)
    has = (n > 1) & np.isfinite(ci)
    if has.any():
        ax.errorbar(x[has], y[has], yerr=ci[has], fmt="none", ecolor=color, capsize=2,
                    **{k: v for k, v in style.items() if k in ("zorder", "alpha")})


def draw_arms(ax: Axes, mean: pd.DataFrame, columns: Sequence[str], x: str = "epoch",
              transform=None, band: bool = True, **line) -> list[int]:
    """One line (+-1 std band where n > 1) per arm of `mean` (from `seed_mean`), styled by
    optimizer; arms sharing an optimizer get lighter shades in the order of `columns`. Returns
    the n of every arm drawn, for `spread_note`."""
    arms = mean.drop_duplicates(["optim", *columns]).sort_values(["optim", *columns], kind="stable")
    ns = []
    for optim, same in arms.groupby("optim", sort=False):
        for i, (_, arm) in enumerate(same.iterrows()):
            sel = np.ones(len(mean), bool)
            for c in ["optim", *columns]:
                sel &= (mean[c] == arm[c]).to_numpy() | (mean[c].isna() & pd.isna(arm[c])).to_numpy()
            g = mean[sel].sort_values(x)
            y = g["mean"].to_numpy(float)
            color = _style.tint(optim, 1.0 - 0.55 * i / max(len(same) - 1, 1))
            n = int(g["n"].max())
            ns.append(n)
            ax.plot(g[x], transform(y) if transform is not None else y, color=color,
                    label=f"{arm_label(optim, arm, columns)}, n={n}", **line)
            if band:
                fill_std(ax, g[x], y, g["std"], n, color, transform=transform)
    return ns


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
        ns = draw_arms(ax, part, cols, transform=(transforms or {}).get(metric))
        ax.set(xlabel="epoch", ylabel=ylabels[j])
        titled(ax, task_name(task), spread_note(ns))
        if metric == "train_loss":
            ax.set_yscale("log")
    axes[0].legend()
    _style.title(fig, title, summary)
    return fig, axes


def load_sensitivity(results_dir: Path, artifact: str) -> pd.DataFrame:
    """Train-loss curves (panel 'curve') and final accuracy per group (panel 'final'): validation
    accuracy where the runs held out a validation split (protocol=val), else test accuracy
    (the paper's protocol, labelled as such by the plot)."""
    curves = read(results_dir, artifact, "curves.csv", ["train_loss"]).assign(panel="curve")
    final = read(results_dir, artifact, "summary.csv", ["final_val_acc"])
    if final.empty:
        final = read(results_dir, artifact, "summary.csv", ["final_test_acc"])
    return pd.concat([curves, final.assign(panel="final")], ignore_index=True)


def summarize_sensitivity(df: pd.DataFrame, key: str) -> pd.DataFrame:
    curves = seed_mean(df[df["panel"] == "curve"], ["scale", "task", "dataset", "optim", key])
    return pd.concat([curves.assign(panel="curve"), df[df["panel"] == "final"]], ignore_index=True)


def plot_sensitivity(summary: pd.DataFrame, key: str, xlabel: str, title: str):
    """Train loss per (optimizer, value of `key`), and final validation (or test) accuracy against `key`."""
    fig, (ax_a, ax_b) = _style.new_figure(2, "double")
    curves, final = summary[summary["panel"] == "curve"], summary[summary["panel"] == "final"]
    if curves.empty:
        no_data(ax_a, "train_loss")
    else:
        ns = draw_arms(ax_a, curves, [key], band=False, lw=0.9)
        ax_a.set(yscale="log", xlabel="epoch", ylabel="train loss")
        titled(ax_a, "(a) train loss", spread_note(ns, "mean"))
        ax_a.legend()
    for optim, g in final.groupby("optim", sort=True):
        g = g.sort_values(key)
        ns = _ns(g["n"])
        n = "n=0" if not ns else f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}"
        errorbars(ax_b, g[key], 100 * g["mean"], 100 * g["ci95"], g["n"], f"{_style.marker(optim)}-",
                  _style.color(optim), label=f"{_style.label(optim)}, {n}")
    split = "validation" if (final["metric"] == "final_val_acc").any() else "test"
    ax_b.set(xlabel=xlabel, ylabel=f"final {split} accuracy (%)")
    titled(ax_b, f"(b) final {split} accuracy", spread_note(final["n"], "ci"))
    if len(final):
        ax_b.legend()
    _style.title(fig, title, summary)
    return fig, np.array([ax_a, ax_b])


def draw_cell(ax: Axes, x: float, cell: pd.Series, optim: str, offset: float = 0.25,
              paper: bool = True, color=None) -> None:
    """One table cell (a row of collect's table.csv) at `x`: ours as mean +- t 95% CI (filled,
    only where a seed completed; the bar only where n > 1) and, if `paper`, the paper's mean +-
    std as printed (open diamond at x + offset, if given)."""
    color = color if color is not None else _style.color(optim)
    if cell["n"] > 0:
        errorbars(ax, x, cell["mean"], cell["ci95"], cell["n"], _style.marker(optim), color)
    if paper and pd.notna(cell["paper_value"]):
        ax.errorbar(x + offset, cell["paper_value"], yerr=np.nan_to_num(cell["paper_std"]), fmt="D",
                    mfc="white", color=color, capsize=2, ms=3)


def cells_note(cells: pd.DataFrame, paper: bool = True) -> str:
    """What the markers of `draw_cell` are, with the n of our cells."""
    ours = spread_note(cells["n"], "ci")
    return f"ours ●: {ours}" + ("; paper ◇: ± std as printed" if paper else "")


def draw_cells(ax: Axes, cells: pd.DataFrame, labels: Sequence[str], optims: Sequence[str], ylabel: str,
               colors: Sequence | None = None, paper: bool = True, title: str = "(b) final value per arm") -> None:
    """Table cells side by side (`draw_cell`), labelled and styled by `labels` and `optims`
    (colours from `colors` if given), the panel titled with what the bars are."""
    colors = list(colors) if colors is not None else [None] * len(labels)
    for i, ((_, cell), optim, color) in enumerate(zip(cells.iterrows(), optims, colors)):
        draw_cell(ax, i, cell, optim, paper=paper, color=color)
    ax.set_xticks(range(len(labels)), [t.replace("alpha", "α") for t in labels], rotation=30, ha="right")
    ax.set(ylabel=ylabel)
    titled(ax, title, cells_note(cells, paper))


GRID_ARM = ["optim.lookahead.k", "optim.lookahead.alpha"]


def load_grid(results_dir: Path, artifact: str, metric: str, column: str | None = None) -> pd.DataFrame:
    """A k/alpha grid: curves of `metric` (panel 'curve') and its table cells (panel 'table'),
    only those of `column` if given."""
    curves = read(results_dir, artifact, "curves.csv", [metric])
    table = pd.read_csv(Path(results_dir) / artifact / "table.csv")
    table = table if column is None else table[table["column"] == column]
    return pd.concat([curves.assign(panel="curve"), table.assign(panel="table")], ignore_index=True)


def grid_look(optim: str, k, alpha) -> tuple:
    """(colour, line style, marker) of a grid arm: the baseline (Lookahead off, k and alpha
    empty) in its optimizer's style, each (k, alpha) in its own colour (`_style.GRID_ARMS`)."""
    if pd.isna(k) or pd.isna(alpha) or not optim.startswith("lookahead"):
        return _style.color(optim), "-", _style.marker(optim)
    return _style.grid_arm(float(k), float(alpha))


def cell_arm(row: str, column: str) -> tuple[float, float]:
    """(k, alpha) of a k/alpha table cell from its labels ('k = 5', 'alpha = 0.8'), or NaNs for
    the baseline ('... (Lookahead off)' / column 'baseline')."""
    k = re.search(r"k = ([\d.]+)", f"{row} {column}")
    a = re.search(r"alpha = ([\d.]+)", f"{row} {column}")
    return (float(k.group(1)), float(a.group(1))) if k and a else (np.nan, np.nan)


def draw_grid_curves(ax: Axes, curves: pd.DataFrame) -> list[int]:
    """One line per grid arm (mean over seeds, no band), each (k, alpha) in its own colour;
    returns the arms' n."""
    cols = [c for c in GRID_ARM if c in curves]
    arms = curves.drop_duplicates(["optim", *cols]).sort_values(["optim", *cols], kind="stable")
    ns = []
    for _, arm in arms.iterrows():
        sel = np.ones(len(curves), bool)
        for c in ["optim", *cols]:
            sel &= (curves[c] == arm[c]).to_numpy() | (curves[c].isna() & pd.isna(arm[c])).to_numpy()
        g = curves[sel].sort_values("epoch")
        k, alpha = (arm.get(c, np.nan) for c in GRID_ARM)
        color, dash, _ = grid_look(arm["optim"], k, alpha)
        n = int(g["n"].max())
        ns.append(n)
        ax.plot(g["epoch"], g["mean"], dash, color=color, lw=0.9,
                label=f"{arm_label(arm['optim'], arm, cols)}, n={n}")
    return ns


def grid_figure(summary: pd.DataFrame, metric: str, ylabel: str):
    """(fig, ax_a, ax_b, table) of a k/alpha grid: panel (a) drawn, the curves of `metric` per
    arm (mean over seeds, a colour per (k, alpha)); panel (b) left to the caller with the table
    cells."""
    fig, (ax_a, ax_b) = _style.new_figure(2, "double")
    curves, table = summary[summary["panel"] == "curve"], summary[summary["panel"] == "table"]
    if curves.empty:
        no_data(ax_a, metric)
    else:
        ns = draw_grid_curves(ax_a, curves)
        ax_a.set(yscale="log", xlabel="epoch", ylabel=ylabel)
        titled(ax_a, "(a) " + ylabel, spread_note(ns, "mean"))
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
