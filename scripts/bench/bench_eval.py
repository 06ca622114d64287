"""What evaluation costs a run: one evaluation vs the training steps between evaluations.

Per task at ``--scale`` (the run's config, Lookahead as in the headline runs) and precision:

- ``step_ms``: median of ``--reps`` timed blocks of training steps (``task_step.py``);
- ``experiments.evaluation.evaluate`` (what the loop calls: fast + slow weights, in the run's
  precision), timed in two optimizer states: mid-period (phi != theta: both evaluated) and
  right after a sync (phi = theta: the slow columns reuse the fast metrics). CIFAR's evaluation
  is timed at each ``--cifar-batches`` eval batch size; "before" is the previous code's cost: fp32
  at the previous default batch (1000), both variants at every evaluation. Timings rotate over
  the variants, medians of ``--reps``.
- translation: the intermediate evaluation (greedy BLEU on a prefix of the test set) and the
  last one (beam search on all of it) cost differently; both are timed (the last one once,
  ``--no-final`` skips it).

The run estimate puts these on the run's own schedule: evaluations at every
``trainer.eval_every`` epochs and at the end (synced ones where the step is a multiple of k),
``run_steps`` x ``step_ms`` of training, and reports evaluation's share of the run's wall time
before and after.

    python scripts/bench/bench_eval.py [--data DIR] [--tasks cifar10,airbench,ptb,wmt14] [--quick]

Writes ``results/bench/eval_cpu.{md,csv}`` (``eval_cpu_quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

import machine
import task_step
from experiments import runtime
from experiments.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[2]
OLD_CIFAR_BATCH = 1000  # conf/task_scale/cifar10_cpu.yaml before this benchmark


def _evaluate_s(stepper: task_step.Stepper, precision: str) -> float:
    trainer = replace(stepper.cfg.trainer, precision=precision)
    start = time.perf_counter()
    evaluate(stepper.task, stepper.opt, trainer)
    return time.perf_counter() - start


def _to_state(stepper: task_step.Stepper, synced: bool) -> None:
    """Step until the Lookahead counter is mid-period (synced=False) or just after a sync."""
    la = stepper.opt.optimizer
    i = la.fast_steps
    while la.fast_steps == 0 or (la.fast_steps % la.k == 0) != synced:
        stepper.step(i)
        i += 1


def eval_schedule(cfg: Any, spe: int, run_steps: int) -> List[int]:
    """The steps at which the loop evaluates (every eval_every epochs and at the last step)."""
    every = max(1, round(cfg.trainer.eval_every * spe))
    return sorted({s for s in range(every, run_steps + 1, every)} | {run_steps})


def bench_task(args: argparse.Namespace, task: str, log) -> List[Dict[str, Any]]:
    rows = []
    for precision in args.precisions:
        cfg = task_step.compose(task, args.scale, args.threads, precision, args.data)
        steps = args.steps or task_step.TASKS[task].steps
        cifar = task_step.TASKS[task].task == "cifar10"
        s = task_step.build(task, cfg, steps)
        task_step.timed_steps(s, 0, steps)  # warm-up
        step_s = statistics.median(task_step.timed_steps(s, 0, steps)[0] for _ in range(args.reps)) / steps
        batches = args.cifar_batches if cifar else [cfg.data.eval_batch_size]
        # variant -> (optimizer state, trainer precision, eval batch)
        variants = [("mid", precision, b) for b in batches] + [("sync", precision, b) for b in batches]
        if precision != "fp32" or cifar:
            old = OLD_CIFAR_BATCH if cifar else cfg.data.eval_batch_size
            variants.append(("mid", "fp32", old))
        variants = list(dict.fromkeys(variants))
        times: Dict[Any, List[float]] = {v: [] for v in variants}
        groups = [[v for v in variants if v[0] == state] for state in ("mid", "sync")]
        for rep in range(args.reps):
            # All mid-period variants, then the synced ones (a state change costs training steps),
            # each group in an order rotated per repetition so load drifts hit all alike.
            for state, p, b in [v for g in groups for v in g[rep % len(g):] + g[: rep % len(g)]]:
                _to_state(s, state == "sync")
                s.cfg.data.eval_batch_size = b
                times[(state, p, b)].append(_evaluate_s(s, p))
        s.cfg.data.eval_batch_size = cfg.data.eval_batch_size
        info = {"task": task, "precision": precision, "step_ms": 1e3 * step_s, "steps_per_epoch": s.info["steps_per_epoch"],
                "run_steps": s.info["run_steps"], "k": s.opt.optimizer.k}
        for (state, p, b), t in times.items():
            rows.append({**info, "kind": "eval", "state": state, "eval_precision": p, "eval_batch": b,
                         "eval_s": statistics.median(t), "phase": "intermediate"})
        if task_step.TASKS[task].task == "wmt14" and args.final:
            for p in dict.fromkeys([precision, "fp32"]):
                _to_state(s, False)
                s.cfg.trainer.max_steps = 1  # the task decodes like the last evaluation once it served the last step
                t = _evaluate_s(s, p)
                s.cfg.trainer.max_steps = cfg.trainer.max_steps
                rows.append({**info, "kind": "eval", "state": "mid", "eval_precision": p,
                             "eval_batch": cfg.data.eval_batch_size, "eval_s": t, "phase": "final"})
        log(f"  {task} {precision}: step {1e3 * step_s:.0f} ms, " + ", ".join(
            f"{r['state']}/{r['eval_precision']}/b{r['eval_batch']}/{r['phase']}: {r['eval_s']:.2f} s"
            for r in rows if r["task"] == task and r["precision"] == precision))
        rows.append(estimate(cfg, rows, info, task))
    return rows


def estimate(cfg: Any, rows: List[Dict[str, Any]], info: Dict[str, Any], task: str) -> Dict[str, Any]:
    """Evaluation's share of a whole run, before and after (see the module docstring)."""
    mine = [r for r in rows if r["kind"] == "eval" and r["task"] == task and r["precision"] == info["precision"]]
    run_p = info["precision"]

    def cost(state: str, p: str, b: int, phase: str = "intermediate") -> Optional[float]:
        key = (state, p, b, phase)
        found = [r["eval_s"] for r in mine if (r["state"], r["eval_precision"], r["eval_batch"], r["phase"]) == key]
        return found[0] if found else None

    mid_new = {r["eval_batch"]: r["eval_s"] for r in mine
               if (r["state"], r["eval_precision"], r["phase"]) == ("mid", run_p, "intermediate")}
    best = min(mid_new, key=mid_new.get)
    old_b = OLD_CIFAR_BATCH if task_step.TASKS[task].task == "cifar10" else cfg.data.eval_batch_size
    at = eval_schedule(cfg, info["steps_per_epoch"], info["run_steps"])
    final_old, final_new = cost("mid", "fp32", old_b, "final"), cost("mid", run_p, old_b, "final")
    old_s = new_s = 0.0
    for i, step in enumerate(at):
        last = i == len(at) - 1
        old_s += (final_old if last and final_old else cost("mid", "fp32", old_b) or mid_new[old_b])
        synced = step % info["k"] == 0
        new_s += (final_new if last and final_new else cost("sync" if synced else "mid", run_p, best))
    train_s = info["run_steps"] * info["step_ms"] / 1e3
    return {**info, "kind": "estimate", "evaluations": len(at), "synced_evaluations": sum(s % info["k"] == 0 for s in at),
            "best_eval_batch": best, "train_s": train_s, "eval_before_s": old_s, "eval_after_s": new_s,
            "eval_before_pct": 100 * old_s / (train_s + old_s), "eval_after_pct": 100 * new_s / (train_s + new_s),
            "final_timed": final_new is not None}


