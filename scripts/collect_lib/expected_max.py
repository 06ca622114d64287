"""Expected best validation score against the number of trials (Dodge et al. 2019, "Show Your Work").

Given the N trial scores v_1..v_N of one arm, sorted so that v_(1) <= ... <= v_(N) (for a
metric to maximize), the expected maximum of n trials drawn without replacement from these N is,
for n = 1..N,

    E[max_n] = sum_{i=n}^{N} v_(i) * C(i-1, n-1) / C(N, n),

since v_(i) is the maximum of a random n-subset exactly when the subset holds v_(i) and n-1 of the
i-1 smaller scores. It is the unbiased estimator of the expected best score of an n-trial budget
(Dodge et al. 2021, "Expected Validation Performance and Estimation of a Random Variable's
Maximum"): it equals the mean of the best score over all C(N, n) subsets, so at n = N it is the
best observed score and at n = 1 the mean. ``std`` is sqrt(E[max_n^2] - E[max_n]^2) with the same
weights. The estimator of the 2019 paper, which draws with replacement from the empirical CDF
F(v_(i)) = i / N, is given beside it (``expected_best_wr``):

    E_wr[max_n] = sum_i v_(i) * ((i / N)^n - ((i - 1) / N)^n).

For a metric to minimize, the same with the signs flipped (the expected minimum). Ties need no
care: the formulas depend on the sorted values only.
"""

from __future__ import annotations

from math import comb
from typing import Sequence

import numpy as np
import pandas as pd


def expected_best(scores: Sequence[float], higher_is_better: bool = True) -> pd.DataFrame:
    """``n, expected_best, std, expected_best_wr`` for n = 1..N trials of ``scores`` (all finite)."""
    v = np.asarray(scores, dtype=float)
    if v.ndim != 1 or not len(v) or not np.isfinite(v).all():
        raise ValueError(f"expected_best needs a non-empty list of finite scores, got {list(scores)!r}")
    sign = 1.0 if higher_is_better else -1.0
    x = np.sort(sign * v)
    big_n = len(x)
    i = np.arange(1, big_n + 1)
    rows = []
    for n in range(1, big_n + 1):
        w = np.array([comb(k - 1, n - 1) for k in i], dtype=float) / comb(big_n, n)  # zero for k < n
        mean = float(w @ x)
        var = max(float(w @ x**2) - mean**2, 0.0)
        wr = (i / big_n) ** n - ((i - 1) / big_n) ** n
        rows.append({"n": n, "expected_best": sign * mean, "std": var**0.5, "expected_best_wr": sign * float(wr @ x)})
    return pd.DataFrame(rows)
