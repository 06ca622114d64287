"""The paper's Table 1 CIFAR-10 runs, packed onto one GPU under a wall-clock budget: ``make paper-cifar10``.

    python scripts/paper_cifar10.py --arms sgd,lookahead_sgd --seeds 0,1 --out runs/gpu \
        [--jobs 4] [--budget-s 540] [--data-root DIR] [--compile-mode reduce-overhead] [--pack FILE.tar.gz]

Each (arm, seed) is one ``python run.py +experiment=table1_cifar task=cifar10 optim=<arm> seed=<s>
scale=paper trainer.checkpoint=false`` (ResNet-18, 200 epochs, batch 128, lr x0.2 at 60/120/160:
``conf/task_scale/cifar10_paper.yaml``; each arm's paper values: ``conf/task_optim/``), in its
own process, with ``LOOKAHEAD_RUNS=<out>``: its directory is
``<out>/table1_cifar/<its overrides>``, the layout ``make sweep-table1_cifar`` gives and
``scripts/collect.py --runs <out>`` reads. Up to ``--jobs`` run at once on the same device (what
``hydra/launcher=joblib hydra.launcher.n_jobs`` does to a sweep; the script starts the
processes itself so that it can stop each one cleanly). A pair whose run has completed (same
config and data) is skipped by the run itself.

Budget: ``--budget-s`` after the start (or at once on SIGTERM/SIGINT to this script, e.g. from
``timeout -s TERM``), every run still going gets SIGTERM: the loop finishes its step, records
status ``interrupted`` with its metrics so far (``metrics.csv``, ``manifest.json``) and exits
143; a run that has not stopped ``--grace-s`` later is killed. No run starts with less than
``--min-run-s`` left. With ``trainer.checkpoint=false`` nothing but small records is written
(no ``checkpoint.pt``), so an interrupted run starts again from scratch when relaunched.

At the end it prints one line per pair (status, epochs, last reported test accuracy) and writes
them to ``<out>/table1_cifar/paper_cifar10_summary.csv``; ``--pack`` also writes the records
(``table1_cifar/`` without any checkpoint) to one ``.tar.gz``. Exit 0 when every pair ran
(completed or interrupted by the budget), 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = "table1_cifar"
EXIT_STATUS = {0: "completed", 143: "interrupted", 130: "interrupted", 2: "config or data error"}


def overrides(arm: str, seed: int, args: argparse.Namespace) -> list:
    out = ["+experiment=table1_cifar", "task=cifar10", f"optim={arm}", f"seed={seed}", f"scale={args.scale}",
           "trainer.checkpoint=false", "trainer.progress=false", f"trainer.threads={args.threads}",
           f"trainer.device={args.device}"]
    if args.data_root:
        out.append(f"data.root={args.data_root}")
    if args.compile_mode:
        out += ["trainer.compile=true", f"trainer.compile_mode={args.compile_mode}"]
    return out + list(args.extra)


class Stop:
    """SIGTERM/SIGINT to this script: stop every run now, as the budget would."""

    def __init__(self) -> None:
        self.signum = None
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, self.handler)

    def handler(self, signum, _frame) -> None:
        self.signum = signum


def run_all(args: argparse.Namespace) -> list:
    """Start, watch and stop the runs; returns one dict per pair with its exit code."""
    pairs = [(arm, seed) for seed in args.seeds for arm in args.arms]  # paired: both arms of seed 0 first
    env = {**os.environ, "LOOKAHEAD_RUNS": str(args.out), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    logs = args.out / ARTIFACT / "launcher_logs"
    logs.mkdir(parents=True, exist_ok=True)
    stop, start = Stop(), time.monotonic()
    waiting, running, done = list(pairs), {}, []
    stopped_at = None

    def give_up_waiting(why: str) -> None:
        done.extend({"arm": arm, "seed": seed, "exit": None, "note": why} for arm, seed in waiting)
        waiting.clear()

    while waiting or running:
        left = args.budget_s - (time.monotonic() - start)
        if stopped_at is None and (left <= 0 or stop.signum is not None):
            why = f"signal {stop.signum}" if stop.signum else f"budget of {args.budget_s:.0f} s"
            print(f"paper_cifar10: {why} reached; stopping {len(running)} run(s)", flush=True)
            for proc in running.values():
                proc.send_signal(signal.SIGTERM)  # the loop records `interrupted` after its step
            stopped_at = time.monotonic()
            give_up_waiting("not started: out of time")
        if stopped_at is None:
            while waiting and len(running) < args.jobs:
                if left < args.min_run_s:
                    give_up_waiting(f"not started: less than {args.min_run_s:.0f} s left")
                    break
                arm, seed = waiting.pop(0)
                with open(logs / f"{arm}_seed{seed}.log", "w") as log:
                    running[(arm, seed)] = subprocess.Popen(
                        [sys.executable, str(ROOT / "run.py"), *overrides(arm, seed, args)], cwd=ROOT, env=env,
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # signals come from here only
                print(f"paper_cifar10: started {arm} seed {seed}", flush=True)
        elif time.monotonic() - stopped_at > args.grace_s:
            for proc in running.values():
                if proc.poll() is None:
                    proc.kill()
        for (arm, seed), proc in list(running.items()):
            if proc.poll() is not None:
                done.append({"arm": arm, "seed": seed, "exit": proc.returncode, "note": ""})
                del running[(arm, seed)]
                print(f"paper_cifar10: {arm} seed {seed} exited {proc.returncode}", flush=True)
        if running:
            time.sleep(0.5)
    return done


def run_dir(arm: str, seed: int, args: argparse.Namespace) -> Path | None:
    """The directory a pair's run used: the one whose manifest has exactly its overrides."""
    wanted = overrides(arm, seed, args)
    for manifest in sorted((args.out / ARTIFACT).glob("*/manifest.json")):
        if json.loads(manifest.read_text()).get("overrides") == wanted:
            return manifest.parent
    return None


