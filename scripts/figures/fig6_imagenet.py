"""Fig. 6 + Table 2: ImageNet ResNet-50 train loss and top-1 accuracy of SGD and Lookahead(SGD)
under the standard (dashed) and aggressive (solid) schedules.

Paper (§5.2, Fig. 6 [V]): training loss against epochs for both schedules, the aggressive one
(decays at epochs 30, 48, 58 of 60) marked *; Table 2 gives top-1/top-5 at epochs 50 and 60
(results/table2_imagenet/table.md). Ours, from `make sweep-table2_imagenet collect`: mean over
seeds with a +-1 std band where n > 1 (each panel says so, with n).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style, _trained

ARTIFACT = "fig6_imagenet"
SWEEP = "make sweep-table2_imagenet SCALE=paper && make collect"
REQUIRES = ["table2_imagenet/curves.csv"]
METRICS = {"train_loss": "train loss", "val_acc1": "top-1 validation accuracy"}
DASH = {"standard": "--", "aggressive": "-"}


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss and top-1 curves of every run."""
    df = _trained.read(results_dir, "table2_imagenet", "curves.csv", METRICS)
    # The option's name says the schedule and the scale (aggressive_paper): keep the schedule.
    return df.assign(schedule=df["imagenet_schedule"].str.split("_").str[0])


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (optimizer, schedule, epoch)."""
    return _trained.seed_mean(df, ["scale", "task", "dataset", "optim", "schedule"])


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Two panels: train loss and top-1 accuracy against epochs; never saves."""
    fig, axes = _style.new_figure(len(METRICS), "double")
    for ax, (metric, name) in zip(axes, METRICS.items()):
        part = summary[summary["metric"] == metric]
        if part.empty:
            _trained.no_data(ax, metric)
            continue
        ns = []
        for (optim, schedule), g in part.groupby(["optim", "schedule"], sort=True):
            g = g.sort_values("epoch")
            star = "*" if schedule == "aggressive" else ""
            n = int(g["n"].max())
            ns.append(n)
            ax.plot(g["epoch"], g["mean"], DASH.get(schedule, ":"), color=_style.color(optim),
                    label=f"{_style.label(optim)}{star}, n={n}")
            _trained.fill_std(ax, g["epoch"], g["mean"], g["std"], n, _style.color(optim), alpha=0.12)
        ax.set(xlabel="epoch", ylabel=name, yscale="log" if metric == "train_loss" else "linear")
        _trained.titled(ax, name, _trained.spread_note(ns))
    axes[0].legend()
    _style.title(fig, "Fig. 6: ImageNet, SGD vs Lookahead; * = aggressive schedule", summary)
    return fig, axes
