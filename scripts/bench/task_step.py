"""One training step of a suite task, built and timed outside the loop, for the benchmarks.

A :class:`Stepper` is the step ``experiments.train.fit`` takes (autocast in the run's
precision, ``task.loss``, backward, gradient clipping, ``optimizer.step``, ``zero_grad``) on a
task composed exactly as ``run.py task=... scale=...`` composes it, with the model optionally
wrapped in ``torch.compile`` as ``trainer.compile=true`` does. The batches are the first ones of
epoch 0, held in memory, so a block of steps costs compute only (the suite's loop adds < 5 %:
results/bench/loop_cpu.md).

Work per step is counted by what the step processes: CIFAR images (``len(y)``), PTB target
tokens (``y.numel()``), and translation target pieces without padding (``y_out != PAD``, the
eos included). FLOPs of one forward + backward come from ``torch.utils.flop_counter`` on the
eager model; it has no formula for oneDNN's LSTM layer, so :data:`LSTM_FLOPS` adds one
(2 x tokens x (|W_ih| + |W_hh|) forward, twice that backward; gate nonlinearities not counted).
The optimizer step is not counted (a few FLOPs per parameter).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from experiments import runtime, sweep
from experiments.optim import build_optimizer
from experiments.tasks import build_task
from experiments.train import total_steps

class Bench(NamedTuple):
    """A benchmarked configuration: the task, the optimizer its headline runs use, the unit of
    its throughput, the training steps of one timed block (about 2-4 s on 2 cores), and the
    overrides that make its protocol (e.g. a recipe)."""

    task: str
    optim: str
    unit: str
    steps: int
    overrides: Tuple[str, ...] = ()


# name -> what is benchmarked; "airbench" is CIFAR-10 under recipe=airbench (its Lookahead arm)
TASKS = {"cifar10": Bench("cifar10", "lookahead_sgd", "img", 16),
         "airbench": Bench("cifar10", "lookahead_sgd", "img", 4, ("recipe=airbench",)),
         "ptb": Bench("ptb", "lookahead_sgd", "tok", 40), "wmt14": Bench("wmt14", "lookahead_adam", "tok", 6)}


def task_parser(doc: str) -> argparse.ArgumentParser:
    """The options every per-task benchmark takes: data, scale, tasks, precisions, threads."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("LOOKAHEAD_DATA"), help="folder holding the datasets (LOOKAHEAD_DATA)")
    p.add_argument("--scale", default="cpu")
    p.add_argument("--tasks", type=lambda s: s.split(","), default=list(TASKS))
    p.add_argument("--precisions", type=lambda s: s.split(","), default=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    return p


def compose(task: str, scale: str, threads: int, precision: str, data_root: Optional[str] = None):
    """The run's config (``data_root`` plays ``LOOKAHEAD_DATA``: it holds cifar10/, ptb/, multi30k/ ...)."""
    if data_root:
        os.environ["LOOKAHEAD_DATA"] = str(data_root)
    b = TASKS[task]
    overrides = [f"task={b.task}", f"optim={b.optim}", *b.overrides, f"scale={scale}", f"trainer.threads={threads}",
                 f"trainer.precision={precision}", "trainer.device=cpu", "trainer.progress=false"]
    return OmegaConf.to_object(sweep.compose(overrides))


def examples(task: str, batch: Any) -> int:
    if TASKS[task].task == "wmt14":
        from experiments.data.spm import PAD

        return int(batch[2].ne(PAD).sum())
    return int(batch[1].numel())


def _lstm_forward(inp, w_ih, w_hh, *_args, out_shape=None, **_kwargs) -> int:
    return 2 * math.prod(inp[:-1]) * (math.prod(w_ih) + math.prod(w_hh))


def _lstm_backward(inp, w_ih, w_hh, *_args, out_shape=None, **_kwargs) -> int:
    return 2 * _lstm_forward(inp, w_ih, w_hh)  # gradients of the input and of both weight matrices


LSTM_FLOPS = {torch.ops.aten.mkldnn_rnn_layer: _lstm_forward, torch.ops.aten.mkldnn_rnn_layer_backward: _lstm_backward}


@dataclass
class Stepper:
    """A task's training step, ready to run ``step(i)`` on its i-th cached batch."""

    name: str
    cfg: Any
    task: Any
    opt: Any
    model: Any
    batches: List[Any]
    carry: Any = None
    amp: Optional[torch.dtype] = None
    info: Dict[str, Any] = field(default_factory=dict)

    def step(self, i: int) -> int:
        batch = self.batches[i % len(self.batches)]
        with torch.autocast("cpu", dtype=self.amp, enabled=self.amp is not None):
            loss, self.carry = self.task.loss(self.model, batch, self.carry)
        loss.backward()
        if self.cfg.trainer.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.task.model.parameters(), self.cfg.trainer.grad_clip)
        self.opt.optimizer.step()
        self.opt.optimizer.zero_grad(set_to_none=True)
        return examples(self.name, batch)

    def flops(self) -> int:
        """FLOPs of one eager forward + backward on the first batch (the weights do not change)."""
        counter = FlopCounterMode(display=False, custom_mapping=LSTM_FLOPS)
        batch, carry = self.batches[0], self.task.init_carry()
        with counter:  # one block: entering the counter again would reset its counts
            with torch.autocast("cpu", dtype=self.amp, enabled=self.amp is not None):
                loss, _ = self.task.loss(self.task.model, batch, carry)
            loss.backward()
        self.task.model.zero_grad(set_to_none=True)
        return counter.get_total_flops()


def build(name: str, cfg: Any, n_batches: int, compile_backend: Optional[str] = None) -> Stepper:
    """Build the task and optimizer of ``cfg`` (seeded as a run is) and cache ``n_batches`` batches."""
    device = torch.device("cpu")
    torch.manual_seed(cfg.seed)
    task = build_task(cfg, device)
    opt = build_optimizer(cfg.optim, task.model)
    model = torch.compile(task.model, backend=compile_backend) if compile_backend else task.model
    batches = []
    for batch in task.train_batches(0, 0):
        batches.append(batch)
        if len(batches) == n_batches:
            break
    return Stepper(name, cfg, task, opt, model, batches, task.init_carry(), runtime.autocast_dtype(cfg.trainer, device),
                   info={"steps_per_epoch": task.steps_per_epoch, "run_steps": total_steps(cfg, task)})


def timed_steps(stepper: Stepper, start: int, count: int) -> tuple[float, int]:
    """Wall time and examples of ``count`` steps from batch ``start``."""
    done, clock = 0, time.perf_counter()
    for i in range(start, start + count):
        done += stepper.step(i)
    return time.perf_counter() - clock, done


@contextlib.contextmanager
def threads(n: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
