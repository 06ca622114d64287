"""Fig. 10: test accuracy of the fast and the slow weights after every update in a window of 60
updates (Lookahead(SGD), k = 5, CIFAR-10, epoch 65 of 200 at paper scale).

Paper (Fig. 10 [V]): the fast weights lose accuracy inside each inner loop and the slow-weight
interpolation recovers it. Ours, from `make sweep-fig10_per_update collect`: the per-update
columns update_test_acc_fast and update_test_acc_slow, mean over seeds (+-1 std band where n > 1,
as the panel says, with n) against the
update index in the window; dotted lines mark the syncs (every k updates). Runs with
trainer.slow_bn = both add update_test_acc_slow_bn, the slow weights with BatchNorm statistics
re-estimated for them (flat between syncs, as the slow weights are).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style, _trained

ARTIFACT = "fig10_per_update"
SWEEP = "make sweep-fig10_per_update SCALE=cpu && make collect"
REQUIRES = ["fig10_per_update/curves.csv", "fig10_per_update/runs.csv"]
SERIES = {"update_test_acc_fast": ("fast weights", "-", "o"),
          "update_test_acc_slow": ("slow weights, BN statistics as trained", "--", "s"),
          "update_test_acc_slow_bn": ("slow weights, BN re-estimated", ":", "^")}


def load(results_dir: Path) -> pd.DataFrame:
    """The per-update rows of every run, with the run's k (from runs.csv)."""
    curves = _trained.read(results_dir, "fig10_per_update", "curves.csv", SERIES)
    runs = pd.read_csv(Path(results_dir) / REQUIRES[1])[["run", "optim.lookahead.k"]]
    return curves.merge(runs, on="run", how="left")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds at each update index u = step - s0 (s0: the step before the
    window); `offset` = s0 mod k places the syncs (steps divisible by k)."""
    s0 = df.groupby("run")["step"].transform("min") - 1
    df = df.assign(update=df["step"] - s0, offset=s0 % df["optim.lookahead.k"])
    return _trained.seed_mean(df, ["scale", "task", "dataset", "optim", "optim.lookahead.k", "offset"], x="update")


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Fast and slow accuracy against the update index; never saves."""
    fig, axes = _style.new_figure(1, "double")
    ax = axes[0]
    ns = []
    for metric, (name, dash, mark) in SERIES.items():
        g = summary[summary["metric"] == metric].sort_values("update")
        if g.empty:
            continue
        n = int(g["n"].max())
        ns.append(n)
        ax.plot(g["update"], 100 * g["mean"], dash, marker=mark, ms=2.5, color=_style.color("sgd")
                if metric.endswith("fast") else _style.color("lookahead_sgd"), label=f"{name}, n={n}")
        _trained.fill_std(ax, g["update"], 100 * g["mean"], 100 * g["std"], n, "grey", alpha=0.12)
    if len(summary) and summary["optim.lookahead.k"].notna().any():
        k, offset = int(summary["optim.lookahead.k"].iat[0]), int(summary["offset"].iat[0])
        for sync in range(k - offset, int(summary["update"].max()) + 1, k):
            ax.axvline(sync, color="grey", lw=0.5, ls=":")
    ax.set(xlabel="update in the window", ylabel="test accuracy (%)")
    _trained.titled(ax, "", _trained.spread_note(ns) + "; dotted lines: syncs")
    ax.legend()
    _style.title(fig, "Fig. 10: per-update test accuracy of fast and slow weights", summary)
    return fig, axes
