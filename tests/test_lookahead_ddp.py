"""Lookahead under DistributedDataParallel: two forked CPU processes (gloo on 127.0.0.1).

DDP all-reduces the gradients before ``step()``, so every rank makes the same fast steps and
the same syncs; the parameters and slow weights must be identical on every rank, and equal to
a single process that trains on the union of the ranks' batches.
"""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.testing import assert_close

from lookahead import Lookahead

WORLD_SIZE, STEPS, K = 2, 6, 2  # three syncs


def batch(rank, t):
    return torch.randn(8, 4, generator=torch.Generator().manual_seed(100 * t + rank))


def build(model):
    return Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=K, alpha=0.5)


def worker(rank, out_dir):
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
    opt = build(model)
    for t in range(STEPS):
        opt.zero_grad()
        model(batch(rank, t)).square().mean().backward()
        opt.step()
    params = list(model.parameters())
    flat = torch.cat([p.detach().flatten() for p in params] + [opt.state[p]["slow_param"].flatten() for p in params])
    gathered = [torch.empty_like(flat) for _ in range(WORLD_SIZE)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save(torch.stack(gathered), f"{out_dir}/gathered.pt")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _member(rank, port, world_size, fn, args):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


def spawn(fn, *args, world_size=WORLD_SIZE):
    """Runs ``fn(rank, *args)`` in ``world_size`` forked processes that form a gloo process
    group on 127.0.0.1; a failure in any of them is raised here. Shared by the FSDP2, DCP and
    README tests (``from test_lookahead_ddp import spawn``)."""
    # DDP's and FSDP2's code import torch._dynamo (seconds); import it once here so that the
    # forked processes inherit it instead of each importing it.
    import torch._dynamo  # noqa: F401

    mp.start_processes(_member, args=(free_port(), world_size, fn, args), nprocs=world_size, start_method="fork")


def test_ddp_ranks_stay_identical(tmp_path):
    spawn(worker, str(tmp_path))
    gathered = torch.load(tmp_path / "gathered.pt")
    assert torch.equal(gathered[0], gathered[1])

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = build(model)
    for t in range(STEPS):
        opt.zero_grad()
        model(torch.cat([batch(r, t) for r in range(WORLD_SIZE)])).square().mean().backward()
        opt.step()
    params = list(model.parameters())
    single = torch.cat([p.detach().flatten() for p in params] + [opt.state[p]["slow_param"].flatten() for p in params])
    assert_close(gathered[0], single)
