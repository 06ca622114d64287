"""The one training loop every task uses.

Protocol per optimizer step ``s`` (``s`` counts optimizer steps; a Lookahead ``step()`` is one
fast step and syncs every k-th call):

1. ``loss, carry = task.loss(model, batch, carry)`` (bf16 autocast on CUDA), backward,
   optional gradient-norm clipping, ``optimizer.step()``, ``scheduler.step()``;
2. ``opt.reported.after_step``: averaging runs (Polyak, EMA, SWA) fold the new iterate into
   their average once past ``optim.averaging.start`` (``experiments/reported.py``);
3. every ``trainer.log_every`` steps a ``train_loss`` row (mean over the window); a mean that
   is non-finite or above ``trainer.divergence_loss`` ends the run with status ``diverged``;
4. every ``trainer.eval_every`` epochs (and at the end) an evaluation row on the reported
   weights plus ``_fast`` and the reported kind's column (``_slow``, ``_avg``, ``_ema``,
   ``_swa``, ``_x``; see ``experiments/evaluation.py``);
   inside the ``trainer.per_update`` window, a row after every step (paper Fig. 10);
5. a checkpoint at every evaluation (or every ``trainer.checkpoint_every`` steps) and when
   SIGTERM/SIGINT arrives, after which the run stops with status ``interrupted``.

The loop never branches on the task; everything task-specific enters through :class:`Task`.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import torch
from tqdm import tqdm

from experiments import checkpoint, distributed
from experiments.checkpoint import Progress
from experiments.config import Config
from experiments.console import say
from experiments.errors import UserError
from experiments.evaluation import evaluate
from experiments.optim import Optimizers
from experiments.records import MetricsLog, atomic_torch_save
from experiments.runtime import autocast_dtype
from experiments.schedules import build_scheduler
from experiments.tasks.base import Task
from lookahead import alpha_power_schedule


class StopRequested:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequested"]:
        def handler(signum: int, _frame: Any) -> None:
            self.signum = signum

        try:
            previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        except ValueError:  # not the main thread (e.g. a threaded launcher): no handlers
            yield self
            return
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def save_snapshot(path: Path, task: Task, opt: Optimizers) -> None:
    """Fast weights (the model's parameters) and, for Lookahead, slow weights at this step."""
    path.parent.mkdir(exist_ok=True)
    fast = {n: p.detach().cpu().clone() for n, p in task.model.named_parameters()}
    slow = None
    if opt.lookahead:
        with opt.optimizer.slow_weights():
            slow = {n: p.detach().cpu().clone() for n, p in task.model.named_parameters()}
    atomic_torch_save({"fast": fast, "slow": slow}, path)


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A language model's step allocates and frees buffers of tens of MB (the logits, their
    log-softmax and gradients: 16 MB each at PTB cpu scale, 65 MB for Multi30k). glibc serves
    a block above its mmap threshold (32 MB at most) with fresh ``mmap`` pages and trims the top
    of its heap once more than the trim threshold is free, so every step the kernel faults in
    and zeroes those pages again: about 10k page faults (40 MB) per PTB step and 90k (350 MB)
    per Multi30k step, kernel time that made PTB's step 1.2x slower per CPU-second
    (results/bench/token_steps_cpu.md). With ``mmap`` off for the heap (``M_MMAP_MAX`` 0; glibc
    still falls back to it when the heap cannot grow) and trimming off (``M_TRIM_THRESHOLD``),
    a step reuses its heap once it has grown to the step's peak: 0-100 faults per step. The
    numbers computed do not change (only where the memory comes from); the process keeps its
    peak heap (RSS) instead of shrinking after it. Process-wide and permanent; the PTB and
    translation tasks call it on CPU. Returns False where the C library is not glibc (nothing
    is changed there).
    """
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
    return bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1)) & bool(mallopt(M_MMAP_MAX, 0))


def total_steps(cfg: Config, task: Task) -> int:
    return cfg.trainer.max_steps or max(1, round(cfg.trainer.epochs * task.steps_per_epoch))


def fit(cfg: Config, task: Task, opt: Optimizers, run_dir: Path, sinks: Sequence[Callable] = ()) -> Dict[str, Any]:
    """Train to the end (or until stopped); returns ``{"status": ..., "final": {...}, ...}``."""
    t = cfg.trainer
    wall_start = time.perf_counter()
    n_steps = total_steps(cfg, task)
    spe = task.steps_per_epoch
    scheduler = build_scheduler(cfg.schedule, opt.optimizer, n_steps, cfg.optim.averaging)
    la = cfg.optim.lookahead
    if la is not None and la.alpha_end is not None:
        # A step pre-hook that sets alpha from each group's own counter: no state of its own, so a
        # resumed run gets the same alphas from the restored counters.
        alpha_power_schedule(opt.optimizer, n_steps, la.alpha_end, la.alpha_power)
    device = next(task.model.parameters()).device
    amp = autocast_dtype(t, device)
    forward_model = task.model
    rank, world = distributed.rank_world()
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        if t.sync_bn:
            # The converted modules keep the same parameter and buffer tensors, so the optimizer
            # built on the model (and Lookahead's slow copies) stay valid.
            if device.type != "cuda":
                raise UserError("trainer.sync_bn=true needs CUDA devices (torch's SyncBatchNorm has no CPU "
                                "kernel); drop it for CPU runs")
            task.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(task.model)
        forward_model = torch.nn.parallel.DistributedDataParallel(task.model, device_ids=ids)
    if t.compile:
        # Only the model's forward (and so its backward) is compiled; the optimizer step and the
        # Lookahead sync stay eager outside the graph and update the parameters in place, so a
        # CUDA graph (compile_mode=reduce-overhead) reads the new values from the same addresses.
        forward_model = torch.compile(forward_model, mode=t.compile_mode, backend=t.compile_backend)
    eval_every = max(1, round(t.eval_every * spe))
    window = range(0)
    if t.per_update is not None:
        first = round(t.per_update.start_epoch * spe)
        window = range(first + 1, first + t.per_update.steps + 1)

    ckpt = run_dir / "checkpoint.pt"
    log = MetricsLog(run_dir / "metrics.csv", sinks)
    carry: Any = None
    resumed_from = 0
    if cfg.resume and ckpt.exists():
        progress, carry = checkpoint.load(ckpt, task, opt, scheduler)
        log.load(progress.metrics_rows)
        resumed_from = progress.step
        if rank == 0:
            say(f"resuming {run_dir} from step {progress.step} of {n_steps} (checkpoint.pt)")
    else:
        progress = Progress()
        (run_dir / "metrics.csv").unlink(missing_ok=True)
    if progress.step >= n_steps:
        return {"status": "completed", "final": progress.final, "best": progress.best, "steps": progress.step,
                "resumed_from": resumed_from}

    def row(**values: Any) -> None:
        if rank != 0:  # only rank 0 writes records
            return
        step = progress.step
        log.append({"step": step, "epoch": step / spe, "time_s": progress.time_s,
                    "lr": scheduler.get_last_lr()[0], **values})
        progress.metrics_rows = len(log.rows)

    def save() -> None:
        if rank == 0 and t.checkpoint:  # trainer.checkpoint=false: records only, no resume point
            checkpoint.save(ckpt, task, opt, scheduler, progress, carry)

    def timed_evaluate(per_update: bool = False) -> Dict[str, float]:
        start = time.perf_counter()
        try:
            return evaluate(task, opt, t, per_update=per_update)
        finally:
            progress.eval_time_s += time.perf_counter() - start

    bar = tqdm(total=n_steps, initial=progress.step, disable=not t.progress or rank != 0, dynamic_ncols=True,
               leave=False)
    loss_sum = torch.tensor(progress.loss_sum, dtype=torch.float64, device=device)
    status = "completed"
    task.model.train()
    if opt.reported is not None:
        opt.reported.train_mode()  # Schedule-Free steps only in its train form (parameters = y)
    with StopRequested().installed() as stop:
        while progress.step < n_steps and status == "completed":
            epoch, start = divmod(progress.step, spe)
            if start == 0 or carry is None:
                carry = task.init_carry()
            clock = time.perf_counter()
            for batch in task.train_batches(epoch, start):
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss, carry = task.loss(forward_model, batch, carry)
                loss.backward()
                if t.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(task.model.parameters(), t.grad_clip)
                opt.optimizer.step()
                opt.optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                progress.step += 1
                if opt.reported is not None:
                    opt.reported.after_step(task.model, progress.step, n_steps)
                loss_sum += loss.detach().double()
                progress.loss_count += 1
                bar.update(1)
                step = progress.step
                now = time.perf_counter()
                progress.time_s += now - clock
                clock = now
                if step % t.log_every == 0 or step == n_steps:
                    total, count = distributed.all_sum([loss_sum.item(), progress.loss_count], device)
                    mean = total / count
                    row(train_loss=mean)
                    bar.set_postfix(loss=f"{mean:.4g}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
                    loss_sum.zero_()
                    progress.loss_count = 0
                    if not math.isfinite(mean) or mean > t.divergence_loss:
                        status = "diverged"
                        break
                if step in window:
                    row(**{f"update_{k}": v for k, v in timed_evaluate(per_update=True).items()})
                    if t.per_update.snapshots:
                        save_snapshot(run_dir / "snapshots" / f"step_{step:08d}.pt", task, opt)
                evaluated = step % eval_every == 0 or step == n_steps
                if evaluated:
                    metrics = timed_evaluate()
                    row(**metrics)
                    progress.final = metrics
                    target = metrics.get(task.target_metric)
                    if target is not None and math.isfinite(target):
                        better = progress.best is None or (target > progress.best) == task.higher_is_better
                        progress.best = target if better else progress.best
                    bar.set_postfix({task.target_metric: f"{target:.4g}"} if target is not None else {})
                clock = time.perf_counter()  # evaluation time is not training time
                stopping = distributed.any_rank(stop.signum is not None, device) if world > 1 else stop.signum
                if (t.checkpoint_every and step % t.checkpoint_every == 0) or evaluated or stopping:
                    progress.loss_sum = loss_sum.item()
                    save()
                if stopping:
                    status = "interrupted"
                    break
                if step >= n_steps:
                    break
    bar.close()
    return {"status": status, "final": progress.final, "best": progress.best, "steps": progress.step,
            "signal": stop.signum or (signal.SIGTERM if status == "interrupted" else None), "time_s": progress.time_s,
            "resumed_from": resumed_from,
            # Evaluation wall time of the whole run (kept across resumes in the checkpoint) and this
            # process's fit() wall time.
            "eval_time_s": progress.eval_time_s, "wall_s": time.perf_counter() - wall_start}
