"""Lookahead under Hugging Face Accelerate (``Accelerator().prepare``), on one CPU process.

Accelerate wraps the optimizer in an ``AcceleratedOptimizer``, which delegates ``step`` and the
state dicts (and round-trips the state dict once at ``prepare`` to place it on the device);
with gradient accumulation it calls ``step()`` only at the end of each accumulation window, so
k counts optimizer steps, not micro-batches.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from lookahead import Lookahead

accelerate = pytest.importorskip("accelerate")

K = 3


def fresh_accelerator(**kwargs):
    """A new Accelerator, as in a new job (Accelerate keeps its state in singletons)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return accelerate.Accelerator(cpu=True, **kwargs)


@pytest.fixture(autouse=True)
def _reset_accelerate():
    yield
    fresh_accelerator()


def make(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return model, Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=K, alpha=0.5)


def x_of(t):
    return torch.randn(16, 4, generator=torch.Generator().manual_seed(t))


def slow_of(lookahead):
    return [lookahead.state[p]["slow_param"] for g in lookahead.param_groups for p in g["params"]]


def test_prepare_trains_syncs_every_k_and_resumes_with_save_state(tmp_path):
    accelerator = fresh_accelerator()
    model, lookahead = make()
    model, opt = accelerator.prepare(model, lookahead)
    assert opt.optimizer is lookahead

    def train(model, opt, start, stop):
        for t in range(start, stop):
            opt.zero_grad()
            accelerator.backward(model(x_of(t)).square().mean())
            opt.step()
            if (t + 1) % K == 0:  # a sync: the parameters are the new slow weights
                assert_close(slow_of(opt.optimizer), list(model.parameters()), rtol=0, atol=0)
            else:
                assert not torch.equal(slow_of(opt.optimizer)[0], next(model.parameters()))

    train(model, opt, 0, 4)  # one step into the second period
    accelerator.save_state(tmp_path / "ckpt")
    train(model, opt, 4, 9)

    accelerator = fresh_accelerator()
    model2, lookahead2 = make(seed=1)
    model2, opt2 = accelerator.prepare(model2, lookahead2)
    accelerator.load_state(tmp_path / "ckpt")
    assert lookahead2.fast_steps == 4
    train(model2, opt2, 4, 9)
    assert_close(list(model2.parameters()), list(model.parameters()), rtol=0, atol=0)
    assert_close(slow_of(lookahead2), slow_of(lookahead), rtol=0, atol=0)


def test_gradient_accumulation_counts_optimizer_steps():
    accumulate = 2
    accelerator = fresh_accelerator(gradient_accumulation_steps=accumulate)
    model, lookahead = make()
    model, opt = accelerator.prepare(model, lookahead)
    for t in range(4 * K):  # 4k micro-batches: 2k optimizer steps, 2 syncs
        with accelerator.accumulate(model):
            accelerator.backward(model(x_of(t)).square().mean())  # scaled by 1/accumulate
            opt.step()
            opt.zero_grad()
    assert lookahead.fast_steps == 2 * K

    reference, ref = make()  # the same by hand: one step() per `accumulate` micro-batches
    for s in range(2 * K):
        ref.zero_grad()
        for t in range(accumulate * s, accumulate * (s + 1)):
            (reference(x_of(t)).square().mean() / accumulate).backward()
        ref.step()
    assert ref.fast_steps == 2 * K
    assert_close(list(model.parameters()), list(reference.parameters()), rtol=0, atol=0)
    assert_close(slow_of(lookahead), slow_of(ref), rtol=0, atol=0)
