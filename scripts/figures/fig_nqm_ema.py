"""The NQM: an EMA of SGD's iterates vs Lookahead(SGD) at an equal averaging horizon.

(a) stationary E[L] minus the noise floor against the learning rate at momentum 0, exact
(lines) and trained replicas (points, mean +- 2 standard errors), for SGD and, at each alpha
that was trained, Lookahead(SGD, k) and the EMA at the decay of equal mean age of the averaged
iterates; (b) that excess as a fraction of SGD's at the same learning rate, momentum 0 and 0.9.
From `nqm_ema/table.csv` (`make nqm-ema`, scripts/nqm_ema.py: closed-form stationary values and
simulated replicas; no trained network). Not a figure of the paper: it extends its Section 3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import _style

ARTIFACT = "nqm_ema"
SWEEP = "make nqm-ema"
REQUIRES = ["nqm_ema/table.csv"]


def load(results_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(results_dir) / REQUIRES[0])


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """The table is already one row per (method, alpha, horizon, lr, momentum)."""
    return df


def plot(df: pd.DataFrame):
    """(a) stationary E[L] minus the noise floor against lr at momentum 0, one line per method
    and alpha, trained replicas as points with 2 se; (b) that excess as a fraction of SGD's at
    the same lr, momentum 0 (lines) and 0.9 (dotted, with points)."""
    fig, (ax_a, ax_b) = _style.new_figure(2, "double")
    k = int(df["k"].dropna().iloc[0])
    floor = float((df["analytic"] - df["excess"]).iloc[0])

    def draw(ax, g, color, ls, mk, label):
        ax.plot(g["lr"], g["excess"], color=color, ls=ls, label=label)
        t = g[g["trained"].notna()]
        ax.errorbar(t["lr"], t["trained"] - floor, yerr=2 * t["se"], fmt=mk, color=color, ms=3,
                    capsize=2, ls="none")

    # The alphas with trained replicas (all of them when none were trained).
    shown = sorted(df.loc[df["trained"].notna() & df["alpha"].notna(), "alpha"].unique()) \
        or sorted(df["alpha"].dropna().unique())
    for momentum in (0.0, 0.9):
        cut = df[df["momentum"] == momentum].sort_values("lr")
        if momentum == 0.0:
            draw(ax_a, cut[cut["method"] == "sgd"], _style.color("sgd"), "--", _style.marker("sgd"),
                 "SGD")
        for i, alpha in enumerate(shown):
            shade = 0.35 + 0.65 * i / max(len(shown) - 1, 1)
            pick = cut["alpha"].notna() & np.isclose(cut["alpha"].fillna(-1.0), alpha)
            la = cut[pick & (cut["method"] == "lookahead_sgd")]
            em = cut[pick & (cut["method"] == "ema_sgd") & (cut["horizon"] == "mean_age")]
            la_color, em_color = _style.tint("lookahead_sgd", shade), _style.tint("ema_sgd", shade)
            if momentum == 0.0:
                draw(ax_a, la, la_color, "-", _style.marker("lookahead_sgd"),
                     f"Lookahead α={alpha:g}")
                draw(ax_a, em, em_color, "-.", _style.marker("ema_sgd"),
                     f"EMA decay={float(em['decay'].iloc[0]):.3g}")
                ax_b.plot(la["lr"], la["excess_ratio"], color=la_color, ls="-")
                ax_b.plot(em["lr"], em["excess_ratio"], color=em_color, ls="-.")
            else:
                ax_b.plot(la["lr"], la["excess_ratio"], color=la_color, ls=":", marker="o", ms=3)
                ax_b.plot(em["lr"], em["excess_ratio"], color=em_color, ls=":", marker="^", ms=3)
    ax_a.set(xscale="log", yscale="log", xlabel="learning rate",
             ylabel=f"stationary E[L] − noise floor ({floor:.4f})",
             title="(a) momentum 0: exact (lines);\ntrained replicas: mean ± 2 se (points)")
    ax_b.set(xscale="log", yscale="log", xlabel="learning rate",
             ylabel="excess loss / SGD's excess",
             title="(b) relative to SGD at the same lr; colours as in (a)\n"
                   "momentum 0 (lines), momentum 0.9 (dotted, points)")
    fig.set_figheight(fig.get_figheight() + 0.6)
    fig.legend(*ax_a.get_legend_handles_labels(), loc="outside lower center", ncols=4)
    _style.title(fig, f"NQM: EMA of SGD's iterates vs Lookahead(SGD, k = {k}), the EMA at the "
                 "same mean age of the averaged iterates", df)
    return fig, np.array([ax_a, ax_b])
