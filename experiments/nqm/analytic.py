"""Exact analysis of SGD, classical momentum and Lookahead on the noisy quadratic model.

Conventions (those of `torch.optim.SGD`, so that trained runs and this module agree):

* gradient of coordinate i at step t: g = a (x - c), with c ~ N(0, sigma^2) fresh every step;
* SGD with learning rate gamma: x' = x - gamma g;
* classical (heavy-ball) momentum beta: v' = beta v + g, x' = x - gamma v', with v = 0 at the
  start; equivalently x' = x - gamma g + beta (x - x_prev) (Polyak's form);
* Lookahead(k, alpha): the fast weights start at the slow weights phi, take k inner steps, then
  phi' = phi + alpha (theta_k - phi) and theta <- phi'. The momentum buffer is maintained across
  syncs (the "none" pullback choice). Lookahead is evaluated on its slow weights at sync points.

Because the curvature and the noise covariance are diagonal, coordinates are independent. Per
coordinate the state s (x; or (x, v); or (x, v, phi)) obeys a linear-Gaussian recursion
s' = M s + g c, so its mean and covariance propagate exactly as

    m' = M m,      C' = M C M^T + sigma^2 g g^T,

and a sync is the noiseless linear map s' = S s. The expected loss is

    E[L] = 1/2 sum_i a_i (E[x_i]^2 + V[x_i] + sigma_i^2).

On the deterministic quadratic (sigma = 0) the error contracts per eigenvalue a by the spectral
radius rho of M (momentum) or of the k-step map composed with the interpolation (Lookahead), and
the convergence rate reported is 1 - rho per inner step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.nqm.problem import NQMProblem


@dataclass(frozen=True)
class Moments:
    """Mean and variance of the evaluated weights at recorded steps.

    Attributes:
        steps: (T,) inner-step counts at which the moments are recorded.
        mean: (T, d) E[x_i] at those steps.
        var: (T, d) V[x_i] at those steps.
    """

    steps: np.ndarray
    mean: np.ndarray
    var: np.ndarray

    def expected_loss(self, problem: NQMProblem) -> np.ndarray:
        """E[L] at every recorded step, shape (T,)."""
        return expected_loss(problem, self.mean, self.var)


def expected_loss(problem: NQMProblem, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """E[L] = 1/2 sum_i a_i (E[x_i]^2 + V[x_i] + sigma_i^2), summed over the last axis."""
    a, sigma2, _ = problem.arrays()
    return 0.5 * np.sum(a * (np.square(mean) + var + sigma2), axis=-1)


def _check(lr: float, momentum: float = 0.0, k: int = 1, alpha: float = 1.0) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")


def _affine(p: np.ndarray, q: np.ndarray, mean: np.ndarray,
            cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per coordinate, s' = P s + (noise of covariance Q): m' = P m, C' = P C P^T + Q."""
    return np.einsum("dij,dj->di", p, mean), p @ cov @ p.transpose(0, 2, 1) + q


