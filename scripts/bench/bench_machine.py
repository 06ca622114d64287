"""What this machine can do, and how much of it each task's training step gets.

Three measurements, each with the machine it ran on (``machine.py``):

1. GEMM peak (``gemm_peak.py``): ``torch.mm`` of n x n matrices in fp32 and bf16 with 1 thread
   and ``--threads`` threads, interleaved repetitions, medians.
2. Training-step throughput per task at ``--scale`` (``task_step.py``: the loop's step on the
   task as ``run.py`` composes it): CIFAR-10 ResNet-20 in images/s, PTB LSTM and the
   Multi30k Transformer in target tokens/s, for each precision (``trainer.precision`` fp32 /
   bf16) eager and under ``torch.compile`` (``trainer.compile=true``). All variants are built
   first, each passes once over its cached batches (the compiled ones compile there: compile_s
   is that pass minus a steady pass), then timed blocks over the same batches rotate through the
   variants; medians. Achieved GFLOP/s = FLOPs of one forward + backward
   (``FlopCounterMode``) / median step time, and its percentage of the GEMM peak of the same
   dtype and thread count (bf16 steps keep some ops in fp32, e.g. PTB's recurrence).
   ``trainer.compile`` pays when compile_s is below the time it saves over a whole run of the
   scale (``run_steps`` optimizer steps; compiling again on every resume is not counted).
   Inductor keeps compiled kernels in an on-disk cache, so a repeated benchmark on the same
   machine can report a shorter compile_s than a fresh run pays.
3. Parallel jobs: one job with ``--threads`` threads vs ``--threads`` one-thread jobs at once
   (each a subprocess of this script; all build and warm up first, then start their timed steps
   together), total throughput, per task and precision, eager.

    python scripts/bench/bench_machine.py [--data DIR] [--tasks cifar10,airbench,ptb,wmt14] [--quick]

``--data`` holds the datasets as ``LOOKAHEAD_DATA`` does (cifar10/, ptb/, multi30k/). Writes
``results/bench/machine_cpu.{md,csv}`` (``machine_cpu_quick`` with ``--quick``: tiny sizes and
few repetitions, for checking the script, not for the record).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

import gemm_peak
import machine
import task_step
from experiments import runtime

ROOT = Path(__file__).resolve().parents[2]
# Steps per timed block at cpu scale: a few seconds each on 2 cores.
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def bench_steps(args: argparse.Namespace, task: str, peaks: Dict, log) -> List[Dict[str, Any]]:
    """Rows of part 2 for one task: every precision x (eager, compiled)."""
    steps = args.steps or task_step.TASKS[task].steps
    variants = [(p, c) for p in args.precisions for c in ([False, True] if task in args.compile_tasks else [False])]
    steppers, first, graphs, flops = {}, {}, {}, {}
    for precision, compiled in variants:
        cfg = task_step.compose(task, args.scale, args.threads, precision, args.data)
        s = task_step.build(task, cfg, steps, args.compile_backend if compiled else None)
        before = _graphs()
        first[(precision, compiled)] = task_step.timed_steps(s, 0, steps)[0]  # compiles, for compiled variants
        graphs[(precision, compiled)] = _graphs() - before
        if not compiled:
            flops[precision] = s.flops()
        steppers[(precision, compiled)] = s
        log(f"  {task} {precision} {'compiled' if compiled else 'eager'}: built, first pass {first[(precision, compiled)]:.1f} s")
    warm = _graphs()
    times: Dict[Any, List[float]] = {v: [] for v in variants}
    done = {}
    for rep in range(args.reps):
        for v in variants[rep % len(variants):] + variants[: rep % len(variants)]:
            seconds, done[v] = task_step.timed_steps(steppers[v], 0, steps)
            times[v].append(seconds)
    rows = []
    for precision, compiled in variants:
        v, s = (precision, compiled), steppers[(precision, compiled)]
        block = statistics.median(times[v])
        row = {"kind": "step", "task": task, "model": getattr(s.cfg.task, "model", "transformer"),
               "precision": precision, "compile": compiled, "threads": args.threads, "steps": steps, "reps": args.reps,
               "step_ms": 1e3 * block / steps, "throughput": done[v] / block, "unit": task_step.TASKS[task].unit + "/s",
               "examples_per_step": done[v] / steps, "gflop_per_step": flops[precision] / 1e9,
               "run_steps": s.info["run_steps"]}
        row["gflops"] = row["gflop_per_step"] / (row["step_ms"] / 1e3)
        peak = peaks.get((DTYPES[precision], args.threads))
        row["pct_peak"] = 100 * row["gflops"] / peak if peak else float("nan")
        if compiled:
            eager = statistics.median(times[(precision, False)]) / steps
            row["compile_s"] = max(0.0, first[v] - block)
            row["graphs"] = graphs[v]
            row["recompiles_timed"] = _graphs() - warm  # graphs made while timing (any variant): should be 0
            saved = eager - block / steps
            row["break_even_steps"] = row["compile_s"] / saved if saved > 0 else math.inf
            # Net gain over a whole run's training steps, in % of its eager training time.
            row["run_gain_pct"] = 100 * (saved * row["run_steps"] - row["compile_s"]) / (eager * row["run_steps"])
        rows.append(row)
    return rows


def worker(args: argparse.Namespace) -> None:
    """One job of part 3: build, warm up, print "ready", wait for a line on stdin, time, print JSON."""
    cfg = task_step.compose(args.tasks[0], args.scale, args.threads, args.precisions[0], args.data)
    runtime.configure(cfg.trainer, cfg.seed, torch.device("cpu"))
    steps = args.steps or task_step.TASKS[args.tasks[0]].steps
    s = task_step.build(args.tasks[0], cfg, steps)
    task_step.timed_steps(s, 0, steps)
    print("ready", flush=True)
    sys.stdin.readline()
    seconds, done = task_step.timed_steps(s, 0, steps)
    print(json.dumps({"seconds": seconds, "examples": done}), flush=True)


def run_jobs(args: argparse.Namespace, task: str, precision: str, jobs: int, threads: int) -> List[Dict[str, float]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--tasks", task, "--precisions", precision,
           "--threads", str(threads), "--scale", args.scale, "--steps", str(args.parallel_steps or args.steps or task_step.TASKS[task].steps)]
    if args.data:
        cmd += ["--data", str(args.data)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) for _ in range(jobs)]
    try:
        for p in procs:
            line = p.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"benchmark job {' '.join(cmd)} failed before timing (exit {p.wait()})")
        for p in procs:  # start the timed steps of all jobs together
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [json.loads(p.stdout.readline()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.stdin.close()
                p.wait(timeout=600)
    return results


def bench_parallel(args: argparse.Namespace, task: str) -> List[Dict[str, Any]]:
    rows = []
    for precision in args.parallel_precisions:
        layouts = [(1, args.threads), (args.threads, 1)] if args.threads > 1 else [(1, 1)]
        base = None
        for jobs, threads in layouts:
            results = run_jobs(args, task, precision, jobs, threads)
            total = sum(r["examples"] / r["seconds"] for r in results)
            base = base or total
            rows.append({"kind": "parallel", "task": task, "precision": precision, "compile": False,
                         "layout": f"{jobs} job(s) x {threads} thread(s)", "jobs": jobs, "threads": threads,
                         "throughput": total, "unit": task_step.TASKS[task].unit + "/s",
                         "per_job": total / jobs, "vs_one_job": total / base})
    return rows


FIELDS = ["kind", "task", "model", "precision", "compile", "dtype", "threads", "jobs", "layout", "n", "steps", "reps",
          "step_ms", "throughput", "unit", "examples_per_step", "per_job", "vs_one_job", "gflop_per_step", "gflops",
          "gflops_best", "pct_peak", "compile_s", "graphs", "recompiles_timed", "break_even_steps", "run_steps",
          "run_gain_pct"]


def write(rows: List[Dict[str, Any]], info: Dict[str, Any], args: argparse.Namespace, out: Path) -> str:
    machine.write_csv(rows, FIELDS, out.with_suffix(".csv"))
    head = machine.header(info)
    md = [f"# Machine benchmark ({out.stem})", "", head, "",
          f"Scale `{args.scale}`; training steps with {args.threads} thread(s), deterministic mode as in runs; "
          f"compile backend `{args.compile_backend}`. Method: `scripts/bench/bench_machine.py` docstring.", "",
          "## GEMM peak (torch.mm, n x n)", "", "| dtype | threads | n | GFLOP/s (median) | best |", "|---|---|---|---|---|"]
    md += [f"| {r['dtype']} | {r['threads']} | {r['n']} | {r['gflops']:.0f} | {r['gflops_best']:.0f} |"
           for r in rows if r["kind"] == "gemm"]
    md += ["", "## Training step per task", "",
           "| task | precision | compile | step (ms) | throughput | GFLOP/step | GFLOP/s | % of peak | compile (s) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["kind"] == "step"):
        comp = f"{r['compile_s']:.1f}" if "compile_s" in r else ""
        md.append(f"| {r['task']} | {r['precision']} | {'yes' if r['compile'] else 'no'} | {r['step_ms']:.1f} | "
                  f"{r['throughput']:.0f} {r['unit']} | {r['gflop_per_step']:.2f} | {r['gflops']:.1f} | "
                  f"{r['pct_peak']:.1f} | {comp} |")
    compiled = [r for r in rows if r["kind"] == "step" and r["compile"]]
    if compiled:
        md += ["", "## Does `trainer.compile` pay? (over one run of this scale)", "",
               "| task | precision | speed-up | compile (s) | break-even steps | run steps | "
               "net gain of the run's training time |",
               "|---|---|---|---|---|---|---|"]
        eager = {(r["task"], r["precision"]): r for r in rows if r["kind"] == "step" and not r["compile"]}
        for r in compiled:
            e = eager[(r["task"], r["precision"])]
            md.append(f"| {r['task']} | {r['precision']} | {e['step_ms'] / r['step_ms']:.2f}x | {r['compile_s']:.1f} | "
                      f"{r['break_even_steps']:.0f} | {r['run_steps']} | {r['run_gain_pct']:+.1f} % |")
    par = [r for r in rows if r["kind"] == "parallel"]
    if par:
        md += ["", "## One multi-thread job vs one-thread jobs in parallel (eager)", "",
               "| task | precision | layout | total throughput | per job | vs one job |", "|---|---|---|---|---|---|"]
        md += [f"| {r['task']} | {r['precision']} | {r['layout']} | {r['throughput']:.0f} {r['unit']} | "
               f"{r['per_job']:.0f} | {r['vs_one_job']:.2f}x |" for r in par]
    text = "\n".join(md) + "\n"
    out.with_suffix(".md").write_text(text)
    return text


def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = task_step.task_parser(__doc__)
    p.add_argument("--steps", type=int, default=0, help="steps per timed block (default: per task, a few seconds)")
    p.add_argument("--reps", type=int, default=5, help="interleaved timed blocks per variant")
    p.add_argument("--compile-tasks", type=lambda s: [t for t in s.split(",") if t], default=None,
                   help="tasks timed under torch.compile too (default: --tasks)")
    p.add_argument("--no-compile", dest="compile_tasks", action="store_const", const=[], help="no torch.compile variants")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (tests: eager)")
    p.add_argument("--parts", type=lambda s: s.split(","), default=["gemm", "steps", "parallel"],
                   help="which measurements: gemm, steps, parallel (comma-separated)")
    p.add_argument("--parallel-steps", type=int, default=0)
    p.add_argument("--parallel-tasks", type=lambda s: s.split(","), default=None, help="default: --tasks")
    p.add_argument("--parallel-precisions", type=lambda s: s.split(","), default=None, help="default: --precisions")
    p.add_argument("--gemm-n", type=int, default=2048)
    p.add_argument("--gemm-reps", type=int, default=7)
    p.add_argument("--gemm-s", type=float, default=0.2, help="seconds per GEMM timing sample")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 repetitions: checks the script end to end")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.parallel_tasks = args.parallel_tasks or args.tasks
    args.compile_tasks = args.tasks if args.compile_tasks is None else args.compile_tasks
    args.parallel_precisions = args.parallel_precisions or args.precisions
    if args.quick:
        args.steps, args.reps, args.gemm_n, args.gemm_reps, args.gemm_s = args.steps or 2, 2, 256, 2, 0.02
    unknown = (set(args.tasks + args.parallel_tasks + args.compile_tasks) - set(task_step.TASKS)
               or set(args.precisions + args.parallel_precisions) - set(DTYPES)
               or set(args.parts) - {"gemm", "steps", "parallel"})
    if unknown:
        p.error(f"unknown task, precision or part {sorted(unknown)}; tasks: {', '.join(task_step.TASKS)}; "
                "precisions: fp32, bf16; parts: gemm, steps, parallel")
    return args


def main(argv: Optional[List[str]] = None) -> Path:
    args = parse(argv)
    if args.worker:
        worker(args)
        return Path()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    info = machine.describe()
    cfg = task_step.compose(args.tasks[0], args.scale, args.threads, "fp32", args.data)
    runtime.configure(cfg.trainer, cfg.seed, torch.device("cpu"))  # threads, seeds, determinism as in a run
    dtypes = [getattr(torch, DTYPES[p]) for p in args.precisions]
    rows: List[Dict[str, Any]] = []
    if "gemm" in args.parts:
        rows += gemm_peak.measure(args.gemm_n, dtypes, sorted({1, args.threads}), args.gemm_reps, args.gemm_s)
        log("GEMM: " + ", ".join(f"{r['dtype']} x{r['threads']}: {r['gflops']:.0f} GFLOP/s" for r in rows))
    peaks = gemm_peak.peaks(rows)
    for task in args.tasks if "steps" in args.parts else []:
        torch.set_num_threads(args.threads)
        rows += bench_steps(args, task, peaks, log)
    if "parallel" in args.parts:
        for task in args.parallel_tasks:
            rows += bench_parallel(args, task)
            log(f"  {task}: parallel jobs done")
    out = args.out / f"machine_cpu{'_quick' if args.quick else ''}"
    print(write(rows, info, args, out))
    return out


if __name__ == "__main__":
    main()
