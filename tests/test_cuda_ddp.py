"""Lookahead under DDP on two GPUs with NCCL: the ranks stay identical and match one process.

The CPU version (gloo) is ``tests/test_lookahead_ddp.py``; this one reuses its batches, its
optimizer and its ``free_port``, but starts the ranks with ``spawn`` rather than ``fork``: by
the time it runs, the pytest process has usually initialized CUDA (``tests/test_cuda.py``), and
a forked child cannot use CUDA then. Skipped unless two CUDA devices are visible.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.testing import assert_close

from test_lookahead_ddp import K, STEPS, batch, build, free_port

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")]
WORLD = 2


def _flat(model, opt):
    params = list(model.parameters())
    return torch.cat([p.detach().flatten() for p in params] + [opt.state[p]["slow_param"].flatten() for p in params])


def _rank(rank: int, port: int, out_dir: str) -> None:
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        device = torch.device("cuda", rank)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2).to(device), device_ids=[rank])
        opt = build(model)
        for t in range(STEPS):
            opt.zero_grad()
            model(batch(rank, t).to(device)).square().mean().backward()
            opt.step()
        flat = _flat(model, opt)
        gathered = [torch.empty_like(flat) for _ in range(WORLD)]
        dist.all_gather(gathered, flat)
        if rank == 0:
            torch.save(torch.stack(gathered).cpu(), f"{out_dir}/gathered.pt")
    finally:
        dist.destroy_process_group()


def test_nccl_ddp_ranks_stay_identical_and_match_one_process(tmp_path):
    mp.start_processes(_rank, args=(free_port(), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    gathered = torch.load(tmp_path / "gathered.pt")
    assert torch.equal(gathered[0], gathered[1])
    assert STEPS // K >= 2  # at least two syncs happened

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).cuda()
    opt = build(model)
    for t in range(STEPS):
        opt.zero_grad()
        model(torch.cat([batch(r, t) for r in range(WORLD)]).cuda()).square().mean().backward()
        opt.step()
    assert_close(gathered[0], _flat(model, opt).cpu(), rtol=1e-5, atol=1e-6)
