"""Fig. 3: convergence rate of classical momentum vs Lookahead around it on a quadratic, analytic.

Paper (as we recall it; not verified against the PDF): quadratic convergence rates 1 - rho of
classical momentum with and without Lookahead (k = 20, alpha = 0.5) against the learning rate;
Lookahead is said to help in the under-damped regime. We draw 1 - rho per inner step against
the learning rate for each momentum, on two spectra of the same condition number (from
results/fig3_quadratic_rate/theory.csv, `make nqm-theory`): eigenvalues exactly {1/kappa, 1}
(left) and every eigenvalue in [1/kappa, 1] (right, the worst case). Divergent settings
(rho >= 1) are left out. The paper's condition number and grids are unknown to us.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style

ARTIFACT = "fig3_quadratic_rate"
SWEEP = "make nqm-theory"
REQUIRES = ["fig3_quadratic_rate/theory.csv"]
SPECTRA = {"extremes": "eigenvalues {1/κ, 1}", "interval": "eigenvalues filling [1/κ, 1]"}
DASHES = ["-", "--", ":", "-."]  # one per momentum value, in increasing order


def load(results_dir: Path) -> pd.DataFrame:
    """The analytic rate table, one row per (method, momentum, spectrum, lr)."""
    return pd.read_csv(Path(results_dir) / REQUIRES[0])


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Keep converging settings (1 - rho > 0), ordered for drawing; analytic, so no seeds."""
    keys = ["spectrum", "momentum", "method", "lr"]
    return df[df["rate"] > 0].sort_values(keys, kind="stable").reset_index(drop=True)


def label(method: str, momentum: float, k: float, alpha: float) -> str:
    """Legend entry, e.g. 'Lookahead (momentum) β=0.9, k=20, α=0.5'."""
    text = f"{_style.label(method)} β={momentum:g}"
    return text if np.isnan(k) else f"{text}, k={k:g}, α={alpha:g}"


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """One panel per spectrum; colour per method, line style per momentum. Never saves."""
    spectra = [s for s in SPECTRA if s in set(summary["spectrum"])]
    fig, axes = _style.new_figure(len(spectra), "double")
    dash = dict(zip(sorted(summary["momentum"].unique()), DASHES))
    for ax, spectrum in zip(axes, spectra):
        rows = summary[summary["spectrum"] == spectrum]
        groups = rows.groupby(["method", "momentum", "k", "alpha"], dropna=False, sort=False)
        for (method, momentum, k, alpha), g in groups:
            ax.plot(g["lr"], g["rate"], color=_style.color(method), ls=dash[momentum],
                    label=label(method, momentum, k, alpha))
        kappa = ", ".join(f"{v:g}" for v in rows["kappa"].unique())
        ax.set(xscale="log", yscale="log", xlabel="learning rate γ",
               ylabel="rate 1 − ρ per inner step",
               title=f"κ = {kappa}, {SPECTRA[spectrum]}")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2)
    _style.title(fig, "Fig. 3: classical momentum with and without Lookahead, deterministic "
                 "quadratic", summary)
    return fig, axes
