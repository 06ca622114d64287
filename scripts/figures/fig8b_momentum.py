"""Fig. 8b: CIFAR-10 train loss of SGD and Lookahead(SGD) (k = 5, alpha = 0.5) at inner momentum
0.9, 0.95 and 0.98 (lr 0.1).

Paper (Fig. 8b [V]): with the Lookahead parameters fixed, the train loss is lower and less noisy
than SGD's at every momentum. Ours, from `make sweep-fig8_momentum collect`: train loss per epoch
(mean over seeds; darker = smaller momentum) and final validation accuracy (test accuracy for
paper-protocol records) against it (mean +- Student-t 95% CI over seeds; a single seed is a bare
marker, and the panel says which, with n). SGD is the same inner optimizer with Lookahead off.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import _trained

ARTIFACT = "fig8b_momentum"
SWEEP = "make sweep-fig8_momentum SCALE=cpu && make collect"
REQUIRES = ["fig8_momentum/curves.csv", "fig8_momentum/summary.csv"]
KEY = "optim.momentum"


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss curves and final validation accuracy (test for paper-protocol records) of the sweep."""
    return _trained.load_sensitivity(results_dir, "fig8_momentum")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Seed means of the curves per (optimizer, momentum); the summary rows as they are."""
    return _trained.summarize_sensitivity(df, KEY)


def plot(summary: pd.DataFrame):
    """Curves and final accuracy against the momentum; returns (fig, axes), never saves."""
    return _trained.plot_sensitivity(summary, KEY, "inner momentum",
                                     "Fig. 8b: CIFAR-10, SGD vs Lookahead across inner momentum")
