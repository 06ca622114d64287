"""Exact analysis of an exponential moving average (EMA) of the SGD iterates on the NQM, and its
comparison with Lookahead at an equal averaging horizon.

Conventions are those of `experiments.nqm.analytic` (torch.optim.SGD's, with heavy-ball momentum
beta_m written `momentum`), plus the EMA of `torch.optim.swa_utils.get_ema_multi_avg_fn(decay)`
applied after every SGD step:

    x' = SGD step of x,        e' = decay e + (1 - decay) x',        e_0 = x_0,

i.e. `AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))` whose `update_parameters`
is called once before the first step (that call copies x_0, since `n_averaged == 0`) and then
after every step. The EMA is evaluated on its own weights e, at every step.

Per coordinate (curvature a, noise variance s = sigma^2, u = gamma a, b = 1 - u, w = 1 - decay)
the state z is linear-Gaussian, z' = M z + g c with c ~ N(0, s):

    plain SGD, state (x, e):     M = [[b, 0], [w b, decay]],                       g = (u, w u);
    heavy ball, state (x, v, e): M = [[b, -gamma beta_m, 0], [a, beta_m, 0],
                                      [w b, -w gamma beta_m, decay]],              g = (u, -a, w u);

so mean and covariance propagate exactly as m' = M m, C' = M C M^T + s g g^T, and the
stationary covariance solves the discrete Lyapunov equation C = M C M^T + s g g^T.

Stationary variance of the EMA (closed form). Let gamma_h be the stationary autocovariance of
the SGD iterate x at lag h. In stationarity e_t = w sum_{j>=0} decay^j x_{t-j}, so

    V*_EMA = w^2 / (1 - decay^2) (gamma_0 + 2 G),     G = sum_{h>=1} decay^h gamma_h.

Plain SGD is AR(1): gamma_h = b^h V*_SGD, G = decay b / (1 - decay b) V*_SGD, and

    V*_EMA = (1 - decay) (1 + decay b) / ((1 + decay) (1 - decay b)) * V*_SGD,

the solution of the 2x2 Lyapunov equation (P = V[x] = V*_SGD, Q = Cov(x, e) = w P / (1 - decay b),
(1 - decay^2) V[e] = w^2 P + 2 decay w b Q). At b = 0 (independent iterates) it is the familiar
(1 - decay) / (1 + decay); at decay = 0 it is V*_SGD. Heavy ball is AR(2),
x' = phi1 x + phi2 x_prev + u c with phi1 = 1 + beta_m - u, phi2 = -beta_m, so gamma_1 =
phi1 gamma_0 / (1 + beta_m) (Yule-Walker) and, summing gamma_h = phi1 gamma_{h-1} + phi2 gamma_{h-2}
(h >= 2) against decay^h,

    G = (decay gamma_1 + phi2 decay^2 gamma_0) / (1 - phi1 decay - phi2 decay^2),

with gamma_0 = `analytic.momentum_variance_fixed_point`. Both closed forms are checked against
the generic Lyapunov solve (`stationary_covariance`) and the transient recursion run long
(tests/test_nqm_ema.py). The stationary mean is 0 (= x*), so E[L] = 1/2 sum a (V*_EMA + sigma^2).

Equal averaging horizon. We match the *mean age*, in inner steps, of the iterates each method
averages, measured when it is evaluated:

* EMA: e_t = (1 - decay) sum_j decay^j x_{t-j} (stationary, ignoring e_0's vanishing weight),
  weights summing to 1 on iterates j steps old, so the mean age is decay / (1 - decay).
* Lookahead(k, alpha), evaluated at sync points: phi_m = (1 - alpha) phi_{m-1} + alpha theta_m,
  where theta_m is the fast weight at the end of the m-th inner loop, so
  phi_m = alpha sum_j (1 - alpha)^j theta_{m-j}: weights alpha (1 - alpha)^j on fast weights
  j k inner steps old, mean age k (1 - alpha) / alpha.

Equating them gives `ema_decay_for_lookahead`: decay = k (1 - alpha) / (k (1 - alpha) + alpha),
i.e. 1 - decay = alpha / (k - (k - 1) alpha). It maps alpha = 1 (Lookahead = its inner
optimizer) to decay = 0 (EMA = the iterate itself) and k = 1 to decay = 1 - alpha. The match is
of ages only: the averaged points differ (Lookahead's theta_m start from phi_{m-1}, the EMA's
x_t are the plain SGD path), so even at k = 1 the two are different algorithms: Lookahead(k=1,
alpha) is SGD with lr alpha gamma, the EMA with decay 1 - alpha is SGD with lr gamma averaged,
and their stationary variances agree only at gamma a = 1 and gamma a = 2 - alpha.
The cruder "window" count, EMA over 1/(1 - decay) steps and Lookahead over k / alpha steps
(`ema_decay_window`, decay = 1 - alpha / k), adds one step to the EMA's age but a whole period k
to Lookahead's, so it gives a longer EMA (at k = 5, alpha = 0.5: decay 0.9 instead of 5/6, and
decay 1 - 1/k instead of 0 at alpha = 1); it is offered for comparison. Neither counts that Lookahead also changes the path it averages.
"""

