"""Noisy quadratic model (paper §3) trained through the real loop with the real optimizers.

Protocol: ``chains`` independent replicas x of the default NQM (``experiments/nqm/problem.py``:
a_i = sigma_i^2 = 1/i, x0_i = 1) train side by side as one (chains, d) parameter. Each step
draws a fresh target c ~ N(0, diag(sigma^2)) per replica and takes the loss
1/2 sum_i a_i (x_i - c_i)^2, whose gradient a_i (x_i - c_i) is exactly the model of §3; every
optimizer here acts elementwise, so the replicas are independent runs and their spread is the
variance the analytic module predicts. Evaluation reports the expected loss
E_c[L(x)] = 1/2 sum_i a_i (x_i^2 + sigma_i^2) averaged over replicas (``val_loss``), which
estimates 1/2 sum_i a_i (E[x_i]^2 + V[x_i] + sigma_i^2).
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from experiments.config import Config
from experiments.nqm.problem import default_problem
from experiments.tasks.base import Task, batch_generator


class Replicas(nn.Module):
    def __init__(self, x0: torch.Tensor, chains: int) -> None:
        super().__init__()
        self.x = nn.Parameter(x0.expand(chains, -1).clone())


def build(cfg: Config, device: torch.device) -> Task:
    t = cfg.task
    dtype = getattr(torch, t.dtype)
    a, sigma2, x0 = (torch.as_tensor(v, dtype=dtype, device=device) for v in default_problem(t.dim).arrays())
    sigma = sigma2.sqrt()
    model = Replicas(x0, t.chains).to(device)

    def train_batches(epoch: int, start: int) -> Iterator[torch.Tensor]:
        for i in range(start, t.steps_per_epoch):
            g = batch_generator(cfg.seed, epoch, i)
            yield torch.randn(t.chains, t.dim, generator=g, dtype=dtype).to(device) * sigma

    def loss(m: nn.Module, c: torch.Tensor, carry: None):
        per_chain = 0.5 * (a * (m.x - c) ** 2).sum(dim=1)
        total = per_chain.sum()
        # The value logged is the mean over replicas; the gradient is that of the sum, so each
        # replica sees exactly its own gradient a (x - c), independent of the replica count.
        return per_chain.mean().detach() + (total - total.detach()), carry

    def evaluate(m: nn.Module) -> dict:
        x = m.x.detach()
        expected = 0.5 * (a * (x**2 + sigma2)).sum(dim=1)
        return {"val_loss": expected.mean().item(),
                "val_excess_loss": (0.5 * (a * x**2).sum(dim=1)).mean().item()}

    return Task(model=model, steps_per_epoch=t.steps_per_epoch, train_batches=train_batches, loss=loss,
                evaluate=evaluate, target_metric="val_loss", higher_is_better=False,
                examples_per_batch=t.chains)
