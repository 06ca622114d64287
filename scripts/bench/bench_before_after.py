"""Training-step throughput per task before and after the CPU-throughput changes, on one machine.

*before* is the tree of ``--rev`` (default ``BEFORE``: the last commit before those changes:
deterministic mode's memory fill on, no heap kept, torch's dropout masks, per-sentence
collation, bf16 only through plain autocast), unpacked with ``git archive``; *after* is this
checkout. Each measurement is a fresh process (``tree_step.py``) that times ``--steps`` steps
of the task's cpu-scale config at ``--threads`` threads with the tree's own code, after
``--warm`` untimed ones. Variants run in turn, their order rotated per repetition, so drift in
the machine's speed hits all alike; per row: the medians over ``--reps`` and the median of the
repetition-by-repetition ratio after / before, by wall time and by CPU time (user + system of
the process: the steadier figure on a shared machine).

GFLOP/s divide one step's FLOPs (``FlopCounterMode``: the same model in both trees) by its wall
time; "% of peak" is against the GEMM peak at the same thread count and dtype read from
``--peak`` (a ``machine_cpu.csv`` of ``bench_machine.py`` measured on the idle machine).

    python scripts/bench/bench_before_after.py [--tasks cifar10,ptb,wmt14] [--reps 3] [--peak CSV]

Writes ``results/bench/before_after_cpu.{md,csv}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import machine

ROOT = Path(__file__).resolve().parents[2]
BEFORE = "fdc2488"  # parent of 32e5b08, the first of the CPU-throughput commits
STEPS = {"cifar10": 20, "ptb": 100, "wmt14": 8}
VARIANTS = [("before", "fp32"), ("after", "fp32"), ("before", "bf16"), ("after", "bf16")]


def unpack(rev: str, data: Path, into: Path) -> Path:
    """The tree of ``rev`` as files (no .git), with ``data`` linked where its config looks."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "data").symlink_to(data.resolve())
    return into


def measure(tree: Path, task: str, precision: str, args: argparse.Namespace) -> Dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).with_name("tree_step.py")), task, "--tree", str(tree),
           "--precision", precision, "--steps", str(args.steps or STEPS[task]), "--threads", str(args.threads),
           "--scale", args.scale, "--data", str(args.data.resolve())]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def peaks(path: Optional[Path], threads: int) -> Dict[str, float]:
    if not path or not path.is_file():
        return {}
    dtype = {"float32": "fp32", "bfloat16": "bf16"}
    with path.open() as f:
        return {dtype[r["dtype"]]: float(r["gflops"]) for r in csv.DictReader(f)
                if r["kind"] == "gemm" and r["dtype"] in dtype and int(r["threads"]) == threads}


def summarise(samples: Dict[tuple, List[Dict[str, Any]]], peak: Dict[str, float], tasks: List[str],
              rev: str) -> List[Dict[str, Any]]:
    """One row per (task, precision) and one per task for before fp32 -> after bf16."""
    rows = []
    pairs = [(p, p) for p in ("fp32", "bf16")] + [("fp32", "bf16")]
    for task in tasks:
        for p_before, p_after in pairs:
            b, a = samples[(task, "before", p_before)], samples[(task, "after", p_after)]
            ok = [(x, y) for x, y in zip(b, a) if "error" not in x and "error" not in y]
            row: Dict[str, Any] = {"task": task, "before": f"{rev} {p_before}", "after": f"HEAD {p_after}",
                                   "pairs": len(ok)}
            errors = [s["error"] for s in [*b, *a] if "error" in s]
            if not ok:
                rows.append({**row, "error": errors[0] if errors else "no measurement"})
                continue
            for key in ("per_wall_s", "per_cpu_s"):
                row[f"{key}_before"] = statistics.median(x[key] for x, _ in ok)
                row[f"{key}_after"] = statistics.median(y[key] for _, y in ok)
                row[f"{key}_ratio"] = statistics.median(y[key] / x[key] for x, y in ok)
            row["gflops_after"] = statistics.median(y["gflops"] for _, y in ok)
            row["pct_peak_after"] = 100 * row["gflops_after"] / peak[p_after] if p_after in peak else float("nan")
            row["unit"] = "img" if task.startswith("cifar") else "tok"
            rows.append(row)
    return rows


FIELDS = ["task", "before", "after", "pairs", "unit", "per_wall_s_before", "per_wall_s_after", "per_wall_s_ratio",
          "per_cpu_s_before", "per_cpu_s_after", "per_cpu_s_ratio", "gflops_after", "pct_peak_after", "error"]


def write(rows: List[Dict[str, Any]], info: Dict[str, Any], args: argparse.Namespace, peak: Dict[str, float]) -> str:
    out = args.out / "before_after_cpu"
    machine.write_csv(rows, FIELDS, out.with_suffix(".csv"))
    f = lambda v: "" if v is None or v != v else f"{v:.0f}"  # noqa: E731
    md = ["# Training-step throughput before and after the CPU-throughput changes (before_after_cpu)", "",
          machine.header(info), "",
          f"before: the tree of `{args.rev}`; after: this checkout. {args.threads} thread(s), scale `{args.scale}`, "
          f"{args.reps} repetitions in rotated order, each a fresh process. GEMM peak "
          f"({', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in peak.items()) or 'not given'}) from `{args.peak}`. "
          "Method: `scripts/bench/bench_before_after.py` docstring.", "",
          "| task | before | after | n | per wall s before → after | after/before (paired) | "
          "per CPU s before → after | after/before (paired) | GFLOP/s after | % of GEMM peak |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            md.append(f"| {r['task']} | {r['before']} | {r['after']} | 0 | {r['error']} | | | | | |")
            continue
        md.append(f"| {r['task']} | {r['before']} | {r['after']} | {r['pairs']} | "
                  f"{f(r['per_wall_s_before'])} → {f(r['per_wall_s_after'])} {r['unit']}/s | **{r['per_wall_s_ratio']:.2f}** | "
                  f"{f(r['per_cpu_s_before'])} → {f(r['per_cpu_s_after'])} | **{r['per_cpu_s_ratio']:.2f}** | "
                  f"{r['gflops_after']:.1f} | {f(r['pct_peak_after'])} |")
    text = "\n".join(md) + "\n"
    out.with_suffix(".md").write_text(text)
    return text


def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", default=BEFORE)
    p.add_argument("--tasks", type=lambda s: s.split(","), default=list(STEPS))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=0, help="timed steps per measurement (default: per task)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scale", default="cpu")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("LOOKAHEAD_DATA", ROOT / "data")))
    p.add_argument("--peak", type=Path, default=None, help="machine_cpu.csv with the idle machine's GEMM rows")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Path:
    args = parse(argv)
    info = machine.describe()
    samples: Dict[tuple, List[Dict[str, Any]]] = {(t, w, p): [] for t in args.tasks for w, p in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": unpack(args.rev, args.data, Path(tmp)), "after": ROOT}
        for rep in range(args.reps):
            for task in args.tasks:
                for which, precision in VARIANTS[rep % 4:] + VARIANTS[: rep % 4]:
                    s = measure(trees[which], task, precision, args)
                    samples[(task, which, precision)].append(s)
                    print(f"rep {rep} {task} {which} {precision}: " +
                          (s["error"] if "error" in s else f"{s['per_wall_s']:.0f}/wall-s {s['per_cpu_s']:.0f}/cpu-s"),
                          file=sys.stderr, flush=True)
    peak = peaks(args.peak, args.threads)
    print(write(summarise(samples, peak, args.tasks, args.rev), info, args, peak))
    return args.out / "before_after_cpu"


if __name__ == "__main__":
    main()
