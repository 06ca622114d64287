"""Noisy quadratic model (NQM) of the paper's Section 3: problem definition and exact analysis.

`problem` defines the default problem shared by the trained task, the analytic module and the
theory tables; `analytic` propagates the exact mean and variance recursions and gives the fixed
points and deterministic convergence rates. Both depend on numpy only.
"""