def _noise(g: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Covariance sigma^2 g g^T of the noise g c injected by one step."""
    return sigma2[:, None, None] * g[:, :, None] * g[:, None, :]


def sgd_moments(problem: NQMProblem, lr: float, num_steps: int, momentum: float = 0.0) -> Moments:
    """Exact moments of SGD (momentum = 0) or heavy-ball SGD on the NQM, at steps 0..num_steps.

    Without momentum the recursion is scalar per coordinate, with b = 1 - gamma a:
    E[x]' = b E[x] and V' = b^2 V + gamma^2 a^2 sigma^2. With momentum the 2x2 covariance of
    (x, v) is propagated with M = `momentum_matrix` and noise loading g = (gamma a, -a).

    Raises:
        ValueError: for lr <= 0, momentum outside [0, 1) or num_steps < 0.
    """
    _check(lr, momentum)
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    a, sigma2, x0 = problem.arrays()
    means, variances = [x0], [np.zeros_like(x0)]
    if momentum == 0.0:
        b, noise = 1 - lr * a, (lr * a) ** 2 * sigma2
        for _ in range(num_steps):
            means.append(b * means[-1])
            variances.append(b**2 * variances[-1] + noise)
    else:
        m, q = momentum_matrix(a, lr, momentum), _noise(np.stack([lr * a, -a], -1), sigma2)
        mean, cov = np.stack([x0, np.zeros_like(x0)], -1), np.zeros((len(a), 2, 2))
        for _ in range(num_steps):
            mean, cov = _affine(m, q, mean, cov)
            means.append(mean[:, 0])
            variances.append(cov[:, 0, 0])
    return Moments(np.arange(num_steps + 1), np.array(means), np.array(variances))


def lookahead_moments(problem: NQMProblem, lr: float, k: int, alpha: float, num_syncs: int,
                      momentum: float = 0.0) -> Moments:
    """Exact moments of Lookahead's slow weights phi at the sync steps 0, k, ..., num_syncs k.

    Around plain SGD the per-sync recursion is scalar, with b = 1 - gamma a and
    r = 1 - alpha + alpha b^k:

        E[phi]' = r E[phi],   V[phi]' = r^2 V[phi] + alpha^2 gamma^2 a^2 sigma^2 sum_{j<k} b^(2j).

    Around heavy-ball momentum the 3x3 covariance of (x, v, phi) goes exactly through k inner
    steps and the sync map S: (x, v, phi) -> (phi', v, phi'), phi' = (1 - alpha) phi + alpha x
    (the buffer v is maintained across syncs), composed once into s' = P s + noise with
    P = S M^k and noise covariance Q = S (sum_{j<k} M^j sigma^2 g g^T M^jT) S^T.

    Raises:
        ValueError: for invalid lr, momentum, k, alpha, or num_syncs < 0.
    """
    _check(lr, momentum, k, alpha)
    if num_syncs < 0:
        raise ValueError(f"num_syncs must be >= 0, got {num_syncs}")
    a, sigma2, x0 = problem.arrays()
    means, variances = [x0], [np.zeros_like(x0)]
    if momentum == 0.0:
        b = 1 - lr * a
        r = 1 - alpha + alpha * b**k
        noise = alpha**2 * (lr * a) ** 2 * sigma2 * sum(b ** (2 * j) for j in range(k))
        for _ in range(num_syncs):
            means.append(r * means[-1])
            variances.append(r**2 * variances[-1] + noise)
    else:
        d = len(a)
        m = np.zeros((d, 3, 3))
        m[:, :2, :2], m[:, 2, 2] = momentum_matrix(a, lr, momentum), 1.0
        sync = np.array([[alpha, 0, 1 - alpha], [0, 1, 0], [alpha, 0, 1 - alpha]])
        step_noise = _noise(np.stack([lr * a, -a, np.zeros(d)], -1), sigma2)
        p, q = np.broadcast_to(np.eye(3), m.shape), np.zeros_like(m)
        for _ in range(k):
            p, q = m @ p, m @ q @ m.transpose(0, 2, 1) + step_noise
        p, q = sync @ p, sync @ q @ sync.T
        mean, cov = np.stack([x0, np.zeros(d), x0], -1), np.zeros((d, 3, 3))
        for _ in range(num_syncs):
            mean, cov = _affine(p, q, mean, cov)
            means.append(mean[:, 2])
            variances.append(cov[:, 2, 2])
    return Moments(k * np.arange(num_syncs + 1), np.array(means), np.array(variances))


def sgd_variance_fixed_point(a: np.ndarray, sigma2: np.ndarray, lr: float) -> np.ndarray:
    """V*_SGD = gamma^2 a^2 sigma^2 / (1 - (1 - gamma a)^2); inf where |1 - gamma a| >= 1."""
    a, sigma2 = np.asarray(a, float), np.asarray(sigma2, float)
    b = 1 - lr * a
    with np.errstate(divide="ignore"):
        return np.where(np.abs(b) < 1, (lr * a) ** 2 * sigma2 / (1 - b**2), np.inf)


def momentum_variance_fixed_point(a: np.ndarray, sigma2: np.ndarray, lr: float,
                                  momentum: float) -> np.ndarray:
    """Stationary V[x] of heavy-ball SGD, the AR(2) variance of
    x' = (1 + beta - gamma a) x - beta x_prev + gamma a c:

        V* = (1 + beta) gamma a sigma^2 / ((1 - beta) (2 (1 + beta) - gamma a)),

    which is V*_SGD at beta = 0; inf outside the stable range 0 < gamma a < 2 (1 + beta).
    """
    a, sigma2 = np.asarray(a, float), np.asarray(sigma2, float)
    ga, beta = lr * a, momentum
    with np.errstate(divide="ignore"):
        v = (1 + beta) * ga * sigma2 / ((1 - beta) * (2 * (1 + beta) - ga))
    return np.where((ga > 0) & (ga < 2 * (1 + beta)), v, np.inf)


def lookahead_variance_fixed_point(a: np.ndarray, sigma2: np.ndarray, lr: float, k: int,
                                   alpha: float) -> np.ndarray:
    """Slow-weight variance fixed point of Lookahead(SGD) (the paper's Proposition 2):

        V*_LA = alpha^2 (1 - b^(2k))
                / (alpha^2 (1 - b^(2k)) + 2 alpha (1 - alpha) (1 - b^k)) * V*_SGD,

    with b = 1 - gamma a. It is the fixed point of the per-sync recursion of `lookahead_moments`,
    whose sync noise has variance alpha^2 (1 - b^(2k)) V*_SGD; it is < V*_SGD for alpha in (0, 1).
    """
    _check(lr, 0.0, k, alpha)
    a = np.asarray(a, float)
    b = 1 - lr * a
    num = alpha**2 * (1 - b ** (2 * k))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = num / (num + 2 * alpha * (1 - alpha) * (1 - b**k))
    return np.where(np.abs(b) < 1, ratio * sgd_variance_fixed_point(a, sigma2, lr), np.inf)


def stationary_loss(problem: NQMProblem, var: np.ndarray) -> float:
    """Expected loss at a variance fixed point (the mean has decayed to x* = 0)."""
    return float(expected_loss(problem, np.zeros(problem.dim), var))


def loss_rate(problem: NQMProblem, lr: float, k: int = 1, alpha: float = 1.0) -> float:
    """Asymptotic rate 1 - max_i rho_i^2 per step at which E[L] approaches its fixed point.

    Both E[x_i]^2 and V[x_i] - V*_i shrink by rho_i^2 per step, with rho_i = |1 - gamma a_i| for
    SGD (k = alpha = 1) and rho_i = |1 - alpha + alpha (1 - gamma a_i)^k|^(1/k) for Lookahead.
    """
    _check(lr, 0.0, k, alpha)
    a, _, _ = problem.arrays()
    return float(1.0 - np.max(np.abs(1 - alpha + alpha * (1 - lr * a) ** k)) ** (2.0 / k))


def momentum_matrix(a: np.ndarray, lr: np.ndarray, momentum: float) -> np.ndarray:
    """Deterministic heavy-ball map on (x, v): M = [[1 - gamma a, -gamma beta], [a, beta]].

    Its eigenvalues solve lambda^2 - (1 + beta - gamma a) lambda + beta = 0. a and lr broadcast;
    the result has shape broadcast(a, lr).shape + (2, 2).
    """
    a, lr = np.broadcast_arrays(np.asarray(a, float), np.asarray(lr, float))
    row0 = np.stack([1 - lr * a, -lr * momentum], -1)
    row1 = np.stack([a, np.full_like(a, momentum)], -1)
    return np.stack([row0, row1], -2)


def lookahead_matrix(a: np.ndarray, lr: np.ndarray, momentum: float, k: int,
                     alpha: float) -> np.ndarray:
    """Deterministic Lookahead map from sync to sync on (phi, v), with P = M^k:

        T = [[1 - alpha + alpha P_xx, alpha P_xv], [P_vx, P_vv]],

    since each inner loop starts at x = phi with the maintained buffer v.
    """
    _check(1.0, momentum, k, alpha)
    p = np.linalg.matrix_power(momentum_matrix(a, lr, momentum), int(k))
    t = p.copy()
    t[..., 0, 0] = 1 - alpha + alpha * p[..., 0, 0]
    t[..., 0, 1] = alpha * p[..., 0, 1]
    return t


def spectral_radius(m: np.ndarray) -> np.ndarray:
    """max |lambda| of stacked 2x2 matrices, from lambda = (tr +- sqrt(tr^2 - 4 det)) / 2."""
    tr = m[..., 0, 0] + m[..., 1, 1]
    det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    root = np.sqrt((tr**2 - 4 * det).astype(complex))
    return np.maximum(np.abs(tr + root), np.abs(tr - root)) / 2


def step_radius(u: np.ndarray, momentum: float, k: int | None = None,
                alpha: float | None = None) -> np.ndarray:
    """Per-inner-step spectral radius rho as a function of u = gamma a.

    rho = spectral_radius(M) for momentum alone (k is None) and
    rho = spectral_radius(T)^(1/k) for Lookahead. Both depend on gamma and a only through u,
    because M(gamma, a) = D M(1, gamma a) D^-1 with D = diag(1, 1/gamma), and T inherits it.
    """
    if (k is None) != (alpha is None):
        raise ValueError(f"give both k and alpha (Lookahead) or neither, got {k=}, {alpha=}")
    if k is None:
        return spectral_radius(momentum_matrix(u, 1.0, momentum))
    return spectral_radius(lookahead_matrix(u, 1.0, momentum, k, alpha)) ** (1.0 / k)


def _max_on_interval(f, lo: np.ndarray, hi: np.ndarray, num: int = 1024, keep: int = 4,
                     rounds: int = 3, fine: int = 33) -> np.ndarray:
    """max of f over each [lo_j, hi_j], searched in log space.

    A grid of `num` points, then `rounds` zooms of `fine` points around each of the `keep` best
    local maxima; each zoom is 16x finer, so the result matches a grid of ~4e6 points.
    """
    log_lo, width = np.log(lo)[:, None], np.log(hi / lo)[:, None]
    x = log_lo + width * np.linspace(0.0, 1.0, num)
    v = f(np.exp(x))
    best = v.max(axis=1)
    pad = np.pad(v, ((0, 0), (1, 1)), constant_values=-np.inf)
    peak = (v >= pad[:, :-2]) & (v >= pad[:, 2:])
    idx = np.argsort(np.where(peak, v, -np.inf), axis=1)[:, -keep:]
    centre, step = np.take_along_axis(x, idx, axis=1), width / (num - 1)
    for _ in range(rounds):
        xs = centre[..., None] + step[..., None] * np.linspace(-1, 1, fine)
        xs = np.clip(xs, log_lo[..., None], (log_lo + width)[..., None])
        vs = f(np.exp(xs))
        best = np.maximum(best, vs.max(axis=(1, 2)))
        centre = np.take_along_axis(xs, vs.argmax(axis=-1)[..., None], axis=-1)[..., 0]
        step = step * 2 / (fine - 1)
    return best


def quadratic_rate(kappa: float, lr: np.ndarray, momentum: float, k: int | None = None,
                   alpha: float | None = None, spectrum: str = "interval") -> np.ndarray:
    """Convergence rate 1 - rho per inner step on a quadratic of condition number kappa (L = 1).

    rho is the largest `step_radius` over the Hessian's eigenvalues a, with u = gamma a:
    `spectrum="extremes"` takes a in {1/kappa, 1} (a quadratic with just those eigenvalues);
    `spectrum="interval"` takes every a in [1/kappa, 1] (the worst case over all quadratics of
    that condition number). For momentum alone both agree, since rho(u) falls, stays at
    sqrt(beta), then rises; Lookahead's rho(u) oscillates with the phase of M^k, so its interior
    maxima are located numerically (`_max_on_interval`). Negative values mean divergence.

    Returns:
        Array with the shape of lr.
    """
    if kappa < 1:
        raise ValueError(f"condition number kappa must be >= 1, got {kappa}")
    if spectrum not in ("interval", "extremes"):
        raise ValueError(f"spectrum must be 'interval' or 'extremes', got {spectrum!r}")
    lr = np.asarray(lr, float)
    flat = lr.ravel()

    def f(u: np.ndarray) -> np.ndarray:
        return step_radius(u, momentum, k, alpha)

    if spectrum == "extremes" or kappa == 1:
        rho = np.maximum(f(flat / kappa), f(flat))
    else:
        rho = _max_on_interval(f, flat / kappa, flat)
    return (1.0 - rho).reshape(lr.shape)

