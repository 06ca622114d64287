"""Paired per-seed differences between two arms of a study, with a t and a bootstrap interval.

Seeds pair runs: a seed fixes the initialization and the batch order of every arm (tasks draw
batches as a function of (seed, epoch, index)), so arm and baseline at the same seed differ only
in the optimizer. The comparison is therefore the mean of the n per-seed differences
d_s = arm_s - baseline_s, over the seeds where both runs completed:

- Student-t 95% interval: mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n) (sd with ddof = 1), exact
  when the d_s are normal, for n >= 2;
- bootstrap 95% interval: ``scipy.stats.bootstrap`` of the mean of d (BCa, 9999 resamples, a fixed
  generator, so rerunning gives the same bounds; percentile where BCa is undefined, e.g. all d_s
  equal), for n >= 2. With n of 5 to 10 seeds it is no more trustworthy than the t interval (it
  cannot reach beyond the observed d_s); it is shown as a check on the normality the t interval
  assumes.

rliable (Agarwal et al. 2021) is not used: its stratified bootstrap and interquartile mean
aggregate many tasks or runs per arm; a paired difference on one task is a single mean over seeds,
which scipy's bootstrap does directly.

A comparison "supports a difference" only when both intervals exclude zero on the same side.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Dict, Mapping, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9999
BOOTSTRAP_SEED = 0


def t_interval(d: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean of ``d`` (NaN for fewer than 2 values)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * np.std(d, ddof=1) / math.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def bootstrap_interval(d: Sequence[float], confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED,
                       resamples: int = RESAMPLES) -> tuple[float, float]:
    """Bootstrap interval of the mean of ``d``: BCa, percentile where BCa is undefined."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    if np.all(d == d[0]):  # no spread: every resample has the same mean
        return float(d[0]), float(d[0])
    key = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"  # scipy >= 1.15: rng
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BCa warns (and returns NaN) when its jackknife degenerates
            res = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=resamples, method=method,
                                  **{key: np.random.default_rng(seed)})
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    return math.nan, math.nan


def paired_difference(arm: Mapping[int, float], baseline: Mapping[int, float]) -> Dict[str, float]:
    """Statistics of arm - baseline over the seeds both have (finite values only)."""
    seeds = sorted(s for s in set(arm) & set(baseline)
                   if math.isfinite(arm[s]) and math.isfinite(baseline[s]))
    d = np.array([arm[s] - baseline[s] for s in seeds], dtype=float)
    t_lo, t_hi = t_interval(d)
    b_lo, b_hi = bootstrap_interval(d)
    n = len(d)
    return {"n": n, "seeds": " ".join(map(str, seeds)),
            "arm_mean": float(np.mean([arm[s] for s in seeds])) if n else math.nan,
            "baseline_mean": float(np.mean([baseline[s] for s in seeds])) if n else math.nan,
            "mean_diff": float(d.mean()) if n else math.nan,
            "sd_diff": float(np.std(d, ddof=1)) if n > 1 else math.nan,
            "t_low": t_lo, "t_high": t_hi, "boot_low": b_lo, "boot_high": b_hi,
            "supported": supported(t_lo, t_hi, b_lo, b_hi)}


def supported(t_lo: float, t_hi: float, b_lo: float, b_hi: float) -> bool:
    """True when both intervals exclude zero on the same side."""
    bounds = (t_lo, t_hi, b_lo, b_hi)
    if not all(math.isfinite(b) for b in bounds):
        return False
    return all(b > 0 for b in bounds) or all(b < 0 for b in bounds)