FIELDS = ["kind", "task", "precision", "state", "eval_precision", "eval_batch", "phase", "eval_s", "step_ms",
          "steps_per_epoch", "run_steps", "k", "evaluations", "synced_evaluations", "best_eval_batch", "train_s",
          "eval_before_s", "eval_after_s", "eval_before_pct", "eval_after_pct", "final_timed"]


def write(rows: List[Dict[str, Any]], info: Dict[str, Any], args: argparse.Namespace, out: Path) -> str:
    machine.write_csv(rows, FIELDS, out.with_suffix(".csv"))
    md = [f"# Evaluation cost ({out.stem})", "", machine.header(info), "",
          f"Scale `{args.scale}`, {args.threads} thread(s), medians of {args.reps} rotated repetitions. "
          "Method: `scripts/bench/bench_eval.py` docstring.", "",
          "## One evaluation (`experiments.evaluation.evaluate`: fast + slow weights)", "",
          "| task | run precision | optimizer state | eval precision | eval batch | phase | seconds |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['task']} | {r['precision']} | {r['state']} | {r['eval_precision']} | {r['eval_batch']} | {r['phase']} | "
           f"{r['eval_s']:.2f} |" for r in rows if r["kind"] == "eval"]
    md += ["", "## Evaluation's share of a run's wall time", "",
           "| task | precision | step (ms) | run steps | evaluations (synced) | best eval batch | training (s) | "
           "eval before (s) | eval after (s) | before | after |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['task']} | {r['precision']} | {r['step_ms']:.0f} | {r['run_steps']} | {r['evaluations']} "
           f"({r['synced_evaluations']}) | {r['best_eval_batch']} | {r['train_s']:.0f} | {r['eval_before_s']:.0f} | "
           f"{r['eval_after_s']:.0f} | {r['eval_before_pct']:.1f} % | {r['eval_after_pct']:.1f} % |"
           for r in rows if r["kind"] == "estimate"]
    if any(task_step.TASKS[r["task"]].task == "wmt14" and not r["final_timed"] for r in rows if r["kind"] == "estimate"):
        md += ["", "The translation estimate prices its last evaluation like an intermediate one (`--no-final`)."]
    text = "\n".join(md) + "\n"
    out.with_suffix(".md").write_text(text)
    return text


def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = task_step.task_parser(__doc__)
    p.add_argument("--cifar-batches", type=lambda s: [int(b) for b in s.split(",")], default=[128, 250, 500, 1000])
    p.add_argument("--steps", type=int, default=0, help="training steps per timed block (default: per task)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-final", dest="final", action="store_false", help="skip timing translation's last evaluation")
    p.add_argument("--quick", action="store_true", help="2 steps, 1 repetition: checks the script end to end")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.reps = args.steps or 2, 1
    return args


def main(argv: Optional[List[str]] = None) -> Path:
    args = parse(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    info = machine.describe()
    cfg = task_step.compose(args.tasks[0], args.scale, args.threads, "fp32", args.data)
    runtime.configure(cfg.trainer, cfg.seed, torch.device("cpu"))
    rows: List[Dict[str, Any]] = []
    for task in args.tasks:
        rows += bench_task(args, task, log)
    out = args.out / f"eval_cpu{'_quick' if args.quick else ''}"
    print(write(rows, info, args, out))
    return out


if __name__ == "__main__":
    main()
