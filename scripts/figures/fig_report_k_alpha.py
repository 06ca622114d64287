"""Reproduction report of Shen, Wu, Qiu and Chen ("Lookahead Optimizer 复现报告"),
§2.2: Lookahead(RAdam) with (k, alpha) = (5, 0.8), (10, 0.8), (5, 0.5) beside RAdam alone
(the same inner optimizer with Lookahead off).

The report shows train loss and test accuracy curves on CIFAR-10 and CIFAR-100 (no numbers).
Ours, from `make sweep-report_k_alpha collect`: the same two curves per dataset present, mean over
seeds with a +-1 std band (n in the legend); reported weights (slow for Lookahead).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import _trained

ARTIFACT = "report_k_alpha"
SWEEP = "make sweep-report_k_alpha SCALE=cpu && make collect"
REQUIRES = ["report_k_alpha/curves.csv"]
METRICS = ("train_loss", "test_acc")


def load(results_dir: Path) -> pd.DataFrame:
    """Train-loss and test-accuracy curves of every run."""
    return _trained.read(results_dir, ARTIFACT, "curves.csv", METRICS)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per arm (optimizer and the grid values that vary) and epoch."""
    return _trained.seed_mean(df, ["scale", "task", "dataset", "optim", *_trained.arm_columns(df)])


def plot(summary: pd.DataFrame):
    """Train loss and test accuracy (%) per dataset; returns (fig, axes), never saves."""
    return _trained.curves_by_task(summary, METRICS, ("train loss", "test accuracy (%)"),
                                   "Report §2.2: Lookahead(RAdam) over (k, α)", transforms={"test_acc": lambda y: 100 * y})
