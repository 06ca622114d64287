"""Fig. 5 + Table 1: CIFAR-10/100 train loss of SGD, Polyak, Adam, AdamW and Lookahead(SGD),
and final test accuracy beside the paper's Table 1.

Paper (§5.1, Fig. 5 [V]): training loss curves (Lookahead and Polyak wrap SGD) and the final
validation accuracy table. Ours, from `make sweep-table1_cifar collect`: train loss per epoch
(mean over seeds, +-1 std band where n > 1), then the final test accuracy of each optimizer
(reported weights: slow for Lookahead, averaged for Polyak) as mean +- Student-t 95% CI over
seeds (no bar where n = 1), with the paper's mean +- std as printed as open diamonds. Each panel
says what its bands or bars are, with n. The table itself is results/table1_cifar/table.md.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style, _trained

ARTIFACT = "fig5_cifar"
SWEEP = "make sweep-table1_cifar SCALE=cpu && make collect"
REQUIRES = ["table1_cifar/curves.csv", "table1_cifar/table.csv"]
OPTIMS = ("sgd", "polyak_sgd", "adam", "adamw", "lookahead_sgd")
ROWS = {"SGD": "sgd", "Polyak": "polyak_sgd", "Adam": "adam", "AdamW": "adamw", "Lookahead": "lookahead_sgd"}
COLUMNS = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100"}


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss curves (panel 'curve') and the Table 1 cells (panel 'table')."""
    curves = _trained.read(results_dir, "table1_cifar", "curves.csv", ["train_loss"])
    table = pd.read_csv(Path(results_dir) / REQUIRES[1])
    table = table.assign(optim=table["row"].map(ROWS), task=table["column"].map(COLUMNS))
    return pd.concat([curves.assign(panel="curve"), table.assign(panel="table")], ignore_index=True)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Seed means of the curves; the table cells as they are (already over seeds)."""
    curves = _trained.seed_mean(df[df["panel"] == "curve"], ["scale", "task", "dataset", "optim"])
    return pd.concat([curves.assign(panel="curve"), df[df["panel"] == "table"]], ignore_index=True)


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Train loss per task, then final test accuracy with the paper's values; never saves."""
    curves, table = summary[summary["panel"] == "curve"], summary[summary["panel"] == "table"]
    tasks = sorted(set(curves["task"].dropna()) | set(table.loc[table["n"] > 0, "task"].dropna()))
    fig, axes = _style.new_figure(len(tasks) + 1, "triple")
    for ax, task in zip(axes, tasks):
        part = curves[curves["task"] == task]
        if part.empty:
            _trained.no_data(ax, task)
            continue
        ns = _trained.draw_arms(ax, part, [])
        ax.set(yscale="log", xlabel="epoch", ylabel="train loss")
        _trained.titled(ax, f"{_trained.task_name(task)} train loss", _trained.spread_note(ns))
    ax = axes[-1]
    for i, task in enumerate(tasks):
        for j, optim in enumerate(OPTIMS):
            cell = table[(table["task"] == task) & (table["optim"] == optim)]
            x = i * (len(OPTIMS) + 1) + j
            for _, c in cell.iterrows():
                _trained.draw_cell(ax, x, c, optim, offset=0.3)
    # One tick per optimizer (the paper's Adam has no run of ours, so the curves' legend
    # cannot name every marker); the datasets, left to right, name the groups.
    names = {optim: row for row, optim in ROWS.items()}
    ticks = [(i * (len(OPTIMS) + 1) + j, names[optim]) for i in range(len(tasks)) for j, optim in enumerate(OPTIMS)]
    ax.set_xticks([x for x, _ in ticks], [label for _, label in ticks], rotation=45, ha="right")
    ax.set(ylabel="final test accuracy (%)", xlabel=" | ".join(_trained.task_name(t) for t in tasks))
    shown = table[table["task"].isin(tasks) & table["optim"].isin(OPTIMS)]
    _trained.titled(ax, "final test accuracy", _trained.cells_note(shown))
    axes[0].legend()
    _style.title(fig, "Fig. 5 / Table 1: CIFAR, Lookahead vs SGD, Polyak, Adam, AdamW", summary)
    return fig, axes
