"""Time training steps of one task with the ``experiments`` package of a given checkout.

    python scripts/bench/tree_step.py --tree DIR TASK --precision fp32 --steps N [--threads T] [--scale cpu]

``DIR`` is any checkout of this project (an old commit unpacked with ``git archive``, or this
one): its ``experiments`` package, ``conf/`` and run-time settings (threads, seeds,
deterministic mode, heap and dropout choices its tasks make) are the ones timed. The step
itself is ``task_step.Stepper.step`` of this checkout (autocast, ``task.loss``, backward,
clipping, optimizer step, ``zero_grad``), so both trees run the same loop around their own
code. It needs only APIs every commit since the sweep layer has (``experiments.sweep.compose``,
``build_task``, ``build_optimizer``, ``runtime.configure``/``autocast_dtype``).

Prints one JSON line: examples per wall second and per CPU second (user + system of this
process over the timed steps; the steadier figure when the machine is shared), the FLOPs of
one step (``FlopCounterMode``), and the tree's task_info.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task")
    p.add_argument("--tree", type=Path, required=True)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warm", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scale", default="cpu")
    p.add_argument("--data", default=os.environ.get("LOOKAHEAD_DATA", "data"))
    a = p.parse_args()
    tree, data = a.tree.resolve(), str(Path(a.data).resolve())
    # The tree's packages first; this checkout's bench helpers (task_step) after them.
    sys.path[:0] = [str(tree), str(HERE)]
    os.chdir(tree)
    import torch

    import task_step
    from experiments import runtime

    cfg = task_step.compose(a.task, a.scale, a.threads, a.precision, data)
    runtime.configure(cfg.trainer, cfg.seed, torch.device("cpu"))
    s = task_step.build(a.task, cfg, a.warm + a.steps)
    flops = s.flops()
    task_step.timed_steps(s, 0, a.warm)
    cpu0 = _cpu_s()
    wall, examples = task_step.timed_steps(s, a.warm, a.steps)
    cpu = _cpu_s() - cpu0
    info = getattr(s.task, "info", {}) or {}
    print(json.dumps({"task": a.task, "tree": str(tree), "precision": a.precision, "threads": a.threads,
                      "steps": a.steps, "examples": examples, "wall_s": wall, "cpu_s": cpu,
                      "per_wall_s": examples / wall, "per_cpu_s": examples / cpu, "flops_per_step": flops,
                      "gflops": flops * a.steps / wall / 1e9,
                      "task_info": {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))}}))


if __name__ == "__main__":
    main()
