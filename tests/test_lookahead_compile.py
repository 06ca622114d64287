"""``torch.compile(opt.step)``: compiled once, never recompiled as the counter advances.

The counter and the sync run eagerly behind a graph break (``Lookahead._advance``), so dynamo
never guards on the counter's value. The inner optimizer compiles twice in its first two steps
(torch.optim's step has one graph without state and one with it); from then on, through syncs
of groups with different periods and the pullback of Adam's moments, nothing compiles again.
Recompiles are decided by dynamo's guards, whatever the backend; ``aot_eager`` keeps the test
fast (inductor's code generation takes ~10 s on a cold cache), and the benchmark
(``scripts/bench/bench_lookahead.py --compile``) times the inductor step.
"""

from __future__ import annotations

import torch
import torch._dynamo
from torch._dynamo.utils import counters
from torch.testing import assert_close

from lookahead import Lookahead


def build():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    groups = [{"params": list(model[0].parameters())}, {"params": list(model[2].parameters()), "lookahead_k": 3}]
    return model, Lookahead(torch.optim.AdamW(groups, lr=1e-2), k=2, alpha=0.5, pullback="pullback")


def train(model, step, steps, start=0):
    for t in range(start, start + steps):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(t))
        model.zero_grad()
        model(x).square().mean().backward()
        step()


def test_compiled_step_never_recompiles_and_matches_eager():
    torch._dynamo.reset()
    counters.clear()
    model, opt = build()
    compiled = torch.compile(opt.step, backend="aot_eager")
    train(model, compiled, 2)  # the inner optimizer's two graphs
    compiled_before = (counters["frames"]["total"], counters["stats"]["unique_graphs"])
    with torch._dynamo.config.patch(error_on_recompile=True):
        train(model, compiled, 12, start=2)  # syncs at 4, 6, 8, 10, 12, 14 and 3, 6, 9, 12
    assert (counters["frames"]["total"], counters["stats"]["unique_graphs"]) == compiled_before
    assert opt.fast_steps == 14 and [g["lookahead_step"] for g in opt.param_groups] == [14, 14]

    eager_model, eager = build()
    train(eager_model, eager.step, 14)
    assert_close(list(model.parameters()), list(eager_model.parameters()))
    slow = [[o.state[p]["slow_param"] for p in m.parameters()] for m, o in ((model, opt), (eager_model, eager))]
    assert_close(*slow)
