"""Lookahead under DDP through the real loop: two CPU processes (gloo on 127.0.0.1).

``experiments.train.fit`` wraps the model in DistributedDataParallel when WORLD_SIZE > 1. Each
rank takes positions ``rank::2`` of every global batch (``data.batch_size`` is global), DDP
averages the gradients, so every rank makes the same fast steps and the same syncs: all
parameters and slow weights must be bit-identical across ranks, and equal, up to float
rounding of the gradient average, to one process training on the whole global batch.

The model has no BatchNorm on purpose: under DDP each rank normalises with its own half-batch
statistics (by design, as in torch's DDP), which a single process on the full batch cannot match.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.testing import assert_close

from conftest import compose
from experiments import distributed
from experiments.optim import build_optimizer
from experiments.tasks.base import Task, batch_generator
from experiments.train import fit

WORLD, N, N_VAL, DIM, CLASSES = 2, 64, 20, 6, 3
OVERRIDES = ["task=nqm", "optim=lookahead_sgd", "scale=smoke", "optim.lr=0.2", "optim.momentum=0.9",
             "optim.lookahead.k=3", "optim.lookahead.alpha=0.5", "data.batch_size=16", "trainer.max_steps=12",
             "trainer.log_every=2", "trainer.eval_every=0.5", "trainer.device=cpu", "trainer.threads=1"]


def make_task(cfg) -> Task:
    """A small MLP classifier on fixed random data, sharded per rank like the real tasks."""
    g = torch.Generator().manual_seed(1234)
    x, y = torch.randn(N, DIM, generator=g), torch.randint(0, CLASSES, (N,), generator=g)
    xv, yv = torch.randn(N_VAL, DIM, generator=g), torch.randint(0, CLASSES, (N_VAL,), generator=g)
    torch.manual_seed(cfg.seed)
    model = nn.Sequential(nn.Linear(DIM, 16), nn.Tanh(), nn.Linear(16, CLASSES))
    bs = cfg.data.batch_size

    def train_batches(epoch: int, start: int):
        order = torch.randperm(N, generator=batch_generator(cfg.seed, epoch))
        for i in range(start, N // bs):
            idx = distributed.shard(order[i * bs : (i + 1) * bs])
            yield x[idx], y[idx]

    def loss(m, batch, carry):
        return F.cross_entropy(m(batch[0]), batch[1]), carry

    def evaluate(m):
        idx = distributed.shard(torch.arange(N_VAL))
        logits = m(xv[idx])
        sums = [F.cross_entropy(logits, yv[idx], reduction="sum").item(), (logits.argmax(1) == yv[idx]).sum().item(),
                len(idx)]
        total, correct, count = distributed.all_sum(sums, torch.device("cpu"))
        return {"val_loss": total / count, "val_acc": correct / count}

    return Task(model=model, steps_per_epoch=N // bs, train_batches=train_batches, loss=loss, evaluate=evaluate,
                target_metric="val_acc")


def train_once(cfg, run_dir: Path):
    """Fit through the real loop; returns (fast and slow weights flattened, fit's result)."""
    run_dir.mkdir(exist_ok=True)
    task = make_task(cfg)
    opt = build_optimizer(cfg.optim, task.model)
    result = fit(cfg, task, opt, run_dir)
    fast = [p.detach().clone().flatten() for p in task.model.parameters()]
    with opt.optimizer.slow_weights():
        slow = [p.detach().clone().flatten() for p in task.model.parameters()]
    return torch.cat(fast + slow), result


def worker(rank: int, cfg, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    assert distributed.init(torch.device("cpu")) == (rank, WORLD)
    try:
        weights, result = train_once(cfg, Path(out_dir) / "ddp")
        gathered = [torch.empty_like(weights) for _ in range(WORLD)]
        dist.all_gather(gathered, weights)
        if rank == 0:
            torch.save({"weights": torch.stack(gathered), "result": result}, Path(out_dir) / "ddp.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lookahead_under_ddp_keeps_ranks_identical_and_matches_one_process(tmp_path):
    import torch._dynamo  # noqa: F401  (DDP imports it; import once here, not in each forked rank)

    cfg = OmegaConf.to_object(compose(OVERRIDES))
    mp.start_processes(worker, args=(cfg, free_port(), str(tmp_path)), nprocs=WORLD, start_method="fork")
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=False)
    weights, result = ddp["weights"], ddp["result"]
    assert result["status"] == "completed" and result["steps"] == 12
    # Every rank holds the same fast and slow weights, bit for bit, after 4 syncs (k=3, 12 steps).
    assert torch.equal(weights[0], weights[1])
    assert (tmp_path / "ddp" / "metrics.csv").exists()

    single, single_result = train_once(cfg, tmp_path / "single")
    diff = (weights[0] - single).abs().max().item()
    print(f"max |DDP - single| over fast and slow weights: {diff:.3g}")
    assert_close(weights[0], single, rtol=1e-5, atol=1e-6)
    # The slow weights moved (syncs happened), so the comparison is not of untouched values.
    initial = torch.cat([p.detach().flatten() for p in make_task(cfg).model.parameters()])
    assert not torch.equal(single[single.numel() // 2 :], initial)
    for key, value in single_result["final"].items():  # metrics reduced over ranks = one process
        assert abs(result["final"][key] - value) < 1e-5, key


def test_sync_bn_is_off_by_default_and_a_clear_error_on_cpu(monkeypatch, tmp_path):
    import pytest

    from experiments.errors import UserError

    assert compose(OVERRIDES).trainer.sync_bn is False
    cfg = OmegaConf.to_object(compose([*OVERRIDES, "trainer.sync_bn=true"]))
    task = make_task(cfg)
    opt = build_optimizer(cfg.optim, task.model)
    monkeypatch.setattr(distributed, "rank_world", lambda: (0, 2))  # as under torchrun, before DDP wraps
    with pytest.raises(UserError, match="trainer.sync_bn=true needs CUDA"):
        fit(cfg, task, opt, tmp_path)
