"""The NQM task trained through the suite's real loop and optimizers agrees with the exact moments.

Each of ``chains`` replicas is an independent run of the optimizer (every optimizer here acts
elementwise), so at the last step the replicas' sample mean and variance per coordinate estimate
E[x_i] and V[x_i], which `experiments.nqm.analytic` gives exactly. The state is an affine map
of Gaussian noise, hence Gaussian: with n replicas the sample variance has relative std
sqrt(2 / (n - 1)) (2.2 % at n = 4000) and the sample mean has std sqrt(V / n). We allow 5 of
each. The last step is a sync step, where the parameters hold the slow weights phi.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from experiments.nqm import analytic
from experiments.nqm.problem import default_problem
from experiments.optim import build_optimizer
from experiments.tasks import build_task
from experiments.train import fit
from conftest import compose

CHAINS, DIM, STEPS, K, ALPHA = 4000, 10, 300, 5, 0.5


@pytest.mark.parametrize(("optim", "lr", "momentum"), [
    ("sgd", 0.5, 0.0), ("lookahead_sgd", 0.5, 0.0), ("sgd", 0.1, 0.9), ("lookahead_sgd", 0.1, 0.9),
])
def test_trained_replicas_match_the_exact_moments(optim: str, lr: float, momentum: float, tmp_path: Path) -> None:
    overrides = [f"optim={optim}", "task=nqm", "scale=smoke", f"task.dim={DIM}", f"task.chains={CHAINS}",
                 "task.steps_per_epoch=100", f"trainer.epochs={STEPS // 100}", f"trainer.max_steps={STEPS}", "trainer.eval_every=1",
                 f"optim.lr={lr}", f"optim.momentum={momentum}", "trainer.progress=false"]
    if optim.startswith("lookahead"):
        overrides += [f"optim.lookahead.k={K}", f"optim.lookahead.alpha={ALPHA}"]
    cfg = OmegaConf.to_object(compose(overrides))
    task = build_task(cfg, torch.device("cpu"))
    fit(cfg, task, build_optimizer(cfg.optim, task.model), tmp_path)
    x = task.model.x.detach().double().numpy()

    problem = default_problem(DIM)
    if optim.startswith("lookahead"):
        exact = analytic.lookahead_moments(problem, lr, K, ALPHA, STEPS // K, momentum)
    else:
        exact = analytic.sgd_moments(problem, lr, STEPS, momentum)
    mean, var = exact.mean[-1], exact.var[-1]
    assert np.all(np.abs(x.var(axis=0, ddof=1) - var) <= 5 * math.sqrt(2 / (CHAINS - 1)) * var)
    assert np.all(np.abs(x.mean(axis=0) - mean) <= 5 * np.sqrt(var / CHAINS))
