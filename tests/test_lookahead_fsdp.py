"""Lookahead under FSDP2 (``fully_shard``): two forked CPU processes (gloo on 127.0.0.1).

The model mixes a module sharded on a 1-D mesh (placement Shard(0)), one sharded on a 2-D
(replicate x shard) mesh, and a plain, unsharded module whose gradients are averaged by hand,
and the two parameter groups mix them (the second with its own alpha). FSDP2 averages the
gradients over the ranks, so two ranks on their own halves of a batch must follow the
trajectory of one process on the whole batch, up to the order of float additions.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.debug import CommDebugMode

from lookahead import Lookahead
from lookahead._dtensor import copy_like
from test_lookahead_ddp import WORLD_SIZE, batch, spawn

K, STEPS = 2, 7  # three syncs, then one step into the fourth period
INNER = {
    "sgd_momentum": lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9),
    "adamw": lambda groups: torch.optim.AdamW(groups, lr=1e-2, weight_decay=0.1),
}
RUNS = [(name, pullback) for name in INNER for pullback in ("none", "pullback")]
# Max |difference| measured between the 2-rank and the 1-process run (torch 2.14.1, CPU, float32):
# 3.0e-8, from the order of the additions in the gradient averaging.
ATOL = 1e-6


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))


def build(model, name, pullback, k=K):
    groups = [
        {"params": [*model[0].parameters(), *model[4].parameters()]},  # sharded + plain
        {"params": list(model[2].parameters()), "lookahead_alpha": 0.8},  # 2-D mesh
    ]
    return Lookahead(INNER[name](groups), k=k, alpha=0.5, pullback=pullback)


def shard(model):
    fully_shard(model[0], mesh=init_device_mesh("cpu", (WORLD_SIZE,)))
    fully_shard(model[2], mesh=init_device_mesh("cpu", (1, WORLD_SIZE), mesh_dim_names=("replicate", "shard")))
    return model  # model[4] stays a plain module


def train_step(model, opt, x):
    opt.zero_grad()
    model(x).square().mean().backward()
    for p in model[4].parameters():  # the unsharded module: average its gradients by hand
        dist.all_reduce(p.grad)
        p.grad /= WORLD_SIZE
    opt.step()


def local(t):
    return t.to_local() if isinstance(t, DTensor) else t


def full(t):
    return t.full_tensor() if isinstance(t, DTensor) else t.detach().clone()


def snapshot(model, opt):
    params = list(model.parameters())
    return [full(p) for p in params], [full(opt.state[p]["slow_param"]) for p in params]


def worker(rank, out):
    results = {}
    for name, pullback in RUNS:
        model = shard(make_model())
        opt = build(model, name, pullback)
        for t in range(STEPS):
            train_step(model, opt, batch(rank, t))
        results[name, pullback] = snapshot(model, opt)

    # The layout: phi and every pullback copy are DTensors laid out like their parameter.
    params = list(model.parameters())
    for p in params:
        for copy in [opt.state[p]["slow_param"], *opt.state[p]["pullback_state"].values()]:
            assert isinstance(copy, DTensor) == isinstance(p, DTensor)
            if isinstance(p, DTensor):
                assert copy.device_mesh == p.device_mesh and copy.placements == p.placements
                assert copy.to_local().shape == p.to_local().shape
    # Copies of another layout take this one (loading a plain, full tensor keeps this rank's shard).
    for p in params:
        assert torch.equal(local(copy_like(p, full(p))), local(p))
    # The swap and the sync work shard by shard: no collective at all, and the foreach
    # kernels see plain local tensors, never DTensors.
    kernel, seen = torch._foreach_lerp_, []
    torch._foreach_lerp_ = lambda a, b, w: (seen.extend(type(t) for t in a), kernel(a, b, w))
    opt.foreach = True
    try:
        with CommDebugMode() as comm:
            with opt.slow_weights():
                swapped = all(torch.equal(local(p), local(opt.state[p]["slow_param"])) for p in params)
            opt._sync()
    finally:
        torch._foreach_lerp_ = kernel
    assert swapped and comm.get_total_counts() == 0, comm.get_comm_counts()
    assert seen and not any(issubclass(t, DTensor) for t in seen)
    if rank == 0:
        torch.save(results, out)


def test_fsdp2_matches_one_process(tmp_path):
    spawn(worker, tmp_path / "fsdp.pt")
    sharded = torch.load(tmp_path / "fsdp.pt")
    worst = 0.0
    for name, pullback in RUNS:
        model = make_model()
        opt = build(model, name, pullback)
        for t in range(STEPS):
            opt.zero_grad()
            model(torch.cat([batch(r, t) for r in range(WORLD_SIZE)])).square().mean().backward()
            opt.step()
        for got, want in zip(sharded[name, pullback], snapshot(model, opt)):
            for g, w in zip(got, want):
                worst = max(worst, (g - w).abs().max().item())
                torch.testing.assert_close(g, w, rtol=0, atol=ATOL)
    print(f"max |FSDP2 - one process| = {worst:.3g}")
