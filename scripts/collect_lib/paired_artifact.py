"""Paired tables for artifacts whose arms differ in one key and share their seeds.

An entry of :data:`PAIRED` names the comparisons (key, baseline value, arm value) and the metrics;
for each comparison and metric ``paired.csv`` holds the per-seed difference arm - baseline over the
seeds where both runs are results, with its Student-t and bootstrap 95% intervals (``paired.py``),
and ``paired.md`` renders it with n beside every interval. Diverged runs enter with their metrics
(NaN where none: the seed drops out of that metric's comparison). A seed only one arm has (an arm
run once, a control) drops out too, so n says how many pairs a difference rests on.

These are the paper-hyperparameter artifacts, untuned at the scale that ran: a supported difference
says what those settings do here, not which optimizer is better (the studies of conf/tune/ do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import pandas as pd

from .paired import paired_difference


@dataclass(frozen=True)
class Comparison:
    """Runs with ``key == arm`` against runs with ``key == baseline``, seed by seed."""
    key: str
    baseline: str
    arm: str


@dataclass(frozen=True)
class PairedSpec:
    comparisons: Tuple[Comparison, ...]
    metrics: Tuple[str, ...]
    title: str


def _each(key: str, pairs: Tuple[Tuple[str, str], ...]) -> Tuple[Comparison, ...]:
    """Comparisons of ``key`` from (arm, baseline) pairs, in the order the table reads them."""
    return tuple(Comparison(key, base, arm) for arm, base in pairs)


PAIRED: Dict[str, PairedSpec] = {
    "bf16_parity": PairedSpec(
        _each("trainer.precision", (("bf16", "fp32"),)),
        ("final_test_acc", "final_test_loss", "final_train_loss", "time_s"),
        "Precision parity: the Table 1 CIFAR-10 cpu protocol's SGD arm in bf16 autocast minus fp32, paired by seed"),
    "table1_cifar": PairedSpec(
        _each("optim", (("lookahead_sgd", "sgd"), ("polyak_sgd", "sgd"), ("adamw", "sgd"))),
        ("final_test_acc", "final_test_loss", "final_train_loss"),
        "Table 1 at cpu scale, paired by seed (paper hyperparameters, untuned; each arm at its own lr)"),
    "table3_ptb": PairedSpec(
        _each("optim", (("lookahead_sgd", "sgd"), ("lookahead_adam", "adam"), ("adam", "sgd"))),
        ("final_test_ppl", "final_val_ppl", "final_train_loss"),
        "PTB (Table 3 analogue) at cpu scale, paired by seed (paper hyperparameters, untuned)"),
    "fig7b_wmt": PairedSpec(
        _each("wmt_arm", (("lookahead_adam_warmup", "adam_warmup"), ("lookahead_adam_nowarmup", "adam_warmup"),
                          ("lookahead_adam_nowarmup", "adam_nowarmup"), ("adafactor_warmup", "adam_warmup"))),
        ("final_test_bleu", "final_test_ppl", "final_train_loss"),
        "Multi30k (Fig. 7b analogue) at cpu scale, paired by seed (paper hyperparameters, untuned)"),
}


def paired_table(spec: PairedSpec, runs_df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for c in spec.comparisons:
        if c.key not in runs_df:
            continue
        for metric in spec.metrics:
            if metric not in runs_df:
                continue

            def by_seed(value: str) -> Dict[int, float]:
                part = runs_df[runs_df[c.key].astype(str) == value]
                return {int(s): float(v) for s, v in zip(part["seed"], pd.to_numeric(part[metric], errors="coerce"))}

            rows.append({"comparison": f"{c.arm} - {c.baseline}", "key": c.key, "metric": metric, "arm": c.arm,
                         "baseline": c.baseline, **paired_difference(by_seed(c.arm), by_seed(c.baseline))})
    return pd.DataFrame(rows, columns=None if rows else ["comparison", "metric", "n"])


def render(spec: PairedSpec, table: pd.DataFrame, provenance: str) -> str:
    keys = sorted({c.key for c in spec.comparisons})
    lines = [f"# {spec.title}", "",
             f"Per-seed difference arm - baseline of `{'`, `'.join(keys)}` over the seeds both ran (n); 95% "
             "intervals of its mean (Student-t; bootstrap BCa). A difference is supported only when both "
             "exclude zero; with n = 1 there is no interval.", "",
             "| comparison | metric | n | baseline mean | arm mean | mean difference | t 95% | bootstrap 95% | supported |",
             "|---|---|---|---|---|---|---|---|---|"]

    def f(v: float) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"

    for _, r in table.iterrows():
        lines.append(f"| {r['comparison']} | {r['metric']} | {r['n']} | {f(r['baseline_mean'])} | {f(r['arm_mean'])} | "
                     f"{f(r['mean_diff'])} | [{f(r['t_low'])}, {f(r['t_high'])}] | "
                     f"[{f(r['boot_low'])}, {f(r['boot_high'])}] | {'yes' if r['supported'] else 'no'} |")
    return "\n".join(lines + ["", f"Provenance: {provenance}.", ""])
