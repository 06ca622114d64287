"""The one place that decides how figures look: rcParams, sizes, colours, markers and labels.

Colours and markers are keyed by optimizer config name (`conf/optim/<name>.yaml`), never by
substrings of file names, so an optimizer looks the same in every figure. The palette is
Okabe-Ito (colour-blind safe). Figures are plain `matplotlib.figure.Figure` objects: no pyplot,
no global figure state, no interactive backend.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

RC = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.titlesize": 8, "lines.linewidth": 1.2,
    "lines.markersize": 4, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
    "axes.spines.right": False, "legend.frameon": False, "savefig.dpi": 150,
    "pdf.fonttype": 42, "text.usetex": False,
}
SIZES = {"single": (3.4, 2.6), "double": (7.0, 2.8), "triple": (10.0, 3.0)}

# name: (colour, marker, label)
OPTIMIZERS = {
    "sgd": ("#0072B2", "o", "SGD"),
    "lookahead_sgd": ("#D55E00", "s", "Lookahead (SGD)"),
    "polyak_sgd": ("#009E73", "^", "Polyak averaging (SGD)"),
    "adam": ("#CC79A7", "v", "Adam"),
    "lookahead_adam": ("#E69F00", "D", "Lookahead (Adam)"),
    "adamw": ("#56B4E9", "<", "AdamW"),
    "radam": ("#777777", ">", "RAdam"),
    "lookahead_radam": ("#000000", "P", "Lookahead (RAdam)"),
    "adafactor": ("#8C564B", "X", "Adafactor"),
    "momentum": ("#332288", "h", "Classical momentum"),
    "lookahead_momentum": ("#AA4499", "*", "Lookahead (momentum)"),
    # Lookahead's relatives (issue: Schedule-Free, EMA, SWA) and modern inner optimizers.
    "ema_sgd": ("#44AA99", "p", "EMA of the weights (SGD)"),
    "swa_sgd": ("#117733", "H", "SWA (SGD)"),
    "schedulefree_sgd": ("#882255", "d", "Schedule-Free SGD"),
    "lookahead_adamw": ("#E69F00", "8", "Lookahead (AdamW)"),
    "ema_adamw": ("#88CCEE", "p", "EMA of the weights (AdamW)"),
    "schedulefree_adamw": ("#AA4499", "d", "Schedule-Free AdamW"),
    "lion": ("#999933", "1", "Lion"),
    "lookahead_lion": ("#DDCC77", "2", "Lookahead (Lion)"),
}

# Lookahead's (k, alpha) grid arms (Table 5 / Fig. 9, the PTB k x alpha grid): four Okabe-Ito
# colours that differ in hue and are none of SGD's blue, line style by k as a second cue (solid
# k = 5, dashed k = 10), a marker each. (k, alpha): (colour, line style, marker)
GRID_ARMS = {
    (5, 0.5): ("#D55E00", "-", "s"),
    (5, 0.8): ("#E69F00", "-", "D"),
    (10, 0.5): ("#009E73", "--", "^"),
    (10, 0.8): ("#CC79A7", "--", "v"),
}


def grid_arm(k: float, alpha: float) -> tuple[str, str, str]:
    """(colour, line style, marker) of a Lookahead (k, alpha) grid arm; a pair outside the
    paper's grid gets the Lookahead colour, dotted."""
    for (gk, ga), look in GRID_ARMS.items():
        if np.isclose(gk, k) and np.isclose(ga, alpha):
            return look
    return color("lookahead_sgd"), ":", "P"


def apply() -> None:
    """Set the suite's rcParams (idempotent); called by `new_figure`."""
    mpl.rcParams.update(RC)


def _entry(name: str) -> tuple[str, str, str]:
    if name not in OPTIMIZERS:
        raise ValueError(f"no style for optimizer {name!r}; add it to OPTIMIZERS (known: "
                         f"{', '.join(OPTIMIZERS)})")
    return OPTIMIZERS[name]


def color(name: str) -> str:
    """Fixed colour of an optimizer config name."""
    return _entry(name)[0]


def marker(name: str) -> str:
    """Fixed marker of an optimizer config name."""
    return _entry(name)[1]


def label(name: str) -> str:
    """Legend label of an optimizer config name."""
    return _entry(name)[2]


def tint(name: str, t: float) -> tuple[float, float, float]:
    """An optimizer's colour blended with white: t = 0 is light, t = 1 the full colour (used to
    draw one hyperparameter value, such as alpha in (0, 1], per curve)."""
    base = np.array(to_rgb(color(name)))
    return tuple(float(c) for c in 1 - (0.25 + 0.75 * t) * (1 - base))


def new_figure(ncols: int = 1, size: str = "single") -> tuple[Figure, np.ndarray]:
    """A styled figure with one row of `ncols` axes (always returned as an array)."""
    apply()
    fig = Figure(figsize=SIZES[size], layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def provenance(df: pd.DataFrame) -> str:
    """'scale: ... | data: ...' from the `scale` and `dataset` (or `task`) columns of the data."""
    parts = []
    for title, columns in (("scale", ("scale",)), ("data", ("dataset", "task"))):
        # The first column that has values wins: `task` (wmt14) only names the data when
        # `dataset` (multi30k at cpu scale) is absent, so the two are never listed together.
        values = next((list(pd.unique(df[c].dropna().astype(str))) for c in columns
                       if c in df and df[c].notna().any()), [])
        parts.append(f"{title}: {', '.join(values) if values else 'unknown'}")
    return " | ".join(parts)


def title(fig: Figure, text: str, df: pd.DataFrame) -> None:
    """Figure title plus a second line stating the scale and data it was made from."""
    fig.suptitle(f"{text}\n{provenance(df)}")
