"""EMA of the SGD iterates on the NQM (experiments/nqm/ema.py) and its comparison with Lookahead
at an equal averaging horizon (scripts/nqm_ema.py): closed forms, recursions, hand-computed
steps, the horizon mapping, and trained replicas against the exact stationary loss."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.linalg import solve_discrete_lyapunov
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from experiments.nqm import analytic, ema
from experiments.nqm.problem import NQMProblem, default_problem
from scripts import nqm_ema
from scripts.figures import fig_nqm_ema

ROOT = Path(__file__).resolve().parents[1]
# Three coordinates spanning fast, medium and slow curvature, with unequal noise and a mixed start.
SMALL = NQMProblem(a=(1.0, 0.3, 0.05), sigma2=(1.0, 0.5, 2.0), x0=(1.0, -2.0, 0.5))
A, SIGMA2, X0 = SMALL.arrays()
ONE = NQMProblem(a=(1.0,), sigma2=(1.0,), x0=(1.0,))
SETTINGS = [(0.1, 0.0, 0.5), (0.5, 0.0, 0.9), (1.5, 0.0, 0.99), (1.9, 0.0, 0.3),
            (0.1, 0.9, 0.5), (0.5, 0.9, 0.95), (1.0, 0.5, 0.0), (3.0, 0.9, 0.8)]


@pytest.mark.parametrize(("lr", "momentum", "decay"), SETTINGS)
def test_closed_form_fixed_point_matches_generic_lyapunov_solves(lr, momentum, decay) -> None:
    closed = ema.ema_variance_fixed_point(A, SIGMA2, lr, decay, momentum)
    np.testing.assert_allclose(ema.ema_variance_lyapunov(A, SIGMA2, lr, decay, momentum), closed,
                               rtol=1e-10)
    # scipy's bilinear method (a continuous-time transform), not the Kronecker solve of ema.py
    m, g = ema.ema_state_matrices(A, lr, decay, momentum)
    for i in range(len(A)):
        cov = solve_discrete_lyapunov(m[i], SIGMA2[i] * np.outer(g[i], g[i]), method="bilinear")
        assert cov[-1, -1] == pytest.approx(closed[i], rel=1e-8)


@pytest.mark.parametrize(("lr", "momentum", "decay"), [(0.5, 0.0, 0.9), (1.5, 0.0, 0.5),
                                                       (0.1, 0.9, 0.8), (0.5, 0.9, 0.95)])
def test_recursion_run_long_reaches_the_closed_form_fixed_point(lr, momentum, decay) -> None:
    m = ema.ema_moments(SMALL, lr, decay, 8000, momentum)
    np.testing.assert_allclose(m.var[-1], ema.ema_variance_fixed_point(A, SIGMA2, lr, decay, momentum),
                               rtol=1e-10)
    assert np.all(np.abs(m.mean[-1]) < 1e-12)


def test_sgd_fixed_point_worked_example() -> None:
    # a = sigma = 1, gamma = 0.5 (b = 1/2), decay 1/2: V*_SGD = 1/3, times
    # (1 - 1/2)(1 + 1/4) / ((1 + 1/2)(1 - 1/4)) = 5/9, so V*_EMA = 5/27 (by hand).
    assert ema.ema_variance_fixed_point(1.0, 1.0, 0.5, 0.5) == pytest.approx(5 / 27, rel=1e-14)


def test_two_steps_by_hand_without_momentum() -> None:
    # a = sigma = x0 = 1, gamma = decay = 1/2: x1 = 1/2 + c1/2, e1 = 3/4 + c1/4,
    # x2 = 1/4 + c1/4 + c2/2, e2 = 1/2 + c1/4 + c2/4.
    m = ema.ema_moments(ONE, 0.5, 0.5, 2)
    np.testing.assert_allclose(m.mean[:, 0], [1.0, 0.75, 0.5], rtol=1e-15)
    np.testing.assert_allclose(m.var[:, 0], [0.0, 1 / 16, 1 / 8], rtol=1e-15)
    np.testing.assert_array_equal(m.steps, [0, 1, 2])


def test_two_steps_by_hand_with_momentum() -> None:
    # momentum 1/2: v1 = 1 - c1, x1 = 1/2 + c1/2, e1 = 3/4 + c1/4; v2 = v1/2 + x1 - c2 = 1 - c2,
    # x2 = c1/2 + c2/2, e2 = e1/2 + x2/2 = 3/8 + 3 c1/8 + c2/4.
    m = ema.ema_moments(ONE, 0.5, 0.5, 2, momentum=0.5)
    np.testing.assert_allclose(m.mean[:, 0], [1.0, 0.75, 0.375], rtol=1e-15)
    np.testing.assert_allclose(m.var[:, 0], [0.0, 1 / 16, 13 / 64], rtol=1e-15)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_conventions_match_averaged_model_with_get_ema_multi_avg_fn(momentum: float) -> None:
    """Noise-free, the EMA mean is the deterministic path: torch.optim.SGD + AveragedModel
    (updated once before the first step, then after every step) reproduces it in float64."""
    problem = NQMProblem(a=A, sigma2=(0.0,) * 3, x0=X0)
    lr, decay, steps = 0.3, 0.8, 25
    model = torch.nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(X0)[None])
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    averaged.update_parameters(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    path = [averaged.module.weight.detach().clone()[0]]
    for _ in range(steps):
        model.weight.grad = torch.tensor(A)[None] * model.weight.detach()
        opt.step()
        averaged.update_parameters(model)
        path.append(averaged.module.weight.detach().clone()[0])
    exact = ema.ema_moments(problem, lr, decay, steps, momentum)
    np.testing.assert_allclose(torch.stack(path).numpy(), exact.mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(exact.var, 0.0)


def test_zero_decay_is_sgd_itself() -> None:
    for momentum in (0.0, 0.9):
        e = ema.ema_moments(SMALL, 0.4, 0.0, 50, momentum)
        s = analytic.sgd_moments(SMALL, 0.4, 50, momentum)
        np.testing.assert_allclose(e.mean, s.mean, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(e.var, s.var, rtol=1e-12, atol=1e-15)


def test_ema_variance_is_below_sgd_for_every_decay_in_the_stable_range() -> None:
    # The SGD ratio (1 - d)(1 + d b) / ((1 + d)(1 - d b)) < 1 exactly when b < 1, i.e. always.
    a = np.linspace(1e-3, 1.999, 400)
    v_sgd = analytic.sgd_variance_fixed_point(a, 1.0, 1.0)
    for decay in np.linspace(0.01, 0.99, 50):
        assert np.all(ema.ema_variance_fixed_point(a, 1.0, 1.0, decay) < v_sgd)
    assert np.all(np.isinf(ema.ema_variance_fixed_point(np.array([2.0, 2.5]), 1.0, 1.0, 0.5)))


@pytest.mark.parametrize(("k", "alpha"), [(1, 0.3), (5, 0.5), (5, 0.8), (10, 0.2), (20, 0.9)])
def test_equal_mean_age_mapping(k: int, alpha: float) -> None:
    decay = ema.ema_decay_for_lookahead(k, alpha)
    assert ema.ema_mean_age(decay) == pytest.approx(ema.lookahead_mean_age(k, alpha), rel=1e-12)
    # Lookahead's weights alpha (1 - alpha)^j on fast weights j k steps old, summed directly.
    j = np.arange(5000)
    weights = alpha * (1 - alpha) ** j
    assert weights.sum() == pytest.approx(1.0, rel=1e-12)
    assert np.sum(j * k * weights) == pytest.approx(ema.lookahead_mean_age(k, alpha), rel=1e-12)
    assert ema.ema_decay_window(k, alpha) == pytest.approx(1 - alpha / k)


@pytest.mark.parametrize("decay", [0.5, 0.9, 5 / 6])
def test_mean_age_of_get_ema_multi_avg_fn_impulse_response(decay: float) -> None:
    """Feeding basis vectors x_t = e_t through torch's own EMA update leaves the EMA weights on
    each iterate in the coordinates: their mean age is decay / (1 - decay)."""
    steps = 400
    update = get_ema_multi_avg_fn(decay)
    e = [torch.zeros(steps + 1, dtype=torch.float64)]
    e[0][0] = 1.0  # e_0 = x_0 = basis vector 0
    for t in range(1, steps + 1):
        x = torch.zeros(steps + 1, dtype=torch.float64)
        x[t] = 1.0
        update(e, [x], None)
    weights = e[0].numpy()[::-1]  # weight on the iterate j steps old
    assert weights.sum() == pytest.approx(1.0, rel=1e-12)
    assert np.sum(np.arange(steps + 1) * weights) == pytest.approx(ema.ema_mean_age(decay), rel=1e-9)


def test_mapping_ends_and_k1_lookahead_is_not_the_ema() -> None:
    assert ema.ema_decay_for_lookahead(5, 1.0) == 0.0
    assert ema.ema_decay_for_lookahead(1, 0.3) == pytest.approx(0.7, rel=1e-15)
    # Lookahead(k = 1, alpha) at lr gamma is SGD at lr alpha gamma, not an EMA of SGD at gamma:
    alpha, lr = 0.3, 0.8
    la = analytic.lookahead_moments(SMALL, lr, 1, alpha, 60)
    sgd = analytic.sgd_moments(SMALL, alpha * lr, 60)
    np.testing.assert_allclose(la.mean, sgd.mean, rtol=1e-12)
    np.testing.assert_allclose(la.var, sgd.var, rtol=1e-12)
    # The two stationary variances (same mean age) agree only where gamma a = 1 (independent
    # iterates: alpha / (2 - alpha) both) and gamma a = 2 - alpha: with b = 1 - gamma a, their
    # cross-multiplied difference is a quadratic in b with the roots b = 0 and b = alpha - 1.
    a = np.array([1.0, 2 - alpha, 0.2, 1.3, 1.9])
    v_la = analytic.lookahead_variance_fixed_point(a, 1.0, 1.0, 1, alpha)
    v_ema = ema.ema_variance_fixed_point(a, 1.0, 1.0, 1 - alpha)
    np.testing.assert_allclose(v_la[:2], v_ema[:2], rtol=1e-12)
    assert v_la[0] == pytest.approx(alpha / (2 - alpha) * analytic.sgd_variance_fixed_point(1.0, 1.0, 1.0))
    assert np.all(np.abs(v_la[2:] / v_ema[2:] - 1) > 0.01)


@pytest.mark.parametrize(("lr", "alpha", "momentum"), [(0.5, 0.5, 0.9), (1.0, 0.2, 0.9), (0.5, 0.5, 0.0)])
def test_lookahead_sync_map_fixed_point_matches_the_analytic_module(lr, alpha, momentum) -> None:
    fixed = ema.lookahead_momentum_variance_fixed_point(A, SIGMA2, lr, 5, alpha, momentum)
    long = analytic.lookahead_moments(SMALL, lr, 5, alpha, 4000, momentum)
    np.testing.assert_allclose(long.var[-1], fixed, rtol=1e-9)
    if momentum == 0.0:
        np.testing.assert_allclose(fixed, analytic.lookahead_variance_fixed_point(A, SIGMA2, lr, 5, alpha),
                                   rtol=1e-10)


def test_deficit_from_rest_is_the_exact_shortfall_of_the_recursion() -> None:
    rest = NQMProblem(a=A, sigma2=SIGMA2, x0=(0.0,) * 3)
    lr, decay, n = 0.3, 0.9, 40
    m, g = ema.ema_state_matrices(A, lr, decay)
    deficit = ema.deficit_from_rest(m, analytic._noise(g, SIGMA2), n)[:, -1, -1]
    v = ema.ema_moments(rest, lr, decay, n).var[-1]
    np.testing.assert_allclose(ema.ema_variance_fixed_point(A, SIGMA2, lr, decay) - v, deficit,
                               rtol=1e-9)
    assert np.all(deficit > 0)


def test_invalid_decay_raises() -> None:
    for decay in (-0.1, 1.0):
        with pytest.raises(ValueError, match="decay"):
            ema.ema_moments(SMALL, 0.1, decay, 3)
    with pytest.raises(ValueError, match="alpha"):
        ema.ema_decay_for_lookahead(5, 0.0)


def test_trained_replicas_match_the_analytic_stationary_loss() -> None:
    """The script's simulation (torch.optim.SGD, lookahead.Lookahead, AveragedModel) on a small
    NQM: per arm the trained mean is within 4 standard errors of the exact stationary E[L]."""
    problem = default_problem(10)
    a, sigma2, _ = problem.arrays()
    lr, k, alphas, replicas = 0.5, 5, (0.5,), 400
    burn, bounds = nqm_ema.burn_in(problem, lr, 0.0, k, alphas)
    got = nqm_ema.simulate(problem, lr, 0.0, k, alphas, replicas, burn, 500, seed=3)
    exact = {("sgd", None): analytic.sgd_variance_fixed_point(a, sigma2, lr),
             ("lookahead_sgd", 0.5): analytic.lookahead_variance_fixed_point(a, sigma2, lr, k, 0.5),
             ("ema_sgd", 0.5): ema.ema_variance_fixed_point(a, sigma2, lr, ema.ema_decay_for_lookahead(k, 0.5))}
    assert set(got) == set(exact)
    for arm, var in exact.items():
        loss, se = got[arm].mean(), got[arm].std(ddof=1) / math.sqrt(replicas)
        assert abs(loss - analytic.stationary_loss(problem, var)) <= 4 * se, arm
        assert bounds[arm] < 0.1 * se


def test_script_table_and_committed_outputs() -> None:
    df = nqm_ema.analytic_table(default_problem())
    lrs = {m: len(v) for m, v in nqm_ema.FIG2_MOMENTA.items()}
    assert len(df) == sum(lrs.values()) * (1 + 3 * len(nqm_ema.FIG2_ALPHAS))
    one = df[np.isclose(df["alpha"].fillna(-1.0), 1.0) & (df["horizon"] != "window")]
    for (lr, momentum), g in one.groupby(["lr", "momentum"]):  # alpha = 1: LA = EMA(0) = SGD
        sgd = df[(df["method"] == "sgd") & (df["lr"] == lr) & (df["momentum"] == momentum)]
        np.testing.assert_allclose(g["analytic"], sgd["analytic"].iloc[0], rtol=1e-12)
    np.testing.assert_allclose(df.loc[df["method"] == "sgd", "excess_ratio"], 1.0)
    problem = default_problem()
    for _, r in df[df["momentum"] == 0].iterrows():  # the generic rate equals analytic.loss_rate
        k, alpha = (int(r["k"]), r["alpha"]) if r["method"] == "lookahead_sgd" else (1, 1.0)
        if r["method"] != "ema_sgd":
            assert r["rate"] == pytest.approx(analytic.loss_rate(problem, r["lr"], k, alpha), rel=1e-9)
    committed = pd.read_csv(ROOT / "results" / "nqm_ema" / "table.csv")
    assert len(committed) == len(df)
    np.testing.assert_allclose(committed["analytic"], df["analytic"], rtol=1e-7)
    trained = committed[committed["trained"].notna()]
    assert len(trained) and (trained["n_replicas"] >= 200).all()
    assert (trained["transient_bound"] < 0.2 * trained["se"]).all()
    text = (ROOT / "results" / "nqm_ema" / "table.md").read_text()
    assert "`python scripts/nqm_ema.py`" in text and "not trained runs" in text


def test_render_and_plot_on_a_small_trained_table() -> None:
    problem = default_problem()
    df = nqm_ema.analytic_table(problem)
    trained = nqm_ema.trained_table(problem, replicas=20, seed=0, window=50,
                                    trained_lrs={0.0: (1.0,)}, alphas=(0.5,))
    df = nqm_ema.combine(problem, df, trained)
    text = nqm_ema.render(df)
    assert text.startswith("# NQM: EMA") and "| 1 | 0 | EMA |" in text
    fig, axes = fig_nqm_ema.plot(fig_nqm_ema.summarize(df))
    assert len(axes) == 2 and axes[0].get_xscale() == "log"
    labels = axes[0].get_legend_handles_labels()[1]
    assert labels == ["SGD", "Lookahead α=0.5", f"EMA decay={ema.ema_decay_for_lookahead(5, 0.5):.3g}"]
