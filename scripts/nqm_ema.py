"""Stationary NQM loss of SGD, Lookahead(SGD) and an EMA of the SGD iterates at an equal horizon.

    python scripts/nqm_ema.py [--results results] [--replicas 500] [--seed 0]

On the default NQM (`experiments.nqm.problem.default_problem`, the one of Fig. 2) and at every
learning rate and momentum of Fig. 2's analytic curves (`scripts/nqm_theory.py`: momentum 0 at
`FIG2_LRS`, momentum 0.9 at `FIG2_MOMENTA[0.9]`), writes

* `nqm_ema/table.csv`: per (lr, momentum), the exact stationary expected loss E[L] of SGD, of
  Lookahead(SGD, k = 5) at every alpha of Fig. 2 (slow weights, at sync points), and of the EMA of
  the SGD iterates (`torch.optim.swa_utils.get_ema_multi_avg_fn`, evaluated on the EMA weights) at
  the decay of equal mean age (`ema.ema_decay_for_lookahead`; `horizon = mean_age`) and, for
  comparison, at the cruder equal window 1 / (1 - decay) = k / alpha (`horizon = window`); with
  the excess over the noise floor, its ratio to SGD's at the same (lr, momentum), and the
  asymptotic rate 1 - rho^2 per step at which E[L] approaches its limit. At `TRAINED_LRS` and
  alpha in `TRAINED_ALPHAS`, the trained stationary loss of replicas beside it (below);
* `nqm_ema/table.md`: the main numbers.

`make figures` draws E[L] and the excess ratio against the learning rate from table.csv
(`scripts/figures/fig_nqm_ema.py` -> `figures/nqm_ema.png`).

Analytic values are the closed-form fixed points (`experiments/nqm/ema.py`, `analytic.py`; at
momentum 0.9 Lookahead's is the generic Lyapunov solve of its per-sync map), each checked here
against the generic Lyapunov solve of its state map to 1e-9.

Trained check. `replicas` independent chains per arm train side by side as one (replicas, d)
float32 parameter, each drawing a fresh target c ~ N(0, diag(sigma^2)) per step, with the NQM
gradient a (x - c): `torch.optim.SGD` for SGD (whose iterates also feed the EMAs), the suite's
`lookahead.Lookahead` around `torch.optim.SGD` for Lookahead (one parameter group per alpha), and
one `torch.optim.swa_utils.AveragedModel(sgd_model, multi_avg_fn=get_ema_multi_avg_fn(decay))` per
EMA, updated once before the first step (that call copies x_0) and after every step. Chains start
at x = 0, the stationary mean, so only the variance must settle: the burn-in is the first
multiple of k after which every arm's exact variance deficit (`ema.deficit_from_rest`) is below
`BURN_TOL` of its stationary excess loss, and that deficit, an upper bound on the bias of the
window that follows, is written as `transient_bound`. Each chain's loss
E_c[L(x)] = 1/2 sum_i a_i (x_i^2 + sigma_i^2) is averaged over the sync steps of the next
`WINDOW` steps; chains are independent, so the standard error is the std of those chain means
over sqrt(replicas), whatever the autocorrelation within a chain. `z` = (trained - analytic) / se.
The seed is fixed: reruns rewrite identical files (on the same torch build).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from experiments.nqm import analytic, ema
from experiments.nqm.problem import NQMProblem, default_problem
from lookahead import Lookahead

try:  # imported as scripts.nqm_ema (tests)
    from .nqm_theory import FIG2_ALPHAS, FIG2_K, FIG2_MOMENTA
except ImportError:  # run as a script: scripts/ is on sys.path
    from nqm_theory import FIG2_ALPHAS, FIG2_K, FIG2_MOMENTA

COMMAND = "python scripts/nqm_ema.py"
SOURCE = "experiments/nqm/ema.py"
TRAINED_LRS = {0.0: (0.1, 0.3, 0.5, 1.0, 1.5), 0.9: (0.5, 1.0)}  # momentum -> lrs
TRAINED_ALPHAS = (0.2, 0.5, 0.8)
SHOWN_ALPHAS = TRAINED_ALPHAS  # in table.md (the figure shows the alphas that were trained)
REPLICAS, WINDOW, BURN_TOL, SEED = 500, 2000, 1e-3, 0


# --- analytic -----------------------------------------------------------------------------------

def arm_map(a: np.ndarray, lr: float, momentum: float, k: int | None = None,
            alpha: float | None = None, decay: float | None = None):
    """Per-coordinate linear-Gaussian map of one arm, with unit noise variance.

    Returns (P, Q, idx, period): the state goes s' = P s + noise of covariance sigma^2 Q once per
    `period` inner steps, and the evaluated weight is s[idx]. SGD: (x) or (x, v), one step;
    Lookahead: (x, v, phi) from sync to sync (v is the plain gradient at momentum 0), k steps;
    EMA: (x, [v,] e), one step.
    """
    a = np.asarray(a, float)
    if decay is not None:
        p, g = ema.ema_state_matrices(a, lr, decay, momentum)
        return p, analytic._noise(g, np.ones_like(a)), -1, 1
    if k is not None:
        p, q = ema.lookahead_sync_matrices(a, lr, k, alpha, momentum)
        return p, q, 2, k
    if momentum == 0.0:
        return (1 - lr * a)[:, None, None], ((lr * a) ** 2)[:, None, None], 0, 1
    g = np.stack([lr * a, -a], -1)
    return analytic.momentum_matrix(a, lr, momentum), analytic._noise(g, np.ones_like(a)), 0, 1


def closed_form_variance(a, sigma2, lr, momentum, k=None, alpha=None, decay=None) -> np.ndarray:
    """Stationary variance of the evaluated weights from the closed forms."""
    if decay is not None:
        return ema.ema_variance_fixed_point(a, sigma2, lr, decay, momentum)
    if k is not None:
        if momentum == 0.0:
            return analytic.lookahead_variance_fixed_point(a, sigma2, lr, k, alpha)
        return ema.lookahead_momentum_variance_fixed_point(a, sigma2, lr, k, alpha, momentum)
    if momentum == 0.0:
        return analytic.sgd_variance_fixed_point(a, sigma2, lr)
    return analytic.momentum_variance_fixed_point(a, sigma2, lr, momentum)


def arms(k: int = FIG2_K, alphas=FIG2_ALPHAS):
    """(method, k, alpha, decay, horizon) of every arm at one (lr, momentum)."""
    yield "sgd", None, None, None, ""
    for alpha in alphas:
        yield "lookahead_sgd", k, alpha, None, ""
    for alpha in alphas:
        yield "ema_sgd", k, alpha, ema.ema_decay_for_lookahead(k, alpha), "mean_age"
    for alpha in alphas:
        yield "ema_sgd", k, alpha, ema.ema_decay_window(k, alpha), "window"


def analytic_table(problem: NQMProblem) -> pd.DataFrame:
    """One row per (momentum, lr, arm): stationary E[L], excess, ratio to SGD, rate."""
    a, sigma2, _ = problem.arrays()
    floor = 0.5 * float(np.sum(a * sigma2))
    rows = []
    for momentum, lrs in FIG2_MOMENTA.items():
        for lr in lrs:
            for method, k, alpha, decay, horizon in arms():
                la_k = k if method == "lookahead_sgd" else None
                var = closed_form_variance(a, sigma2, lr, momentum, la_k, alpha, decay)
                p, q, idx, period = arm_map(a, lr, momentum, la_k, alpha, decay)
                generic = ema.stationary_covariance(p, sigma2[:, None, None] * q)[:, idx, idx]
                np.testing.assert_allclose(var, generic, rtol=1e-9, err_msg=f"{method} {lr}")
                rho = float(np.max(ema.spectral_radius(p)))
                age = (ema.lookahead_mean_age(k, alpha) if method == "lookahead_sgd"
                       else ema.ema_mean_age(decay) if decay is not None else 0.0)
                rows.append(dict(method=method, k=k, alpha=alpha, decay=decay, horizon=horizon,
                                 mean_age=age, lr=lr, momentum=momentum,
                                 analytic=analytic.stationary_loss(problem, var),
                                 rate=1 - rho ** (2 / period)))
    df = pd.DataFrame(rows)
    df["excess"] = df["analytic"] - floor
    sgd = df[df["method"] == "sgd"].set_index(["lr", "momentum"])["excess"]
    df["excess_ratio"] = df["excess"] / sgd.loc[list(zip(df["lr"], df["momentum"]))].to_numpy()
    return df


# --- trained replicas ---------------------------------------------------------------------------

class _Chains(nn.Module):
    def __init__(self, replicas: int, dim: int) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.zeros(replicas, dim))


def burn_in(problem: NQMProblem, lr: float, momentum: float, k: int, alphas,
            tol: float = BURN_TOL) -> tuple[int, dict]:
    """Smallest multiple of k after which, from x = 0, every arm's exact loss deficit is at most
    `tol` of its stationary excess loss; returns it and each arm's deficit there."""
    a, sigma2, _ = problem.arrays()
    maps = {("sgd", None): arm_map(a, lr, momentum)}
    for alpha in alphas:
        maps["lookahead_sgd", alpha] = arm_map(a, lr, momentum, k, alpha)
        maps["ema_sgd", alpha] = arm_map(a, lr, momentum,
                                         decay=ema.ema_decay_for_lookahead(k, alpha))

    def deficits(steps: int) -> dict:
        out = {}
        for arm, (p, q, idx, period) in maps.items():
            d = ema.deficit_from_rest(p, sigma2[:, None, None] * q, steps // period)
            v = ema.stationary_covariance(p, sigma2[:, None, None] * q)[:, idx, idx]
            out[arm] = (0.5 * float(np.sum(a * d[:, idx, idx])), 0.5 * float(np.sum(a * v)))
        return out

    steps = 20 * k
    while True:
        got = deficits(steps)
        if all(bound <= tol * excess for bound, excess in got.values()):
            return steps, {arm: bound for arm, (bound, _) in got.items()}
        steps *= 2


def simulate(problem: NQMProblem, lr: float, momentum: float, k: int, alphas, replicas: int,
             burn: int, window: int, seed: int) -> dict:
    """Trained stationary loss per arm (module docstring): {arm: per-chain mean loss (replicas,)},
    arms ("sgd", None), ("lookahead_sgd", alpha) and ("ema_sgd", alpha), the EMA at the decay of
    equal mean age. Losses are taken at the sync steps of the `window` steps after `burn`."""
    if burn % k or window % k:
        raise ValueError(f"burn ({burn}) and window ({window}) must be multiples of k ({k})")
    a64, sigma2, _ = problem.arrays()
    a, sigma = torch.tensor(a64, dtype=torch.float32), torch.tensor(np.sqrt(sigma2), dtype=torch.float32)
    floor = 0.5 * float(np.sum(a64 * sigma2))
    gen = torch.Generator().manual_seed(seed)
    sgd_model = _Chains(replicas, problem.dim)
    la_params = [nn.Parameter(torch.zeros(replicas, problem.dim)) for _ in alphas]
    sgd = torch.optim.SGD(sgd_model.parameters(), lr=lr, momentum=momentum)
    groups = [{"params": [p], "lookahead_alpha": alpha} for p, alpha in zip(la_params, alphas)]
    la = Lookahead(torch.optim.SGD(groups, lr=lr, momentum=momentum), k=k)
    emas = [AveragedModel(sgd_model, multi_avg_fn=get_ema_multi_avg_fn(ema.ema_decay_for_lookahead(k, alpha)))
            for alpha in alphas]
    for averaged in emas:
        averaged.update_parameters(sgd_model)  # n_averaged == 0: copies x_0, so e_0 = x_0
    params = [sgd_model.x, *la_params]
    for p in params:
        p.grad = torch.zeros_like(p)
    names = [("sgd", None), *(("lookahead_sgd", al) for al in alphas), *(("ema_sgd", al) for al in alphas)]
    total = torch.zeros(len(names), replicas, dtype=torch.float64)
    for step in range(1, burn + window + 1):
        noise = torch.randn(len(params), replicas, problem.dim, generator=gen) * sigma
        with torch.no_grad():
            for p, c in zip(params, noise):
                torch.sub(p, c, out=p.grad).mul_(a)  # the NQM gradient a (x - c)
        sgd.step()
        la.step()  # every k-th call syncs: then the parameters hold the slow weights phi
        for averaged in emas:
            averaged.update_parameters(sgd_model)
        if step > burn and step % k == 0:
            with torch.no_grad():
                x = torch.stack([*params, *(m.module.x for m in emas)])
                total += 0.5 * (a * x * x).sum(-1, dtype=torch.float64)
    means = (total / (window // k)).numpy() + floor
    return dict(zip(names, means))


def trained_table(problem: NQMProblem, replicas: int, seed: int, window: int = WINDOW,
                  trained_lrs=TRAINED_LRS, alphas=TRAINED_ALPHAS, k: int = FIG2_K) -> pd.DataFrame:
    """One row per trained (lr, momentum, arm): trained, se, n_replicas, burn_in, window,
    transient_bound."""
    rows = []
    for i, (momentum, lrs) in enumerate(trained_lrs.items()):
        for j, lr in enumerate(lrs):
            burn, bounds = burn_in(problem, lr, momentum, k, alphas)
            got = simulate(problem, lr, momentum, k, alphas, replicas, burn, window,
                           seed + 1000 * i + j)
            for (method, alpha), chain_means in got.items():
                rows.append(dict(method=method, alpha=alpha, lr=lr, momentum=momentum,
                                 trained=float(chain_means.mean()),
                                 se=float(chain_means.std(ddof=1) / np.sqrt(replicas)),
                                 n_replicas=replicas, burn_in=burn, window=window,
                                 transient_bound=bounds[method, alpha]))
    return pd.DataFrame(rows)


def combine(problem: NQMProblem, exact: pd.DataFrame, trained: pd.DataFrame) -> pd.DataFrame:
    """The analytic table with the trained rows (EMA arms: the mean-age ones) merged in, z added."""
    trained = trained.assign(horizon=np.where(trained["method"] == "ema_sgd", "mean_age", ""),
                             alpha=trained["alpha"].astype(float))
    df = exact.merge(trained, on=["method", "alpha", "lr", "momentum", "horizon"], how="left")
    df["z"] = (df["trained"] - df["analytic"]) / df["se"]
    return df.assign(dataset=problem.name, scale="analytic", source=SOURCE)


def full_table(problem: NQMProblem, replicas: int, seed: int) -> pd.DataFrame:
    return combine(problem, analytic_table(problem), trained_table(problem, replicas, seed))


# --- outputs ------------------------------------------------------------------------------------

def _cell(df: pd.DataFrame, **where) -> pd.Series:
    """The one row of df matching every key = value (floats compared with np.isclose)."""
    mask = np.ones(len(df), bool)
    for key, value in where.items():
        if isinstance(value, float):
            mask &= np.isclose(df[key].to_numpy(float), value)
        else:
            mask &= (df[key] == value).to_numpy()
    rows = df[mask]
    if len(rows) != 1:
        raise ValueError(f"expected one row for {where}, got {len(rows)}")
    return rows.iloc[0]


def _crossover(df: pd.DataFrame, alpha: float, momentum: float, horizon: str) -> str:
    """'>= lr' for the smallest grid lr from which the EMA is below Lookahead at every larger lr."""
    cut = df[(df["momentum"] == momentum) & df["alpha"].notna()
             & np.isclose(df["alpha"].fillna(-1.0), alpha)]
    la = cut[cut["method"] == "lookahead_sgd"].set_index("lr")["analytic"].sort_index()
    em = cut[(cut["method"] == "ema_sgd") & (cut["horizon"] == horizon)].set_index("lr")["analytic"]
    below = (em.reindex(la.index) < la).to_numpy()
    if not below[-1]:
        return "none"
    first = len(below) - int(np.argmin(below[::-1])) if not below.all() else 0
    return f"≥ {la.index[first]:g}"


def _span(values: pd.Series) -> str:
    lo, hi = f"{values.min():.2f}", f"{values.max():.2f}"
    return lo if lo == hi else f"{lo} to {hi}"


def render(df: pd.DataFrame) -> str:
    """table.md: the stationary E[L] grid and the trained check."""
    floor = float((df["analytic"] - df["excess"]).iloc[0])
    k = int(df["k"].dropna().iloc[0])
    lines = [
        "# NQM: EMA of the SGD iterates vs Lookahead(SGD) at an equal averaging horizon",
        "",
        f"Written by `{COMMAND}` (`{SOURCE}`). The E[L] columns are exact analytic values "
        "(closed-form stationary fixed points), not trained runs; only the last table's "
        "'trained' column comes from simulated replicas.",
        "",
        f"Problem: {df['dataset'].iloc[0]}; noise floor 1/2 sum a_i sigma_i^2 = {floor:.4f}. "
        f"Lookahead: k = {k}, slow weights at sync points. EMA: "
        "`get_ema_multi_avg_fn(decay)` after every SGD step, evaluated on the EMA weights, at the "
        "decay of equal mean age k (1 - alpha) / alpha = decay / (1 - decay) of the averaged "
        "iterates. Each cell: stationary E[L] (its excess over the floor as a fraction of SGD's "
        "at the same lr and momentum).",
        "",
    ]
    alphas = SHOWN_ALPHAS
    for momentum in sorted(df["momentum"].unique()):
        lines += [f"## momentum {momentum:g}", ""]
        head = ["lr", "SGD"]
        for alpha in alphas:
            decay = ema.ema_decay_for_lookahead(k, alpha)
            head += [f"Lookahead α={alpha:g}", f"EMA decay={decay:.4g}"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for lr in sorted(df.loc[df["momentum"] == momentum, "lr"].unique()):
            sel = dict(lr=float(lr), momentum=float(momentum))
            cells = [f"{lr:g}", f"{_cell(df, method='sgd', **sel)['analytic']:.4f}"]
            for alpha in alphas:
                for method, horizon in (("lookahead_sgd", ""), ("ema_sgd", "mean_age")):
                    r = _cell(df, method=method, alpha=float(alpha), horizon=horizon, **sel)
                    cells.append(f"{r['analytic']:.4f} ({r['excess_ratio']:.2f})")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Where the EMA's stationary loss is below Lookahead's",
        "",
        "Smallest lr of the grid from which the EMA's E[L] is below Lookahead's at that lr and "
        "every larger one ('none': not at the largest lr; the grids are those of the tables above). "
        "'mean age' is the EMA above; 'window' matches 1 / (1 - decay) = k / alpha instead "
        "(decay = 1 - alpha / k, a longer EMA; csv rows `horizon = window`).",
        "",
        "| α | decay (mean age) | momentum 0 | momentum 0.9 | decay (window) | momentum 0 | momentum 0.9 |",
        "|---|---|---|---|---|---|---|",
    ]
    for alpha in sorted(a for a in df["alpha"].dropna().unique() if a < 1):
        cells = [f"{alpha:g}"]
        for horizon, decay in (("mean_age", ema.ema_decay_for_lookahead(k, alpha)),
                               ("window", ema.ema_decay_window(k, alpha))):
            cells.append(f"{decay:.4g}")
            for momentum in sorted(df["momentum"].unique()):
                cells.append(_crossover(df, float(alpha), float(momentum), horizon))
        lines.append("| " + " | ".join(cells) + " |")
    sgd_rate = df[df["method"] == "sgd"].set_index(["lr", "momentum"])["rate"]
    rel = df["rate"] / sgd_rate.loc[list(zip(df["lr"], df["momentum"]))].to_numpy()
    plain = df["momentum"] == 0
    ema_rows, la_rows = df["method"] == "ema_sgd", df["method"] == "lookahead_sgd"
    lines += [
        "",
        "Asymptotic rate 1 − ρ² per step at which E[L] approaches its limit (csv `rate`), as a "
        f"fraction of SGD's at the same lr and momentum: EMA {_span(rel[ema_rows & plain])} at "
        f"momentum 0 and {_span(rel[ema_rows & ~plain])} at momentum 0.9; Lookahead "
        f"{_span(rel[la_rows & plain])} and {_span(rel[la_rows & ~plain])} (alpha 1 included).",
        "",
    ]
    trained = df[df["trained"].notna()]
    lines += [
        "## Trained replicas against the analytic stationary loss",
        "",
        f"{int(trained['n_replicas'].iloc[0])} float32 replicas per arm, trained with "
        "`torch.optim.SGD`, `lookahead.Lookahead` and `torch.optim.swa_utils.AveragedModel` "
        "(`get_ema_multi_avg_fn`) from x = 0; per replica the loss is averaged over the sync "
        f"steps of {int(trained['window'].iloc[0])} steps after the burn-in; se = std of the "
        "replica means / sqrt(n). transient bound: exact upper bound on how far below "
        "stationarity the window can be. Rows at alpha = 0.5; the csv has "
        f"alpha in {{{', '.join(f'{v:g}' for v in sorted(trained['alpha'].dropna().unique()))}}}.",
        "",
        "| lr | momentum | method | analytic | trained | se | z | n_replicas | burn-in | transient bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    shown = trained[trained["alpha"].isna() | np.isclose(trained["alpha"], 0.5)]
    for _, r in shown.sort_values(["momentum", "lr"], kind="stable").iterrows():
        name = {"sgd": "SGD", "lookahead_sgd": "Lookahead", "ema_sgd": "EMA"}[r["method"]]
        lines.append(f"| {r['lr']:g} | {r['momentum']:g} | {name} | {r['analytic']:.5f} | "
                     f"{r['trained']:.5f} | {r['se']:.2g} | {r['z']:+.2f} | {int(r['n_replicas'])} | "
                     f"{int(r['burn_in'])} | {r['transient_bound']:.1e} |")
    z = trained["z"].to_numpy()
    lines += [
        "",
        f"All {len(z)} trained rows: max |z| = {np.max(np.abs(z)):.2f}, "
        f"{int(np.sum(np.abs(z) > 2))} with |z| > 2 (about {0.0455 * len(z):.1f} expected "
        "by chance); largest transient bound / se = "
        f"{np.max(trained['transient_bound'] / trained['se']):.3f}.",
    ]
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    print(f"wrote {path}")


COLUMNS = ["method", "k", "alpha", "decay", "horizon", "mean_age", "lr", "momentum", "analytic", "excess",
           "excess_ratio", "rate", "trained", "se", "n_replicas", "z", "burn_in", "window", "transient_bound",
           "dataset", "scale", "source"]


def write(df: pd.DataFrame, results: Path) -> None:
    """``results/nqm_ema/table.csv`` (the figure's input) and ``table.md``."""
    out = Path(results) / "nqm_ema"
    _atomic_write(out / "table.csv", lambda p: df[COLUMNS].to_csv(p, index=False, float_format="%.8g"))
    _atomic_write(out / "table.md", lambda p: p.write_text(render(df)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--replicas", type=int, default=REPLICAS, help="replicas per trained arm")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    write(full_table(default_problem(), args.replicas, args.seed), args.results)
    print(f"done in {time.perf_counter() - start:.0f} s; `make figures` draws it")


if __name__ == "__main__":
    main()
