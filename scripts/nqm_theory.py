"""Write the analytic curves behind the paper's Figs. 2-4 as tidy CSVs (no training, no sampling).

    python scripts/nqm_theory.py [--results results]      (make nqm-theory)

writes

* `fig2_nqm/theory.csv`: expected loss E[L] against the inner step, up to 10^4 steps, for SGD
  and for Lookahead(SGD) with k = 5 and alpha in {0.1, 0.2, ..., 1.0}, at every learning rate
  of `FIG2_LRS`, on the default NQM (`experiments.nqm.problem.default_problem`); and the same
  with heavy-ball momentum 0.9 at the learning rates of the trained sweep
  (conf/experiment/fig2_nqm.yaml). Lookahead is evaluated on its slow weights at sync steps.
* `fig2_nqm/theory_final.csv`: per optimizer, alpha in {0.05, 0.10, ..., 1.0} and each of the
  learning rates `FIG2_DENSE_LRS`, the final loss and the asymptotic rate 1 - rho^2 per step at
  which E[L] approaches it (`analytic.loss_rate`), so that each vertical slice of a final-loss
  axis compares the convergence of optimizers that reach the same final loss (paper's Fig. 2).
* `fig3_quadratic_rate/theory.csv`: convergence rate 1 - rho per inner step of classical
  momentum (beta in {0.9, 0.99}) and of Lookahead(k = 20, alpha = 0.5) around it, against the
  learning rate (`FIG3_LRS`), on a quadratic with condition number `FIG3_KAPPA`.
* `fig4_quadratic_condition/theory.csv`: the same rates against the condition number, each
  method at its best learning rate from `RATE_LRS`.

The paper's spectrum, grids, step counts and condition number are not known to us: every
value below is our documented choice. The deterministic rates are given for two spectra,
`extremes` (eigenvalues exactly 1/kappa and 1) and `interval` (every eigenvalue in [1/kappa, 1],
the worst case), because Lookahead's rate depends on which one is meant and we do not know
which the paper used. The output is deterministic: rerunning rewrites identical files.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.nqm import analytic
from experiments.nqm.problem import default_problem

SOURCE = "experiments/nqm/analytic.py"
FIG2_K, FIG2_ALPHAS = 5, tuple(round(0.1 * i, 1) for i in range(1, 11))
FIG2_LRS = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)
FIG2_MOMENTA = {0.0: FIG2_LRS, 0.9: (0.2, 0.5, 1.0, 1.5)}  # momentum -> learning rates
FIG2_STEPS = 10_000  # the slowest mean (a = 0.01) decays by e^-5 at lr = 0.05 with SGD
FIG2_DENSE_ALPHAS = tuple(round(0.05 * i, 2) for i in range(1, 21))
FIG2_DENSE_LRS = np.geomspace(0.005, 1.9, 80)  # SGD is stable up to lr = 2 / max a = 2
RATE_K, RATE_ALPHA, RATE_MOMENTA = 20, 0.5, (0.9, 0.99)
FIG3_KAPPA = 100.0
FIG3_LRS = np.geomspace(1e-3, 4.0, 481)  # 120 per decade, to the heavy-ball stability limit
RATE_LRS = np.geomspace(1e-3, 4.0, 241)  # the grid each method's best lr is chosen from (Fig. 4)
FIG4_KAPPAS = np.geomspace(1.0, 1e4, 17)
SPECTRA = ("extremes", "interval")


def _record_steps(k: int, total: int, num: int = 40) -> np.ndarray:
    """Step 0, the powers of ten, and about `num` log-spaced multiples of k up to `total`."""
    steps = np.round(np.geomspace(k, total, num) / k).astype(int) * k
    tens = 10 ** np.arange(1, int(np.log10(total)) + 1)
    return np.unique(np.concatenate([[0], steps, tens[tens % k == 0]]))


def fig2_table() -> pd.DataFrame:
    """Expected-loss curves of (heavy-ball) SGD and Lookahead around it on the default NQM."""
    problem = default_problem()
    keep = _record_steps(FIG2_K, FIG2_STEPS)
    rows = []
    for momentum, lrs in FIG2_MOMENTA.items():
        for lr in lrs:
            inner = analytic.sgd_moments(problem, lr, FIG2_STEPS, momentum)
            rows.append(dict(method="sgd", k=np.nan, alpha=np.nan, lr=lr, momentum=momentum,
                             step=keep, expected_loss=inner.expected_loss(problem)[keep]))
            for alpha in FIG2_ALPHAS:
                la = analytic.lookahead_moments(problem, lr, FIG2_K, alpha, FIG2_STEPS // FIG2_K,
                                                momentum)
                rows.append(dict(method="lookahead_sgd", k=FIG2_K, alpha=alpha, lr=lr,
                                 momentum=momentum, step=keep,
                                 expected_loss=la.expected_loss(problem)[keep // FIG2_K]))
    df = pd.DataFrame(rows).explode(["step", "expected_loss"], ignore_index=True)
    return df.astype({"step": int, "expected_loss": float}).assign(dataset=problem.name)


def fig2_final_table() -> pd.DataFrame:
    """Final loss and convergence rate of SGD and Lookahead(SGD) on a dense lr grid."""
    problem = default_problem()
    a, sigma2, _ = problem.arrays()
    rows = []
    for lr in FIG2_DENSE_LRS:
        var = analytic.sgd_variance_fixed_point(a, sigma2, lr)
        rows.append(dict(method="sgd", k=np.nan, alpha=np.nan, lr=lr,
                         final_loss=analytic.stationary_loss(problem, var),
                         rate=analytic.loss_rate(problem, lr)))
        for alpha in FIG2_DENSE_ALPHAS:
            var = analytic.lookahead_variance_fixed_point(a, sigma2, lr, FIG2_K, alpha)
            rows.append(dict(method="lookahead_sgd", k=FIG2_K, alpha=alpha, lr=lr,
                             final_loss=analytic.stationary_loss(problem, var),
                             rate=analytic.loss_rate(problem, lr, FIG2_K, alpha)))
    return pd.DataFrame(rows).assign(momentum=0.0, dataset=problem.name)


def _rate_methods():
    for momentum in RATE_MOMENTA:
        yield "momentum", momentum, None, None
        yield "lookahead_momentum", momentum, RATE_K, RATE_ALPHA


def fig3_table() -> pd.DataFrame:
    """1 - rho against the learning rate at condition number FIG3_KAPPA."""
    frames = []
    for spectrum in SPECTRA:
        for method, momentum, k, alpha in _rate_methods():
            rate = analytic.quadratic_rate(FIG3_KAPPA, FIG3_LRS, momentum, k, alpha, spectrum)
            frames.append(pd.DataFrame(dict(method=method, k=k, alpha=alpha, lr=FIG3_LRS,
                                            momentum=momentum, kappa=FIG3_KAPPA,
                                            spectrum=spectrum, rate=rate)))
    return pd.concat(frames, ignore_index=True).assign(dataset="deterministic quadratic, L=1")


def fig4_table() -> pd.DataFrame:
    """1 - rho against the condition number, each method at its best learning rate."""
    rows = []
    for spectrum in SPECTRA:
        for method, momentum, k, alpha in _rate_methods():
            for kappa in FIG4_KAPPAS:
                rates = analytic.quadratic_rate(kappa, RATE_LRS, momentum, k, alpha, spectrum)
                best = int(np.argmax(rates))
                rows.append(dict(method=method, k=k, alpha=alpha, lr=RATE_LRS[best],
                                 momentum=momentum, kappa=kappa, spectrum=spectrum,
                                 rate=rates[best]))
    return pd.DataFrame(rows).assign(dataset="deterministic quadratic, L=1")


def write(df: pd.DataFrame, path: Path) -> None:
    """Write atomically with fixed column order and float format, so reruns are byte-identical."""
    first = ["method", "k", "alpha", "lr", "momentum"]
    df = df[first + [c for c in df.columns if c not in first]]
    df = df.assign(scale="analytic", source=SOURCE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    df.to_csv(tmp, index=False, float_format="%.8g")
    os.replace(tmp, path)
    print(f"wrote {path} ({len(df)} rows)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    args = parser.parse_args(argv)
    write(fig2_table(), args.results / "fig2_nqm" / "theory.csv")
    write(fig2_final_table(), args.results / "fig2_nqm" / "theory_final.csv")
    write(fig3_table(), args.results / "fig3_quadratic_rate" / "theory.csv")
    write(fig4_table(), args.results / "fig4_quadratic_condition" / "theory.csv")


if __name__ == "__main__":
    main()
