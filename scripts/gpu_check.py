"""The prepared device check: ``make gpu-check`` (at most 8 minutes on one H100/H200).

Parts, in order; each runs as a subprocess under a hard time budget, its share of
``--budget-s`` (killed at it and recorded as timed out, so the whole check never overruns):

1. ``device``: the GPU torch sees (name, compute capability, memory), torch and CUDA versions,
   ``nvidia-smi -L``;
2. ``tests``: ``pytest -m cuda`` (``tests/test_cuda.py``, ``tests/test_cuda_ddp.py``);
3. ``throughput``: ``scripts/bench/bench_throughput.py`` (ResNet-18 img/s for eager, CUDA-graph
   and compiled steps, one and four runs per GPU, and each run's peak memory) ->
   ``throughput_cuda.{md,csv}``; it gets all the time the other parts do not reserve;
4. ``sync``: ``scripts/bench/bench_lookahead.py --parts sync`` (our foreach and for-loop sync vs
   timm's vs the copy-bandwidth bound) -> ``lookahead_sync_cuda.{md,csv}``;
5. ``loop``: ``scripts/bench/bench_loop.py --scale paper`` (the suite's loop step vs a bare step,
   ResNet-18, batch 128) -> ``loop_cuda.{md,csv}``.

Images: the CIFAR-10 folder given by ``--data-root`` (one holding ``cifar-10-batches-py/``), else
synthetic uint8 images written to a temporary folder. Nothing is downloaded. The summary
(each part's status, time and the tail of its output) is printed and written to
``<out>/gpu_check_cuda.md``.

Without a CUDA device it stops at once with one line and exit 2, unless ``--cpu-dry-run``:
then every part runs on the CPU at a tiny size (records ``*_cpu*`` under ``--out``, by default
``runs/gpu_check_dryrun/``, never ``results/``), which checks the script, not the GPU.

    python scripts/gpu_check.py [--data-root DIR] [--budget-s 470] [--out results/bench]
    python scripts/gpu_check.py --cpu-dry-run [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench"
# Each part's share of --budget-s (470 s: tests 146 s, sync 47 s, loop 56 s); throughput, the
# headline, runs second and takes everything the others do not reserve.
SHARES = {"tests": 0.31, "throughput": None, "sync": 0.10, "loop": 0.12}
RECORDS = {"tests": "cuda_tests_*", "sync": "lookahead_sync_*", "loop": "loop_*", "throughput": "throughput_*"}
TAIL = {"tests": 40, "sync": 12, "loop": 12, "throughput": 25}  # lines of each part's output in the summary


def describe_device(dry_run: bool) -> list:
    """Lines naming the device, torch and CUDA (and nvidia-smi's list where it exists)."""
    import torch

    lines = [f"torch {torch.__version__}, CUDA {torch.version.cuda}, Python {sys.version.split()[0]}"]
    if dry_run:
        lines.append("CPU dry run: no GPU used; the numbers below check the script, they measure nothing")
    else:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"cuda:{i} {p.name}, compute capability {p.major}.{p.minor}, "
                         f"{p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs")
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
        lines += [f"nvidia-smi: {ln}" for ln in smi.stdout.strip().splitlines()]
    return lines


def part_commands(args: argparse.Namespace, data_root: Path, out: Path) -> dict:
    """The command of each part; the dry run shrinks every one to seconds on a CPU."""
    py = sys.executable
    if args.cpu_dry_run:
        return {
            # Collected and skipped on CPU: checks that the cuda tests import and are skipped.
            "tests": [py, "-m", "pytest", "-q", "-rs", "-m", "cuda", f"--junitxml={out}/cuda_tests_cpu.xml",
                      "tests/test_cuda.py", "tests/test_cuda_ddp.py"],
            "sync": [py, str(BENCH / "bench_lookahead.py"), "--device", "cpu", "--quick", "--parts", "sync",
                     "--reps", "1", "--threads", "1", "--out", str(out)],
            "loop": [py, str(BENCH / "bench_loop.py"), "--device", "cpu", "--scale", "smoke", "--data-root",
                     str(data_root), "--batch-size", "8", "--steps", "2", "--reps", "1", "--threads", "1",
                     "--out", str(out)],
            "throughput": [py, str(BENCH / "bench_throughput.py"), "--device", "cpu", "--tiny", "--synthetic-train",
                           "160", "--modes", "reduce-overhead", "--procs", "2", "--warmup", "2", "--steps", "2",
                           "--out", str(out)],
        }
    given = ["--data-root", str(args.data_root)] if args.data_root else []
    return {
        "tests": [py, "-m", "pytest", "-v", "-rs", "-m", "cuda", f"--junitxml={out}/cuda_tests_cuda.xml", "tests"],
        "sync": [py, str(BENCH / "bench_lookahead.py"), "--device", "cuda", "--parts", "sync", "--reps", "5",
                 "--out", str(out)],
        "loop": [py, str(BENCH / "bench_loop.py"), "--device", "cuda", "--scale", "paper", "--data-root",
                 str(data_root), "--batch-size", "128", "--steps", "40", "--reps", "3", "--out", str(out)],
        "throughput": [py, str(BENCH / "bench_throughput.py"), "--device", "cuda", *given,
                       "--modes", "eager,reduce-overhead,default", "--procs", "1,4", "--out", str(out)],
    }


