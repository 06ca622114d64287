"""The GPU path on a CUDA device: loop numerics, AMP skips, foreach sync, device moves, CUDA graphs.

Every test here is marked ``cuda``: ``tests/conftest.py`` skips them where no CUDA device is
visible, and ``make gpu-check`` (``scripts/gpu_check.py``) runs them with ``pytest -m cuda``.
What each one shows on a GPU:

- the loop's step runs under bf16 autocast with NHWC (channels_last) inputs and weights, and a
  smoke-scale Lookahead run completes with finite losses;
- the same run with ``trainer.compile=true trainer.compile_mode=reduce-overhead`` (CUDA graphs)
  completes, and a captured graph reads the weights that the eager optimizer step and the
  Lookahead sync wrote in place (same addresses, new values);
- a step that ``torch.amp.GradScaler`` skips (fp16, inf or NaN gradients) leaves the weights and
  the Lookahead counter as they were;
- the foreach sync equals the for-loop sync bit for bit on CUDA, across dtypes;
- slow weights built on CPU follow ``model.cuda()`` done after the optimizer was built.

The 2-rank NCCL run is in ``tests/test_cuda_ddp.py`` (it needs two GPUs).
"""

from __future__ import annotations

import copy
import csv
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import experiments.tasks as tasks
from conftest import train
from fakes import write_cifar
from lookahead import Lookahead

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar"), n_train=64, n_test=32)


def _smoke(root, *extra):
    return ["task=cifar10", "optim=lookahead_sgd", "scale=smoke", f"data.root={root}", "trainer.device=cuda",
            "trainer.max_steps=12", "trainer.eval_every=0.5", "trainer.log_every=2", *extra]


def _losses(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f) if r.get("train_loss")]


def _watch_steps(monkeypatch, seen):
    """Record, at every training step, the input's device and layout and the autocast state,
    and the dtype of the model's output (a forward hook)."""
    build = tasks.build_task

    def patched(cfg, device):
        task = build(cfg, device)
        loss = task.loss

        def watched(model, batch, carry):
            x = batch[0]
            seen.append({"cuda": x.is_cuda, "nhwc": x.is_contiguous(memory_format=torch.channels_last),
                         "autocast": torch.is_autocast_enabled("cuda"),
                         "dtype": torch.get_autocast_dtype("cuda")})
            return loss(model, batch, carry)

        task.loss = watched
        task.model.register_forward_hook(lambda m, i, out: seen.append({"out": out.dtype}) if m.training else None)
        return task

    monkeypatch.setattr(tasks, "build_task", patched)


def test_loop_step_runs_in_bf16_autocast_with_channels_last(cifar_root, tmp_path, monkeypatch):
    seen = []
    _watch_steps(monkeypatch, seen)
    m = train(_smoke(cifar_root), tmp_path)
    assert m["status"] == "completed" and m["steps"] == 12
    assert "CUDA" in m["device"] and m["task_info"]["memory_format"] == "channels_last"
    steps = [s for s in seen if "cuda" in s]
    outs = [s["out"] for s in seen if "out" in s]
    assert len(steps) == 12 and all(s["cuda"] and s["nhwc"] and s["autocast"] for s in steps)
    assert {s["dtype"] for s in steps} == {torch.bfloat16} and set(outs) == {torch.bfloat16}
    losses = _losses(tmp_path)
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert math.isfinite(m["final"]["test_acc_slow"])


def _cudagraph_skips() -> int:
    """How often inductor fell back from CUDA graphs to plain kernels (it says why in a warning)."""
    from torch._dynamo.utils import counters

    return counters["inductor"]["cudagraph_skips"]


def test_loop_trains_with_cuda_graphs(cifar_root, tmp_path):
    # reduce-overhead captures forward and backward as CUDA graphs; the optimizer step and the
    # sync run eagerly between replays. (The default mode compiles in scripts/bench/bench_throughput.py.)
    skips = _cudagraph_skips()
    m = train(_smoke(cifar_root, "trainer.compile=true", "trainer.compile_mode=reduce-overhead"), tmp_path)
    assert m["status"] == "completed" and m["steps"] == 12
    assert _cudagraph_skips() == skips, "inductor did not use CUDA graphs for the loop's model (see its warning)"
    assert m["config"]["trainer"]["compile_mode"] == "reduce-overhead"
    assert all(math.isfinite(v) for v in _losses(tmp_path))


