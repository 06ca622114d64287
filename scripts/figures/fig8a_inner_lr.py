"""Fig. 8a: CIFAR-10 train loss of SGD and Lookahead(SGD) (k = 5, alpha = 0.5) at inner learning
rates 0.1, 0.2 and 0.3.

Paper (Fig. 8a [V]): with the Lookahead parameters fixed, the train loss is lower and less noisy
than SGD's at every inner learning rate. Ours, from `make sweep-fig8_inner_lr collect`: train loss
per epoch (mean over seeds; darker = smaller lr) and final validation accuracy (test accuracy for
paper-protocol records) against the lr (mean +- Student-t 95% CI over seeds; a single seed is a
bare marker, and the panel says which, with n). SGD is the same inner optimizer with Lookahead off.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import _trained

ARTIFACT = "fig8a_inner_lr"
SWEEP = "make sweep-fig8_inner_lr SCALE=cpu && make collect"
REQUIRES = ["fig8_inner_lr/curves.csv", "fig8_inner_lr/summary.csv"]
KEY = "optim.lr"


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss curves and final validation accuracy (test for paper-protocol records) of the sweep."""
    return _trained.load_sensitivity(results_dir, "fig8_inner_lr")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Seed means of the curves per (optimizer, lr); the summary rows as they are."""
    return _trained.summarize_sensitivity(df, KEY)


def plot(summary: pd.DataFrame):
    """Curves and final accuracy against the inner lr; returns (fig, axes), never saves."""
    return _trained.plot_sensitivity(summary, KEY, "inner learning rate",
                                     "Fig. 8a: CIFAR-10, SGD vs Lookahead across inner learning rates")
