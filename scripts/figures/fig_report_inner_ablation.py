"""Reproduction report of Shen, Wu, Qiu and Chen ("Lookahead Optimizer 复现报告"),
§2.4: Lookahead (k = 5, alpha = 0.8) around SGD (lr 0.1), Adam (lr 1e-3) and RAdam
(lr 0.1), each beside its inner optimizer alone.

The report shows train loss and test accuracy curves on CIFAR-10 and CIFAR-100 (no numbers).
Ours, from `make sweep-report_inner_ablation collect`: the same two curves per dataset present, mean over
seeds with a +-1 std band (n in the legend); reported weights (slow for Lookahead).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import _trained

ARTIFACT = "report_inner_ablation"
SWEEP = "make sweep-report_inner_ablation SCALE=cpu && make collect"
REQUIRES = ["report_inner_ablation/curves.csv"]
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
                                   "Report §2.4: Lookahead around SGD, Adam and RAdam", transforms={"test_acc": lambda y: 100 * y})