def _conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def test_cuda_graph_reads_the_weights_the_eager_step_and_sync_write():
    model = _conv_net().to(CUDA, memory_format=torch.channels_last)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=2, alpha=0.5)
    graphed = torch.compile(model, mode="reduce-overhead")
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(32, 3, 16, 16, generator=g).to(CUDA).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,), generator=g).to(CUDA)
    model.eval()
    with torch.no_grad():
        before = model(x).clone()
    model.train()
    addresses = [p.data_ptr() for p in model.parameters()]
    skips = _cudagraph_skips()
    for _ in range(7):  # syncs after steps 2, 4 and 6; step 7 is a fast step past the last sync
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(graphed(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert opt.fast_steps == 7
    assert _cudagraph_skips() == skips, "the training step was not captured as a CUDA graph (see inductor's warning)"
    assert [p.data_ptr() for p in model.parameters()] == addresses  # updated in place
    model.eval()
    with torch.no_grad():
        eager = model(x).clone()
        replayed = graphed(x).clone()
        replayed_again = graphed(x).clone()
    assert not torch.allclose(eager, before)  # the weights moved
    assert_close(replayed, eager, rtol=1e-3, atol=1e-3)  # the graph sees them (fp32, inductor kernels)
    assert torch.equal(replayed, replayed_again)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_grad_scaler_skip_leaves_weights_and_counter_on_cuda(bad):
    model = _conv_net().to(CUDA, memory_format=torch.channels_last)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=2, alpha=0.5)
    scaler = torch.amp.GradScaler("cuda", init_scale=4.0)
    g = torch.Generator(device="cpu").manual_seed(2)
    x = torch.randn(16, 3, 8, 8, generator=g).to(CUDA).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,), generator=g).to(CUDA)
    for t in range(5):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        if t in (1, 2):  # forced: one bad gradient entry makes the scaler skip the whole step
            model[0].weight.grad[0, 0, 0, 0] = bad
        before = [p.detach().clone() for p in model.parameters()]
        scaler.step(opt)
        scaler.update()
        if t in (1, 2):
            assert_close(list(model.parameters()), before, rtol=0, atol=0)
    assert opt.fast_steps == 3  # five calls, two skipped
    assert scaler.get_scale() == 1.0  # halved twice
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _mixed_params(seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    shapes = [(64, 3, 3, 3), (64,), (128, 64), (10,), ()]
    params = [nn.Parameter(torch.randn(s, generator=g).to(CUDA)) for s in shapes]
    params.append(nn.Parameter(torch.randn(33, generator=g).to(CUDA, torch.bfloat16)))  # its own foreach group
    return params


@pytest.mark.parametrize("pullback", ["none", "pullback"])
def test_foreach_sync_equals_for_loop_on_cuda(pullback):
    runs = []
    for foreach in (True, False):
        params = _mixed_params(0)
        opt = Lookahead(torch.optim.SGD(params, lr=0.05, momentum=0.9), k=3, alpha=0.6, pullback=pullback,
                        foreach=foreach)
        for t in range(8):
            g = torch.Generator(device="cpu").manual_seed(100 + t)
            for p in params:
                p.grad = torch.randn(p.shape, generator=g).to(CUDA, p.dtype)
            opt.step()
        with opt.slow_weights():
            inside = [p.detach().clone() for p in params]
        runs.append(([p.detach().clone() for p in params], inside))
    for a, b in zip(*runs):
        assert_close(a, b, rtol=0, atol=0)


def test_slow_weights_follow_model_cuda_after_building():
    cpu_built = _conv_net()
    reference = copy.deepcopy(cpu_built).to(CUDA)
    opt = Lookahead(torch.optim.SGD(cpu_built.parameters(), lr=0.1, momentum=0.9), k=2, alpha=0.5)
    cpu_built.cuda()  # same Parameter objects, new data on the GPU
    ref_opt = Lookahead(torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9), k=2, alpha=0.5)
    g = torch.Generator(device="cpu").manual_seed(3)
    x = torch.randn(8, 3, 8, 8, generator=g).to(CUDA)
    y = torch.randint(0, 10, (8,), generator=g).to(CUDA)
    for model, o in ((cpu_built, opt), (reference, ref_opt)):
        for _ in range(5):
            o.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            o.step()
    slow = [opt.state[p]["slow_param"] for p in cpu_built.parameters()]
    assert {s.device.type for s in slow} == {"cuda"}
    assert_close(list(cpu_built.parameters()), list(reference.parameters()), rtol=0, atol=0)
    assert_close(slow, [ref_opt.state[p]["slow_param"] for p in reference.parameters()], rtol=0, atol=0)
    with opt.slow_weights():
        assert cpu_built(x).is_cuda
