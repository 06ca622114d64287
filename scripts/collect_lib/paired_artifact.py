"""Paired tables for artifacts that compare two values of one key on the same seeds.

An entry of :data:`PAIRED` names the key, the baseline value and the arm value; for every metric
listed, ``paired.csv`` holds the per-seed difference arm - baseline over the seeds where both
runs are results, with its Student-t and bootstrap 95% intervals (``paired.py``), and
``paired.md`` renders it with n beside every interval. Diverged runs enter with their metrics
(NaN where none: the seed drops out of that metric's comparison).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import pandas as pd

from .paired import paired_difference


@dataclass(frozen=True)
class PairedSpec:
    key: str
    baseline: str
    arm: str
    metrics: Tuple[str, ...]
    title: str


PAIRED: Dict[str, PairedSpec] = {
    "bf16_parity": PairedSpec(
        "trainer.precision", "fp32", "bf16", ("final_test_acc", "final_test_loss", "final_train_loss", "time_s"),
        "Precision parity: the Table 1 CIFAR-10 cpu protocol's SGD arm in bf16 autocast minus fp32, paired by seed"),
}


def paired_table(spec: PairedSpec, runs_df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    if spec.key not in runs_df:
        return pd.DataFrame(columns=["metric", "n"])
    for metric in spec.metrics:
        if metric not in runs_df:
            continue

        def by_seed(value: str) -> Dict[int, float]:
            part = runs_df[runs_df[spec.key].astype(str) == value]
            return {int(s): float(v) for s, v in zip(part["seed"], pd.to_numeric(part[metric], errors="coerce"))}

        rows.append({"metric": metric, "arm": spec.arm, "baseline": spec.baseline,
                     **paired_difference(by_seed(spec.arm), by_seed(spec.baseline))})
    return pd.DataFrame(rows)


def render(spec: PairedSpec, table: pd.DataFrame, provenance: str) -> str:
    lines = [f"# {spec.title}", "",
             f"Per-seed difference {spec.arm} - {spec.baseline} of `{spec.key}`; 95% intervals of its mean "
             "(Student-t; bootstrap BCa). A difference is supported only when both exclude zero.", "",
             f"| metric | n | {spec.baseline} mean | {spec.arm} mean | mean difference | t 95% | bootstrap 95% | supported |",
             "|---|---|---|---|---|---|---|---|"]

    def f(v: float) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"

    for _, r in table.iterrows():
        lines.append(f"| {r['metric']} | {r['n']} | {f(r['baseline_mean'])} | {f(r['arm_mean'])} | "
                     f"{f(r['mean_diff'])} | [{f(r['t_low'])}, {f(r['t_high'])}] | "
                     f"[{f(r['boot_low'])}, {f(r['boot_high'])}] | {'yes' if r['supported'] else 'no'} |")
    return "\n".join(lines + ["", f"Provenance: {provenance}.", ""])
