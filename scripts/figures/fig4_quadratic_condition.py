"""Fig. 4: convergence rate against the condition number, momentum vs Lookahead, analytic.

Paper (as we recall it; not verified against the PDF): a further comparison of quadratic
convergence rates of classical momentum with and without Lookahead across condition numbers.
We draw 1 - rho per inner step at each method's best learning rate (the grid is documented in
scripts/nqm_theory.py) against kappa, on eigenvalues exactly {1/kappa, 1} (left) and on every
eigenvalue in [1/kappa, 1] (right), from results/fig4_quadratic_condition/theory.csv
(`make nqm-theory`). The paper's grids are unknown to us.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style
from .fig3_quadratic_rate import DASHES, SPECTRA, label

ARTIFACT = "fig4_quadratic_condition"
SWEEP = "make nqm-theory"
REQUIRES = ["fig4_quadratic_condition/theory.csv"]


def load(results_dir: Path) -> pd.DataFrame:
    """The analytic table, one row per (method, momentum, spectrum, kappa) at its best lr."""
    return pd.read_csv(Path(results_dir) / REQUIRES[0])


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Keep converging settings (1 - rho > 0), ordered for drawing; analytic, so no seeds."""
    keys = ["spectrum", "momentum", "method", "kappa"]
    return df[df["rate"] > 0].sort_values(keys, kind="stable").reset_index(drop=True)


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """One panel per spectrum; colour per method, line style per momentum. Never saves."""
    spectra = [s for s in SPECTRA if s in set(summary["spectrum"])]
    fig, axes = _style.new_figure(len(spectra), "double")
    dash = dict(zip(sorted(summary["momentum"].unique()), DASHES))
    for ax, spectrum in zip(axes, spectra):
        rows = summary[summary["spectrum"] == spectrum]
        groups = rows.groupby(["method", "momentum", "k", "alpha"], dropna=False, sort=False)
        for (method, momentum, k, alpha), g in groups:
            ax.plot(g["kappa"], g["rate"], color=_style.color(method), ls=dash[momentum],
                    marker=_style.marker(method), ms=3, label=label(method, momentum, k, alpha))
        ax.set(xscale="log", yscale="log", xlabel="condition number κ",
               ylabel="best 1 − ρ per inner step", title=SPECTRA[spectrum])
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2)
    _style.title(fig, "Fig. 4: convergence rate against condition number, tuned learning rate",
                 summary)
    return fig, axes