def report(done: list, args: argparse.Namespace) -> list:
    rows = []
    for d in sorted(done, key=lambda d: (d["seed"], d["arm"])):
        path = run_dir(d["arm"], d["seed"], args)
        m = json.loads((path / "manifest.json").read_text()) if path else {}
        status = m.get("status") or d["note"] or EXIT_STATUS.get(d["exit"], f"exit {d['exit']}")
        epochs, acc = "", ""
        if path and (path / "metrics.csv").exists():
            with open(path / "metrics.csv", newline="") as f:
                metrics = list(csv.DictReader(f))
            if metrics:
                epochs = f"{float(metrics[-1]['epoch']):.2f}"
            scored = [r for r in metrics if r.get("test_acc")]
            acc = scored[-1]["test_acc"] if scored else ""
        rows.append({"arm": d["arm"], "seed": d["seed"], "status": status, "exit": d["exit"], "epochs": epochs,
                     "test_acc": acc, "train_s": f"{m['time_s']:.0f}" if m.get("time_s") else "",
                     "run_dir": str(path.relative_to(args.out)) if path else ""})
    summary = args.out / ARTIFACT / "paper_cifar10_summary.csv"
    with summary.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["arm"])
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(f"{r['arm']} seed {r['seed']}: {r['status']}, {r['epochs'] or 0} epochs, test_acc {r['test_acc'] or '-'}"
              f", {r['run_dir'] or 'no run directory'}")
    return rows


def pack(args: argparse.Namespace) -> None:
    """The records only (never a checkpoint or snapshot), relative to ``--out``."""
    args.pack.parent.mkdir(parents=True, exist_ok=True)

    def small(info: tarfile.TarInfo):
        return None if info.name.endswith(".pt") else info

    with tarfile.open(args.pack, "w:gz") as tar:
        tar.add(args.out / ARTIFACT, arcname=ARTIFACT, filter=small)
    print(f"paper_cifar10: records in {args.pack} ({args.pack.stat().st_size / 1024:.0f} KiB)")


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", default="sgd,lookahead_sgd", help="comma-separated optim names")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    p.add_argument("--out", type=Path, required=True, help="runs folder (LOOKAHEAD_RUNS of every run)")
    p.add_argument("--jobs", type=int, default=4, help="runs at once on the device")
    p.add_argument("--budget-s", type=float, default=540.0, help="wall clock after which every run is stopped")
    p.add_argument("--grace-s", type=float, default=45.0, help="how long a stopped run may take to write records")
    p.add_argument("--min-run-s", type=float, default=60.0, help="no run starts with less time than this left")
    p.add_argument("--data-root", default=None, help="folder holding cifar-10-batches-py/ (default: the config's)")
    p.add_argument("--scale", default="paper", help="paper (the protocol); smoke for tests")
    p.add_argument("--device", default="auto", help="trainer.device of every run")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per run (0: cores / jobs)")
    p.add_argument("--compile-mode", default="", help="trainer.compile_mode (empty: no torch.compile)")
    p.add_argument("--pack", type=Path, default=None, help="also write the records to this .tar.gz")
    p.add_argument("extra", nargs="*", help="more overrides for every run (e.g. trainer.max_steps=50)")
    args = p.parse_args(argv)
    args.arms = [a for a in args.arms.split(",") if a]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.out = args.out.resolve()
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    done = run_all(args)
    rows = report(done, args)
    if args.pack:
        pack(args)
    ok = all(r["status"] in ("completed", "interrupted") for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