from __future__ import annotations

import numpy as np

from experiments.nqm.analytic import (Moments, _affine, _check, _noise,
                                      momentum_matrix, momentum_variance_fixed_point,
                                      sgd_variance_fixed_point)
from experiments.nqm.problem import NQMProblem

__all__ = [
    "ema_mean_age", "lookahead_mean_age", "ema_decay_for_lookahead", "ema_decay_window",
    "ema_state_matrices", "ema_moments", "stationary_covariance", "ema_variance_fixed_point",
    "ema_variance_lyapunov", "lookahead_sync_matrices", "lookahead_momentum_variance_fixed_point",
    "stationary_excess_loss", "spectral_radius", "deficit_from_rest",
]


def _check_decay(decay: float) -> None:
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")


# --- averaging horizons -------------------------------------------------------------------------

def ema_mean_age(decay: float) -> float:
    """Mean age, in steps, of the iterates an EMA with this decay averages: decay / (1 - decay)."""
    _check_decay(decay)
    return decay / (1.0 - decay)


def lookahead_mean_age(k: int, alpha: float) -> float:
    """Mean age, in inner steps at a sync, of the fast weights Lookahead's slow weights average:
    sum_j j k alpha (1 - alpha)^j = k (1 - alpha) / alpha."""
    _check(1.0, 0.0, k, alpha)
    return k * (1.0 - alpha) / alpha


def ema_decay_for_lookahead(k: int, alpha: float) -> float:
    """EMA decay whose mean age equals Lookahead(k, alpha)'s (module docstring):
    decay = k (1 - alpha) / (k (1 - alpha) + alpha); 0 at alpha = 1, 1 - alpha at k = 1."""
    _check(1.0, 0.0, k, alpha)
    return k * (1.0 - alpha) / (k * (1.0 - alpha) + alpha)


def ema_decay_window(k: int, alpha: float) -> float:
    """EMA decay with the cruder equal window 1 / (1 - decay) = k / alpha: decay = 1 - alpha / k.
    Not the mean-age match (module docstring); for comparison only."""
    _check(1.0, 0.0, k, alpha)
    return 1.0 - alpha / k


# --- exact moments ------------------------------------------------------------------------------

