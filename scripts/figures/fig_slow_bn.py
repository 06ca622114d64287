"""Slow-weight evaluation with and without BatchNorm re-estimation (Lookahead(SGD), CIFAR-10).

BatchNorm running statistics track the fast weights theta during training; the slow weights phi
that Lookahead reports are evaluated either with those statistics as they are ("kept") or with
statistics re-estimated for phi on a few training batches. Ours, from `make
sweep-slow_bn_cifar collect`: (a) test accuracy per epoch of theta, phi with kept statistics and
phi with re-estimated statistics, mean over seeds (+-1 std band where n > 1, as the panel says,
with n); (b) the gain of re-estimation,
re-estimated minus kept, per seed (thin) and its mean (thick). The paper does not report this.
The table is results/slow_bn_cifar/table.md.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style, _trained

ARTIFACT = "fig_slow_bn"
SWEEP = "make sweep-slow_bn_cifar SCALE=cpu && make collect"
REQUIRES = ["slow_bn_cifar/curves.csv"]
# metric: (label, colour tint of Lookahead(SGD), line style)
SERIES = {"test_acc_fast": ("fast weights", 0.35, ":"),
          "test_acc_slow": ("slow weights, BN statistics kept", 0.65, "--"),
          "test_acc_slow_bn": ("slow weights, BN re-estimated", 1.0, "-")}


def load(results_dir: Path) -> pd.DataFrame:
    """The three test-accuracy curves of every run."""
    return _trained.read(results_dir, "slow_bn_cifar", "curves.csv", SERIES)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per series and epoch (panel 'curve'), and per run the gain
    test_acc_slow_bn - test_acc_slow at each epoch (panel 'gain', metric 'gain')."""
    curves = _trained.seed_mean(df, ["scale", "task", "dataset", "optim"]).assign(panel="curve")
    wide = df.pivot_table(index=["run", "epoch"], columns="metric", values="value")  # the title reads the curves
    gain = (wide["test_acc_slow_bn"] - wide["test_acc_slow"]) if {"test_acc_slow_bn", "test_acc_slow"} <= set(wide) \
        else pd.Series(dtype=float)
    gain = gain.dropna().rename("value").reset_index().assign(metric="gain", panel="gain")
    return pd.concat([curves, gain], ignore_index=True)


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Accuracy curves of the three evaluations, then the gain of re-estimation; never saves."""
    fig, (ax_a, ax_b) = _style.new_figure(2, "double")
    curves, gain = summary[summary["panel"] == "curve"], summary[summary["panel"] == "gain"]
    ns = []
    for metric, (name, shade, dash) in SERIES.items():
        g = curves[curves["metric"] == metric].sort_values("epoch")
        if g.empty:
            continue
        colour = _style.tint("lookahead_sgd", shade)
        n = int(g["n"].max())
        ns.append(n)
        ax_a.plot(g["epoch"], 100 * g["mean"], dash, color=colour, label=f"{name}, n={n}")
        _trained.fill_std(ax_a, g["epoch"], 100 * g["mean"], 100 * g["std"], n, colour)
    if curves.empty:
        _trained.no_data(ax_a, "test_acc_slow_bn")
    else:
        ax_a.set(xlabel="epoch", ylabel="test accuracy (%)")
        _trained.titled(ax_a, "(a) test accuracy", _trained.spread_note(ns))
        ax_a.legend()
    if gain.empty:
        _trained.no_data(ax_b, "test_acc_slow_bn")
    else:
        colour = _style.color("lookahead_sgd")
        for _, g in gain.groupby("run"):
            ax_b.plot(g["epoch"], 100 * g["value"], color=colour, lw=0.6, alpha=0.5)
        mean = gain.groupby("epoch")["value"].mean()
        seeds = gain["run"].nunique()
        ax_b.plot(mean.index, 100 * mean.to_numpy(), color=colour, lw=1.6, label=f"mean over seeds, n={seeds}")
        ax_b.axhline(0.0, color="0.5", lw=0.6)
        ax_b.set(xlabel="epoch", ylabel="re-estimated - kept (pp)", title="(b) gain of BN re-estimation\nthin: each seed; thick: their mean")
        ax_b.legend()
    _style.title(fig, "Lookahead(SGD) slow weights: BatchNorm statistics kept vs re-estimated", summary)
    return fig, np.array([ax_a, ax_b])