def run_part(cmd: list, timeout: float, env: dict) -> tuple:
    """(status, seconds, output) of one part; killed with its whole process group at the budget."""
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            status = f"timed out after {timeout:.0f} s (killed)"
        log.seek(0)
        output = log.read()
    return status, time.monotonic() - start, output


def summary(device: list, rows: list, out: Path, dry_run: bool) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# GPU check ({'CPU dry run' if dry_run else 'cuda'}, {stamp})", "", *[f"- {d}" for d in device], "",
             "| part | status | seconds | records |", "|---|---|---|---|"]
    lines += [f"| {name} | {status} | {secs:.0f} | {records} |" for name, status, secs, records, _ in rows]
    for name, status, _, _, output in rows:
        tail = output.strip().splitlines()[-TAIL[name]:]
        lines += ["", f"## {name}: {status}", "", "```", *tail, "```"]
    return "\n".join(lines) + "\n"


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=None,
                   help="CIFAR-10 folder holding cifar-10-batches-py/ (default: synthetic images)")
    p.add_argument("--budget-s", type=float, default=470.0, help="hard limit for all parts together")
    p.add_argument("--out", type=Path, default=None, help="records folder (default results/bench; dry run: "
                   "runs/gpu_check_dryrun)")
    p.add_argument("--parts", default="tests,throughput,sync,loop")
    p.add_argument("--cpu-dry-run", action="store_true", help="run every part on the CPU at a tiny size")
    args = p.parse_args(argv)
    start = time.monotonic()
    import torch

    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print("error: no CUDA device visible (torch.cuda.is_available() is false); run this on a GPU machine, "
              "or pass --cpu-dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    parts = args.parts.split(",")
    if not set(parts) <= set(SHARES):
        p.error(f"--parts: unknown {sorted(set(parts) - set(SHARES))}")
    out = args.out or (ROOT / ("runs/gpu_check_dryrun" if args.cpu_dry_run else "results/bench"))
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           # The suite's packages for every part, also where the project is not installed.
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if args.cpu_dry_run:
        env["OMP_NUM_THREADS"] = "1"
    device = describe_device(args.cpu_dry_run)
    print("\n".join(device), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data_root
        if data_root is None:
            sys.path.insert(0, str(BENCH))
            from bench_throughput import write_synthetic_cifar

            n_train = 160 if args.cpu_dry_run else 12800
            data_root = write_synthetic_cifar(Path(tmp) / "cifar10", n_train, 100 if args.cpu_dry_run else 1000)
        commands = part_commands(args, data_root, out)
        for i, name in enumerate(parts):
            left = args.budget_s - (time.monotonic() - start)
            if name == "throughput":  # what is left after the parts still to come have their shares
                budget = left - sum((SHARES[later] or 0) * args.budget_s for later in parts[i + 1:])
            else:
                budget = min(SHARES[name] * args.budget_s, left)
            if budget < 5:
                rows.append((name, "not run: budget spent", 0.0, "", ""))
                continue
            cmd = commands[name]
            if name == "throughput":
                # Its own budget, a little inside ours, so it writes its table before being killed.
                cmd = [*cmd, "--budget-s", f"{max(budget - 20, 5):.0f}"]
            print(f"== {name} (budget {budget:.0f} s): {' '.join(cmd[1:4])} ...", flush=True)
            status, secs, output = run_part(cmd, budget, env)
            records = ", ".join(sorted(f.name for f in out.glob(RECORDS[name]) if f.stat().st_mtime >= time.time() - secs - 1))
            rows.append((name, status, secs, records, output))
            print(f"== {name}: {status} in {secs:.0f} s", flush=True)
    text = summary(device, rows, out, args.cpu_dry_run)
    (out / f"gpu_check_{'cpu_dryrun' if args.cpu_dry_run else 'cuda'}.md").write_text(text)
    print(text)
    return 0 if all(r[1] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
