"""The noisy quadratic model (NQM) problem and its default instance.

Model (paper Section 3, diagonal case): per coordinate i the stochastic loss is

    L_hat(x) = 1/2 * sum_i a_i * (x_i - c_i)^2,    c_i ~ N(0, sigma_i^2) redrawn every step,

so the stochastic gradient is a_i * (x_i - c_i) and the expected loss is

    E[L_hat] = 1/2 * sum_i a_i * (E[x_i]^2 + V[x_i] + sigma_i^2).

The optimum is x* = 0 without loss of generality; the irreducible part 1/2 sum_i a_i sigma_i^2
is the loss at x = x*.

The paper's own spectrum, dimension and initial point are not known to us. Our default follows
the spectrum of Zhang et al. (2019), "Which algorithmic choices matter at which batch sizes?
Insights from a noisy quadratic model" (a different paper by overlapping authors): curvatures
a_i = 1/i and noise variances sigma_i^2 = 1/i (noise covariance equal to the curvature). The
dimension d = 100 and the initial point x0_i = 1 are our choices, made so that the slowest
coordinate (a = 1/d) still converges within about 10^4 steps at moderate learning rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_DIM = 100


@dataclass(frozen=True)
class NQMProblem:
    """A diagonal noisy quadratic model.

    Attributes:
        a: curvatures a_i > 0 (the diagonal of the Hessian).
        sigma2: noise variances sigma_i^2 >= 0 of the target c_i.
        x0: the deterministic initial point x_i(0).
        name: a short description used to label tables and figures.
    """

    a: tuple[float, ...]
    sigma2: tuple[float, ...]
    x0: tuple[float, ...]
    name: str = "custom NQM"

    def __post_init__(self) -> None:
        for field in ("a", "sigma2", "x0"):
            values = tuple(float(v) for v in np.asarray(getattr(self, field), dtype=float).ravel())
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"NQMProblem.{field} must be finite, got {values}")
            object.__setattr__(self, field, values)
        if not (len(self.a) == len(self.sigma2) == len(self.x0)) or not self.a:
            raise ValueError(
                "NQMProblem.a, sigma2 and x0 must be non-empty and of equal length, got "
                f"{len(self.a)}, {len(self.sigma2)}, {len(self.x0)}"
            )
        if min(self.a) <= 0:
            raise ValueError(f"NQMProblem.a must be positive, got min {min(self.a)}")
        if min(self.sigma2) < 0:
            raise ValueError(f"NQMProblem.sigma2 must be >= 0, got min {min(self.sigma2)}")

    @property
    def dim(self) -> int:
        """Number of coordinates d."""
        return len(self.a)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (a, sigma2, x0) as float64 arrays of shape (d,)."""
        return np.array(self.a), np.array(self.sigma2), np.array(self.x0)


def default_problem(dim: int = DEFAULT_DIM, x0: float = 1.0) -> NQMProblem:
    """The suite's default NQM: a_i = sigma_i^2 = 1/i for i = 1..dim, x0_i = x0.

    Args:
        dim: dimension d (our default 100; see the module docstring for why).
        x0: the common initial value of every coordinate.

    Returns:
        The frozen problem, named so that figures can state which problem they show.

    Raises:
        ValueError: if dim < 1.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    inv = 1.0 / np.arange(1, dim + 1, dtype=float)
    return NQMProblem(
        a=tuple(inv),
        sigma2=tuple(inv),
        x0=(float(x0),) * dim,
        name=f"NQM d={dim}, a_i=sigma_i^2=1/i, x0_i={x0:g}",
    )

