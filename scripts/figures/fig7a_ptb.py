"""Fig. 7a: Penn Treebank training perplexity of SGD, Lookahead(SGD), Adam and Lookahead(Adam).

Paper (§5.3, Fig. 7a [V]): training perplexity against epochs; LA(Adam) ends lowest, SGD and
LA(SGD) close together. Ours, from `make sweep-table3_ptb collect`: train perplexity =
exp(train loss) of each logging window, mean over seeds (exp of the mean loss) with a band of
exp(mean +- std) where n > 1; validation perplexity (mean +- 1 std) on the right. Each panel
says what its bands are, with n. The table is results/table3_ptb/table.md.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style, _trained

ARTIFACT = "fig7a_ptb"
SWEEP = "make sweep-table3_ptb SCALE=cpu && make collect"
REQUIRES = ["table3_ptb/curves.csv"]
METRICS = {"train_loss": "train perplexity", "val_ppl": "validation perplexity"}


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss and validation-perplexity curves of every run."""
    return _trained.read(results_dir, "table3_ptb", "curves.csv", METRICS)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per optimizer and epoch."""
    return _trained.seed_mean(df, ["scale", "task", "dataset", "optim"])


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Train perplexity (exp of the loss) and validation perplexity; never saves."""
    fig, axes = _style.new_figure(len(METRICS), "double")
    for ax, (metric, name) in zip(axes, METRICS.items()):
        part = summary[summary["metric"] == metric]
        if part.empty:
            _trained.no_data(ax, metric)
            continue
        ns = _trained.draw_arms(ax, part, _trained.arm_columns(part),
                                transform=np.exp if metric == "train_loss" else None)
        ax.set(xlabel="epoch", ylabel=name, yscale="log")
        note = _trained.spread_note(ns)
        _trained.titled(ax, name, note.replace("±1 std", "exp(mean ± 1 std) of the loss")
                        if metric == "train_loss" else note)
    axes[0].legend()
    _style.title(fig, "Fig. 7a: Penn Treebank LSTM, Lookahead around SGD and Adam", summary)
    return fig, axes
