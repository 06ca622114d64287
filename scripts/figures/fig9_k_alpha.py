"""Fig. 9 + Table 5: CIFAR-100 train loss and final test accuracy of Lookahead(SGD) over
k in {5, 10} x alpha in {0.5, 0.8}, beside SGD (the same inner optimizer with Lookahead off).

Paper (Fig. 9, Table 5 [V]): every (k, alpha) ends above SGD (77.72%) and within about 0.3 pp
of each other. Ours, from `make sweep-table5_k_alpha collect`: (a) train loss per epoch (mean
over seeds); (b) final test accuracy per arm, mean +- 95% CI over seeds (filled) beside the
paper's mean +- std (open diamonds). The table itself is results/table5_k_alpha/table.md.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from . import _style, _trained

ARTIFACT = "fig9_k_alpha"
SWEEP = "make sweep-table5_k_alpha SCALE=cpu && make collect"
REQUIRES = ["table5_k_alpha/curves.csv", "table5_k_alpha/table.csv"]


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss curves (panel 'curve') and the Table 5 cells (panel 'table')."""
    return _trained.load_grid(results_dir, "table5_k_alpha", "train_loss")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Seed means of the curves per arm; the table cells as they are."""
    return pd.concat(_trained.summarize_grid(df), ignore_index=True)


def plot(summary: pd.DataFrame) -> tuple[mpl.figure.Figure, np.ndarray]:
    """Curves per arm, then final accuracy per arm with the paper's values; never saves."""
    fig, ax_a, ax_b, table = _trained.grid_figure(summary, "train_loss", "train loss")
    labels = [f"{r}, {c}" if c != "baseline" else r for r, c in zip(table["row"], table["column"])]
    optims = ["sgd" if c == "baseline" else "lookahead_sgd" for c in table["column"]]
    _trained.draw_cells(ax_b, table, labels, optims, "final test accuracy (%)")
    _style.title(fig, "Fig. 9 / Table 5 (paper: CIFAR-100): Lookahead(SGD) over k and α", summary)
    return fig, np.array([ax_a, ax_b])