def ema_state_matrices(a: np.ndarray, lr: float, decay: float,
                       momentum: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per coordinate, the deterministic map M and noise loading g of one SGD step followed by
    one EMA update (module docstring), on (x, e) without momentum and on (x, v, e) with it.

    Returns:
        M of shape (d, n, n) and g of shape (d, n), n = 2 or 3; the step's noise covariance is
        sigma^2 g g^T.
    """
    _check(lr, momentum)
    _check_decay(decay)
    a = np.atleast_1d(np.asarray(a, float))
    d, w, u = len(a), 1.0 - decay, lr * a
    if momentum == 0.0:
        m = np.zeros((d, 2, 2))
        m[:, 0, 0], m[:, 1, 0], m[:, 1, 1] = 1 - u, w * (1 - u), decay
        return m, np.stack([u, w * u], -1)
    inner = momentum_matrix(a, lr, momentum)
    m = np.zeros((d, 3, 3))
    m[:, :2, :2] = inner
    m[:, 2, :2] = w * inner[:, 0, :]
    m[:, 2, 2] = decay
    return m, np.stack([u, -a, w * u], -1)


def ema_moments(problem: NQMProblem, lr: float, decay: float, num_steps: int,
                momentum: float = 0.0) -> Moments:
    """Exact moments of the EMA weights e at steps 0..num_steps, with e_0 = x_0 (v_0 = 0).

    The state (x, e) or (x, v, e) starts deterministic; each step applies
    m' = M m, C' = M C M^T + sigma^2 g g^T with (M, g) = `ema_state_matrices`.

    Raises:
        ValueError: for lr <= 0, momentum outside [0, 1), decay outside [0, 1) or num_steps < 0.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    a, sigma2, x0 = problem.arrays()
    m, g = ema_state_matrices(a, lr, decay, momentum)
    n = m.shape[-1]
    q = _noise(g, sigma2)
    mean = np.zeros((len(a), n))
    mean[:, 0], mean[:, -1] = x0, x0
    cov = np.zeros((len(a), n, n))
    means, variances = [x0], [np.zeros_like(x0)]
    for _ in range(num_steps):
        mean, cov = _affine(m, q, mean, cov)
        means.append(mean[:, -1])
        variances.append(cov[:, -1, -1])
    return Moments(np.arange(num_steps + 1), np.array(means), np.array(variances))


# --- stationary covariances ---------------------------------------------------------------------

def stationary_covariance(m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Generic solution of the discrete Lyapunov equation C = M C M^T + Q for stacked (d, n, n)
    matrices, from vec(C) = (I - M kron M)^-1 vec(Q). Needs spectral radius of M < 1 (else the
    solution is not the limit of the recursion; this is not checked here)."""
    d, n, _ = m.shape
    kron = np.einsum("dij,dkl->dikjl", m, m).reshape(d, n * n, n * n)
    vec = np.linalg.solve(np.eye(n * n) - kron, q.reshape(d, n * n, 1))
    return vec.reshape(d, n, n)


def _stable(u: np.ndarray, momentum: float) -> np.ndarray:
    return (u > 0) & (u < 2 * (1 + momentum))


def ema_variance_fixed_point(a: np.ndarray, sigma2: np.ndarray, lr: float, decay: float,
                             momentum: float = 0.0) -> np.ndarray:
    """Closed-form stationary V[e] of the EMA of (heavy-ball) SGD (module docstring):

        V*_EMA = (1 - decay)^2 / (1 - decay^2) (gamma_0 + 2 G)

    with G = decay b / (1 - decay b) gamma_0 for SGD (b = 1 - gamma a), which gives
    (1 - decay)(1 + decay b) / ((1 + decay)(1 - decay b)) V*_SGD, and the AR(2) sum
    G = (decay gamma_1 - momentum decay^2 gamma_0) / (1 - (1 + momentum - gamma a) decay
    + momentum decay^2) for heavy ball. inf where the inner optimizer is unstable.
    """
    _check(lr, momentum)
    _check_decay(decay)
    a, sigma2 = np.asarray(a, float), np.asarray(sigma2, float)
    u = lr * a
    if momentum == 0.0:
        gamma0 = sgd_variance_fixed_point(a, sigma2, lr)
        with np.errstate(invalid="ignore"):
            ratio = (1 - decay) * (1 + decay * (1 - u)) / ((1 + decay) * (1 - decay * (1 - u)))
    else:
        gamma0 = momentum_variance_fixed_point(a, sigma2, lr, momentum)
        phi1 = 1 + momentum - u
        rho1 = phi1 / (1 + momentum)
        with np.errstate(invalid="ignore"):
            g_over = (decay * rho1 - momentum * decay**2) / (1 - phi1 * decay + momentum * decay**2)
        ratio = (1 - decay) / (1 + decay) * (1 + 2 * g_over)
    with np.errstate(invalid="ignore"):
        return np.where(_stable(u, momentum), ratio * gamma0, np.inf)


def ema_variance_lyapunov(a: np.ndarray, sigma2: np.ndarray, lr: float, decay: float,
                          momentum: float = 0.0) -> np.ndarray:
    """Stationary V[e] from the generic Lyapunov solve of the (x, [v,] e) state; inf where the
    inner optimizer is unstable. A check of `ema_variance_fixed_point`."""
    a = np.atleast_1d(np.asarray(a, float))
    sigma2 = np.broadcast_to(np.asarray(sigma2, float), a.shape)
    m, g = ema_state_matrices(a, lr, decay, momentum)
    cov = stationary_covariance(m, _noise(g, sigma2))
    return np.where(_stable(lr * a, momentum), cov[:, -1, -1], np.inf)


def lookahead_sync_matrices(a: np.ndarray, lr: float, k: int, alpha: float,
                            momentum: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sync map of Lookahead around heavy ball on (x, v, phi), as in
    `analytic.lookahead_moments`: P = S M^k and Q = S (sum_{j<k} M^j sigma^2 g g^T M^jT) S^T
    with unit noise variance (multiply Q by sigma^2), S the sync (x, v, phi) -> (phi', v, phi')."""
    _check(lr, momentum, k, alpha)
    a = np.atleast_1d(np.asarray(a, float))
    d = len(a)
    m = np.zeros((d, 3, 3))
    m[:, :2, :2], m[:, 2, 2] = momentum_matrix(a, lr, momentum), 1.0
    sync = np.array([[alpha, 0, 1 - alpha], [0, 1, 0], [alpha, 0, 1 - alpha]])
    step_noise = _noise(np.stack([lr * a, -a, np.zeros(d)], -1), np.ones(d))
    p, q = np.broadcast_to(np.eye(3), m.shape), np.zeros_like(m)
    for _ in range(k):
        p, q = m @ p, m @ q @ m.transpose(0, 2, 1) + step_noise
    return sync @ p, sync @ q @ sync.T


def lookahead_momentum_variance_fixed_point(a: np.ndarray, sigma2: np.ndarray, lr: float, k: int,
                                            alpha: float, momentum: float) -> np.ndarray:
    """Stationary V[phi] of Lookahead(heavy ball) at sync points, by the generic Lyapunov solve
    of the per-sync map (`lookahead_sync_matrices`); inf where that map's spectral radius is
    >= 1. At momentum = 0 use `analytic.lookahead_variance_fixed_point` (closed form)."""
    a = np.atleast_1d(np.asarray(a, float))
    sigma2 = np.broadcast_to(np.asarray(sigma2, float), a.shape)
    p, q = lookahead_sync_matrices(a, lr, k, alpha, momentum)
    cov = stationary_covariance(p, sigma2[:, None, None] * q)
    stable = np.max(np.abs(np.linalg.eigvals(p)), axis=-1) < 1
    return np.where(stable, cov[:, 2, 2], np.inf)


def stationary_excess_loss(problem: NQMProblem, var: np.ndarray) -> float:
    """1/2 sum_i a_i V_i: the stationary E[L] minus the noise floor 1/2 sum_i a_i sigma_i^2."""
    a, _, _ = problem.arrays()
    return float(0.5 * np.sum(a * var))



def spectral_radius(m: np.ndarray) -> np.ndarray:
    """max |lambda| of stacked (d, n, n) matrices (any n; `analytic.spectral_radius` is 2x2)."""
    return np.max(np.abs(np.linalg.eigvals(m)), axis=-1)


def deficit_from_rest(p: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    """C* - C_n for the recursion C' = P C P^T + Q started at C_0 = 0 (a deterministic start at
    the stationary mean): C_n = sum_{j<n} P^j Q P^jT = C* - P^n C* P^nT, so the deficit is
    P^n C* P^nT, positive semi-definite and shrinking in n. Returns the (d, n_state, n_state)
    deficits; its diagonal bounds how far below stationarity every later variance still is."""
    pn = np.linalg.matrix_power(p, int(n))
    return pn @ stationary_covariance(p, q) @ pn.transpose(0, 2, 1)
