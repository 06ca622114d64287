"""Overhead of the suite's training loop: a CIFAR step through ``fit`` vs a bare step.

"Suite" runs ``experiments.train.fit`` on the CIFAR task (data slicing, batched augmentation,
normalization, scheduler, loss bookkeeping, Lookahead) for ``--steps`` steps and reads the
loop's own training clock (``time_s``, evaluation excluded). "Bare" runs forward, backward and
an inner-optimizer step on one fixed in-memory batch: the limit a loop can approach. Both use
the same model, batch size, thread count and memory layout (``trainer.channels_last``, NHWC by
default); a third row times the bare step in the NCHW layout, the price of turning it off.
Repetitions are interleaved and medians reported.

    python scripts/bench/bench_loop.py --data-root data/cifar10 [--device cuda] [--scale paper] [--steps 40]

On CUDA both steps run under the run's autocast (bf16 unless ``trainer.precision`` says
otherwise); ``--scale paper`` times the paper's ResNet-18.

Writes ``results/bench/loop_<device>.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import OmegaConf

import machine
from experiments import runtime, sweep
from experiments.optim import build_optimizer
from experiments.tasks import build_task
from experiments.train import fit

ROOT = Path(__file__).resolve().parents[2]


def compose(args: argparse.Namespace, steps: int, optim: str, channels_last: bool = True):
    overrides = [f"task={args.task}", f"optim={optim}", f"scale={args.scale}", f"data.root={args.data_root}",
                 f"trainer.max_steps={steps + 2}", "trainer.log_every=2", "trainer.eval_every=1000",
                 "trainer.progress=false", f"trainer.threads={args.threads}", f"trainer.device={args.device}",
                 f"data.batch_size={args.batch_size}", f"trainer.channels_last={channels_last}"]
    return OmegaConf.to_object(sweep.compose(overrides))


def suite_step_time(cfg, device: torch.device) -> float:
    """Per-step time from the loop's own clock, between the rows at step 2 and the last step."""
    task = build_task(cfg, device)
    opt = build_optimizer(cfg.optim, task.model)
    with tempfile.TemporaryDirectory() as d:
        result = fit(cfg, task, opt, Path(d))
        # fit() turns SIGTERM/SIGINT into status "interrupted" and a bad loss into "diverged";
        # either leaves too few rows to time, so say what happened instead of dividing by zero.
        if result["status"] != "completed":
            raise SystemExit(f"bench_loop: the suite run ended with status {result['status']!r} at step "
                             f"{result['steps']} of {cfg.trainer.max_steps}; no timing recorded")
        with open(Path(d, "metrics.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        if len(rows) < 2 or int(rows[-1]["step"]) <= int(rows[0]["step"]):
            raise SystemExit(f"bench_loop: the suite run logged {len(rows)} row(s); need --steps >= 1 "
                             "to time steps after the 2 warm-up steps")
        first, last = rows[0], rows[-1]  # logged at step 2 (after warm-up) and at the end
        return (float(last["time_s"]) - float(first["time_s"])) / (int(last["step"]) - int(first["step"]))


def bare_step_time(cfg, device: torch.device, steps: int) -> float:
    task = build_task(cfg, device)
    opt = build_optimizer(cfg.optim, task.model).optimizer
    x, y = next(task.train_batches(0, 0))
    model = task.model.train()
    # The run's autocast (bf16 on CUDA by default), as the suite's step has it: without it the
    # bare CUDA step would be fp32 and the ratio would compare precisions, not loops.
    amp = runtime.autocast_dtype(cfg.trainer, device)
    for i in range(steps + 2):
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--task", default="cifar10")
    p.add_argument("--scale", default="cpu")
    p.add_argument("--optim", default="lookahead_sgd")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = p.parse_args()
    cfg = compose(args, args.steps, args.optim)
    nchw = compose(args, args.steps, args.optim, channels_last=False)
    device = runtime.select_device(cfg.trainer)
    threads = runtime.configure(cfg.trainer, 0, device)
    info = machine.describe()
    suite, bare, bare_nchw = [], [], []
    for _ in range(args.reps):  # interleaved so drifts in machine load hit all alike
        suite.append(suite_step_time(cfg, device))
        bare.append(bare_step_time(cfg, device, args.steps))
        bare_nchw.append(bare_step_time(nchw, device, args.steps))
    s, b, b_nchw = statistics.median(suite), statistics.median(bare), statistics.median(bare_nchw)
    desc = runtime.device_description(device, threads)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"loop_{device.type}"
    rows = [("suite (fit, %s)" % args.optim, s), ("bare fwd/bwd/step, same optimizer, one fixed batch", b),
            ("bare, NCHW layout (trainer.channels_last=false)", b_nchw)]
    (out / f"{name}.csv").write_text("variant,median_step_s,steps_per_s,images_per_s,reps,steps\n" + "".join(
        f"{v},{t:.6f},{1 / t:.3f},{args.batch_size / t:.1f},{args.reps},{args.steps}\n" for v, t in rows))
    md = [f"# Training-loop overhead ({args.task}, {cfg.task.model}, batch {args.batch_size})", "",
          f"Machine: {desc}; torch {torch.__version__}; {stamp}; median of {args.reps} interleaved "
          f"repetitions of {args.steps} steps.", "", machine.header(info), "",
          "| variant | step (ms) | steps/s | images/s |", "|---|---|---|---|"]
    md += [f"| {v} | {t * 1e3:.1f} | {1 / t:.2f} | {args.batch_size / t:.0f} |" for v, t in rows]
    md += ["", f"Suite speed / bare speed: **{b / s:.3f}** (target >= 0.95). "
           f"NHWC / NCHW bare speed: {b_nchw / b:.2f}x."]
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
