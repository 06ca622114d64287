"""Fig. 7b: Transformer training loss against steps for Adam with warmup, Adafactor, and
Lookahead(Adam) with and without warmup.

Paper (§5.4, Fig. 7b [V]): training loss over 50k inner (fast-weight) steps; Lookahead + Adam
without warmup trains as fast early on as Adam with warmup. Ours, from `make sweep-fig7b_wmt
collect`: mean over seeds (+-1 std band) against optimizer steps, and test BLEU per evaluation.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style, _trained

ARTIFACT = "fig7b_wmt"
SWEEP = "make sweep-fig7b_wmt SCALE=cpu && make collect"
REQUIRES = ["fig7b_wmt/curves.csv"]
METRICS = {"train_loss": "train loss", "test_bleu": "test BLEU"}
ARMS = {"adam_warmup": ("adam", "-", "Adam + warmup"), "adafactor_warmup": ("adafactor", "-", "Adafactor + warmup"),
        "lookahead_adam_warmup": ("lookahead_adam", "-", "Lookahead + Adam + warmup"),
        "lookahead_adam_nowarmup": ("lookahead_adam", "--", "Lookahead + Adam, no warmup"),
        "adam_nowarmup": ("adam", "--", "Adam, no warmup (control)")}


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss and BLEU curves of every run."""
    return _trained.read(results_dir, "fig7b_wmt", "curves.csv", METRICS)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per arm and step."""
    return _trained.seed_mean(df, ["scale", "task", "dataset", "optim", "wmt_arm"], x="step")


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Train loss and test BLEU against optimizer steps; never saves."""
    fig, axes = _style.new_figure(len(METRICS), "double")
    for ax, (metric, name) in zip(axes, METRICS.items()):
        part = summary[summary["metric"] == metric]
        if part.empty:
            _trained.no_data(ax, metric)
            continue
        for arm, g in part.groupby("wmt_arm", sort=True):
            optim, dash, label = ARMS.get(arm, (g["optim"].iat[0], ":", arm))
            g = g.sort_values("step")
            ax.plot(g["step"], g["mean"], dash, color=_style.color(optim), label=f"{label}, n={int(g['n'].max())}")
            ax.fill_between(g["step"], g["mean"] - g["std"], g["mean"] + g["std"], color=_style.color(optim),
                            alpha=0.12, lw=0)
        ax.set(xlabel="optimizer (fast-weight) step", ylabel=name, yscale="log" if metric == "train_loss" else "linear")
    axes[0].legend()
    _style.title(fig, "Fig. 7b: Transformer, Lookahead(Adam) with and without warmup", summary)
    return fig, axes
