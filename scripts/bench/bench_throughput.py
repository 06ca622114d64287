"""CIFAR ResNet-18 training throughput (images/s): eager, compiled, CUDA graphs; 1 and N runs per GPU.

What is measured: the suite's CIFAR training step as the paper-scale run does it (the task's own
batch slicing and augmentation on the device, ``task.loss`` under the run's autocast, backward,
Lookahead(SGD) ``step()`` with its sync every k-th call, ``zero_grad``), built from the paper's
config (``task=cifar10 scale=paper optim=lookahead_sgd``: ResNet-18, batch 128, k=5; bf16
autocast and channels_last on CUDA; ``trainer.deterministic`` as configured). Evaluation, the
scheduler, logging and checkpoints are left out (``bench_loop.py`` measures what the loop adds
to a step). Each configuration is a ``--mode``:

- ``eager``: no compilation;
- ``default``: ``torch.compile(model)`` (inductor), what ``trainer.compile=true`` does;
- ``reduce-overhead`` / ``max-autotune``: ``trainer.compile_mode=...``; both capture the
  compiled forward and backward as CUDA graphs on a GPU.

Each run (a separate process, as a sweep member is) takes ``--warmup`` steps (compilation and
graph capture happen there; their time is reported as ``warmup_s``), waits until every run of
the configuration has warmed up (a file barrier), then times ``--steps`` steps between two
device synchronizations. ``img_per_s`` of a configuration is all images of all its runs over the
wall-clock span from the first run's start to the last run's end, so N runs per GPU report
their combined rate, never more than they delivered together. ``peak_alloc_MiB`` and
``peak_reserved_MiB`` are ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` of one
run: its memory budget on the GPU.

Data: the CIFAR-10 copy under ``--data-root`` if given, else synthetic uint8 images (random
pixels, official layout, ``--synthetic-train`` of them, a multiple of the batch so that no
measured step has the epoch's smaller last batch, which compiles a second graph). Nothing is
downloaded.

    python scripts/bench/bench_throughput.py [--device cuda] [--modes eager,reduce-overhead,default]
        [--procs 1,4] [--data-root DIR] [--budget-s 300] [--out results/bench]

Writes ``<out>/throughput_<device>.csv`` and ``.md``. ``--tiny`` (CPU dry runs, tests) uses a
narrow ResNet-20 at batch 16 and the ``eager`` compile backend (dynamo's tracing, no code
generation): it checks the script, not a speed.
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the suite's packages, also where the project is not installed

MODES = ("eager", "default", "reduce-overhead", "max-autotune")
FIELDS = ["mode", "procs", "deterministic", "status", "img_per_s", "img_per_s_per_run", "step_ms",
          "warmup_s", "peak_alloc_MiB", "peak_reserved_MiB", "batch", "steps", "model"]


def write_synthetic_cifar(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Random uint8 images and labels in the official CIFAR-10 python layout under ``root``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)

    def dump(name: str, n: int) -> None:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, n)], "batch_label": name}
        with open(base / name, "wb") as f:
            pickle.dump(batch, f, protocol=4)

    per = n_train // 5
    for i in range(1, 6):
        dump(f"data_batch_{i}", per + (n_train - 5 * per if i == 5 else 0))
    dump("test_batch", n_test)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": per}, f, protocol=4)
    return root


def _overrides(args: argparse.Namespace, mode: str, deterministic: bool) -> list:
    out = ["task=cifar10", "optim=lookahead_sgd", "scale=paper", f"data.root={args.data_root}",
           f"trainer.device={args.device}", f"trainer.deterministic={str(deterministic).lower()}",
           "trainer.progress=false", "trainer.threads=1"]
    if mode != "eager":
        out += ["trainer.compile=true", f"trainer.compile_mode={mode}"]
    if args.tiny:
        out += ["task.model=resnet20", "task.width=4", "data.batch_size=16"]
        out += ["trainer.compile_backend=eager"] if mode != "eager" else []  # dynamo only: seconds
    return out


def worker(args: argparse.Namespace) -> None:
    """One run; a failure is signalled to the others waiting at the barrier."""
    try:
        _run(args)
    except BaseException:
        (Path(args.barrier) / f"failed_{args.index}").touch()
        raise


def _run(args: argparse.Namespace) -> None:
    """Build the paper-scale task and optimizer, warm up, meet the others, time steps."""
    import torch
    from omegaconf import OmegaConf

    from experiments import runtime, sweep
    from experiments.optim import build_optimizer
    from experiments.tasks import build_task

    cfg = OmegaConf.to_object(sweep.compose(_overrides(args, args.mode, args.deterministic)))
    device = runtime.select_device(cfg.trainer)
    runtime.configure(cfg.trainer, 0, device)
    task = build_task(cfg, device)
    opt = build_optimizer(cfg.optim, task.model).optimizer
    t = cfg.trainer
    model = task.model
    if t.compile:  # as experiments/train.py compiles it
        model = torch.compile(model, mode=t.compile_mode, backend=t.compile_backend)
    amp = runtime.autocast_dtype(t, device)
    cuda = device.type == "cuda"

    def batches():
        epoch = 0
        while True:
            yield from task.train_batches(epoch, 0)
            epoch += 1

    stream = batches()

    def step() -> None:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss, _ = task.loss(model, next(stream), None)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    task.model.train()
    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    warmup_s = time.perf_counter() - start
    barrier = Path(args.barrier)
    (barrier / f"ready_{args.index}").touch()
    deadline = time.time() + args.barrier_timeout
    while len(list(barrier.glob("ready_*"))) < args.procs:  # the others may still be compiling
        if list(barrier.glob("failed_*")):
            raise SystemExit("bench_throughput: another run of this configuration failed")
        if time.time() > deadline:
            raise SystemExit(f"bench_throughput: the other runs did not warm up within {args.barrier_timeout} s")
        time.sleep(0.05)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    t0_wall, t0 = time.time(), time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    elapsed, t1_wall = time.perf_counter() - t0, time.time()
    peak = torch.cuda.max_memory_allocated(device) if cuda else 0
    reserved = torch.cuda.max_memory_reserved(device) if cuda else 0
    Path(args.result).write_text(json.dumps({
        "start": t0_wall, "end": t1_wall, "elapsed": elapsed, "images": args.steps * cfg.data.batch_size,
        "warmup_s": warmup_s, "peak_alloc": peak, "peak_reserved": reserved, "batch": cfg.data.batch_size,
        "model": cfg.task.model, "device": runtime.device_description(device, 1), "torch": torch.__version__,
    }))


def measure(args: argparse.Namespace, mode: str, procs: int, deterministic: bool, timeout: float) -> dict:
    """Start ``procs`` runs of one configuration at once; their combined rate, or why there is none."""
    row = {"mode": mode, "procs": procs, "deterministic": deterministic, "steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--procs", str(procs),
               "--device", args.device, "--data-root", str(args.data_root), "--warmup", str(args.warmup),
               "--steps", str(args.steps), "--barrier", tmp, "--barrier-timeout", str(max(timeout - 5, 1)),
               "--deterministic", str(deterministic).lower()] + (["--tiny"] if args.tiny else [])
        runs = []
        for i in range(procs):  # output to files: a full pipe would stall a run
            with open(f"{tmp}/log_{i}.txt", "w") as log:
                # In this process's group, so that a caller who kills the group (gpu_check.py at
                # its budget) kills the runs too.
                runs.append(subprocess.Popen([*cmd, "--index", str(i), "--result", f"{tmp}/result_{i}.json"],
                                             stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        for run in runs:
            try:
                run.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                for other in runs:  # a hard budget: none of them may outlive it
                    if other.poll() is None:
                        other.kill()
                        other.wait()
                row["status"] = f"timed out after {timeout:.0f} s"
                return row
        results = [json.loads(Path(f"{tmp}/result_{i}.json").read_text()) for i in range(procs)
                   if Path(f"{tmp}/result_{i}.json").exists()]
        if len(results) < procs:
            failed = next(i for i in range(procs) if runs[i].returncode != 0) if any(r.returncode for r in runs) else 0
            tail = " | ".join(Path(f"{tmp}/log_{failed}.txt").read_text().strip().splitlines()[-3:])
            row["status"] = f"failed (exit {[r.returncode for r in runs]}): {tail}"
            return row
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    images = sum(r["images"] for r in results)
    row.update(status="ok", img_per_s=images / span, img_per_s_per_run=images / span / procs,
               step_ms=1e3 * max(r["elapsed"] for r in results) / args.steps,
               warmup_s=max(r["warmup_s"] for r in results),
               peak_alloc_MiB=max(r["peak_alloc"] for r in results) / 2**20,
               peak_reserved_MiB=max(r["peak_reserved"] for r in results) / 2**20,
               batch=results[0]["batch"], model=results[0]["model"], device=results[0]["device"],
               torch=results[0]["torch"])
    return row


def write(rows: list, args: argparse.Namespace, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    name = out / f"throughput_{args.device.split(':')[0]}{'_tiny' if args.tiny else ''}"
    with name.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    device = next((r["device"] for r in rows if "device" in r), args.device)
    version = next((r["torch"] for r in rows if "torch" in r), "?")  # the runs' (this process never imports it)
    data = f"CIFAR-10 copy under {args.data_root}" if args.given_data else "synthetic uint8 images (random pixels)"
    lines = [f"# CIFAR training throughput ({name.stem})", "",
             f"Device: {device}; torch {version}; "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; data: {data}. "
             f"The paper-scale step of Lookahead(SGD) (k=5) as `task=cifar10 scale=paper` builds it, "
             f"{args.warmup} warm-up steps (compilation and graph capture; `warmup_s`), then "
             f"{args.steps} timed steps per run after a common start; img/s: all runs' images over the "
             "span from the first start to the last end. No evaluation, scheduler or checkpoints "
             "(`loop_cuda.md` has the loop's own overhead). Peak memory is one run's.", "",
             "| mode | runs per device | deterministic | img/s (all runs) | img/s per run | step (ms) | warm-up (s) "
             "| peak alloc (MiB) | peak reserved (MiB) | status |", "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(r: dict, key: str, fmt: str) -> str:
        return fmt.format(r[key]) if key in r else ""

    for r in rows:
        lines.append(f"| {r['mode']} | {r['procs']} | {r['deterministic']} | {cell(r, 'img_per_s', '{:.0f}')} | "
                     f"{cell(r, 'img_per_s_per_run', '{:.0f}')} | {cell(r, 'step_ms', '{:.2f}')} | "
                     f"{cell(r, 'warmup_s', '{:.1f}')} | {cell(r, 'peak_alloc_MiB', '{:.0f}')} | "
                     f"{cell(r, 'peak_reserved_MiB', '{:.0f}')} | {r['status']} |")
    ok = [r for r in rows if r.get("status") == "ok" and r["procs"] == 1]
    if ok and not args.tiny:
        best = max(ok, key=lambda r: r["img_per_s"])
        epoch_s = 50000 / best["img_per_s"]
        lines += ["", f"At the best single-run rate ({best['mode']}, {best['img_per_s']:.0f} img/s) 200 epochs of "
                  f"50k images take {200 * epoch_s / 60:.1f} min of training steps (evaluation not included)."]
    name.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return name.with_suffix(".md")


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--modes", default="eager,reduce-overhead,default")
    p.add_argument("--procs", default="1,4", help="comma-separated runs per device, e.g. 1,4")
    p.add_argument("--deterministic", default="true", help="trainer.deterministic: true, false or true,false")
    p.add_argument("--data-root", type=Path, default=None, help="CIFAR-10 folder (default: synthetic images)")
    p.add_argument("--synthetic-train", type=int, default=12800)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--budget-s", type=float, default=300.0, help="wall-clock limit for all configurations")
    p.add_argument("--tiny", action="store_true", help="CPU dry run: narrow ResNet-20, batch 16, eager compile backend")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    # Internal: one run of a configuration (started by measure()).
    for flag in ("--mode", "--barrier", "--result"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--barrier-timeout", type=float, default=300.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.procs, args.deterministic = int(args.procs), args.deterministic == "true"
        worker(args)
        return 0
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        p.error(f"--modes: unknown {sorted(set(modes) - set(MODES))}; choose from {', '.join(MODES)}")
    procs = [int(n) for n in args.procs.split(",")]
    determinism = [v == "true" for v in args.deterministic.split(",")]
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        args.given_data = args.data_root is not None
        if not args.given_data:
            args.data_root = write_synthetic_cifar(Path(tmp) / "cifar10", args.synthetic_train, 1000)
        rows = []
        # Single runs of every mode first: they fill the compile caches that the runs of the
        # packed configurations then read, and give the headline numbers if time runs short.
        configs = [(m, n, d) for d in determinism for n in sorted(procs) for m in modes]
        weight = {(m, n, d): (1.0 if m == "eager" else 2.0 if n == 1 else 1.0) for m, n, d in configs}
        for i, (mode, n, det) in enumerate(configs):
            left = args.budget_s - (time.monotonic() - start)
            if left < 10:
                rows.append({"mode": mode, "procs": n, "deterministic": det, "status": "not run: budget spent"})
                continue
            # A share of what is left by weight (a first compilation takes longest, eager runs
            # least), at least 40 s: starting a run (torch, CUDA, data on the device) takes ~15 s.
            share = max(left * weight[configs[i]] / sum(weight[c] for c in configs[i:]), 40.0)
            row = measure(args, mode, n, det, min(share, left))
            rows.append(row)
            print(f"{mode} x{n} deterministic={det}: {row['status']}"
                  + (f", {row['img_per_s']:.0f} img/s" if row["status"] == "ok" else ""), flush=True)
    md = write(rows, args, args.out)
    print(md.read_text())
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
