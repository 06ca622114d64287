"""What is left of the cpu-scale reproduction, and what it will cost, from the committed results.

    python scripts/plan.py [--results results]        (make plan; writes results/plan.md)

For each artifact of the cpu-scale plan (``PLAN``), the sweep is expanded exactly as
``make sweep-<artifact> SCALE=cpu ARGS=...`` expands it (``experiments.sweep``: Hydra's own
sweeper and run-directory names), and its members are matched by run name against
``results/<artifact>/runs.csv``: a member whose status is ``completed`` or ``diverged`` is done
(both are results; a relaunch skips them), every other member is left.

Cost of a member left, in hours of one core (members run with one thread, two side by side):

- the median wall-clock (manifest ``end_time - start_time``) of the artifact's own committed
  one-thread runs that completed without being resumed (in the current memory layout, for
  conv nets), when there are any; else
- the member's epochs times the median wall-clock per epoch of every such run of the same task
  and model (any artifact); else unknown.

The estimate inherits what those runs had: evaluations every epoch, a second job beside them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.sweep import MAKE_ARGS, compose, run_dirname, sweep_jobs  # noqa: E402

# The cpu-scale plan: artifact -> the ARGS its sweep runs with. CIFAR artifacts run on CIFAR-10
# only (CIFAR-100 is not among the offline datasets); table2_imagenet is not in it (ImageNet
# needs a GPU cluster; the small ImageNet-style trees serve the smoke tests only).
PLAN: Dict[str, List[str]] = {
    "table1_cifar": ["task=cifar10"],
    "table3_ptb": [],
    "fig7b_wmt": [],
    "fig2_nqm": [],
    "table5_k_alpha": ["task=cifar10"],
    "ptb_k_alpha": [],
    "fig8_inner_lr": [],
    "fig8_momentum": [],
    "report_radam": ["task=cifar10"],
    "report_k_alpha": ["task=cifar10"],
    "report_lr001": ["task=cifar10"],
    "report_fast_decay": ["task=cifar10"],
    "report_inner_ablation": ["task=cifar10"],
    "report_batch_k": ["task=cifar10"],
    "fig10_per_update": [],
    "fig1_trajectory": [],
    "slow_bn_cifar": [],
}
SCALE = "cpu"
DONE = {"completed", "diverged"}
# The fair-comparison studies of the cpu-scale plan (conf/tune/<study>.yaml; README "Fair
# comparisons"): each is its tuning trials (arms x budget x tuning seeds) plus its final runs
# (arms x final seeds), done when results/<study>/trials.csv or final.csv holds them as results.
STUDIES = ("cifar10_sgd", "cifar10_adamw", "ptb_sgd", "ptb_adam", "multi30k_adam", "cifar10_relatives", "ptb_relatives")


@dataclass
class Row:
    artifact: str
    args: List[str]
    planned: int
    done: int
    hours_per_run: Optional[float]
    basis: str
    shared: str = ""  # runs another study makes for this one (reuse:), e.g. "+26 of ptb_sgd"

    @property
    def left(self) -> int:
        return self.planned - self.done

    @property
    def core_hours(self) -> Optional[float]:
        return None if self.hours_per_run is None else self.left * self.hours_per_run


def _manifests(results: Path, pattern: str = "*/manifests/**/*.json") -> List[dict]:
    """Committed manifests of one-thread runs that completed in one go (a diverged run stopped
    early and a resumed one paused: neither says what a run costs), the studies' tuning and
    final runs (``<study>/manifests/{tune,final}/``) included: they are the most recent runs of
    their protocol, so a study not yet started is costed from a sibling's. A study's copy of a
    run it reuses (``reused_from``) is left out: that run counts once, where it trained.

    Runs of a conv-net task from before the layout was recorded (NCHW on CPU, no
    ``task_info.memory_format``) are dropped once runs of that task in the recorded layout
    exist: new runs use the faster layout, so only those say what a new run costs.
    """
    out = []
    for path in sorted(results.glob(pattern)):
        m = json.loads(path.read_text())
        if (m.get("status") == "completed" and m.get("threads") == 1 and not m.get("resumed")
                and not m.get("reused_from") and m.get("start_time") and m.get("end_time")):
            out.append(m)
    laid_out = {m["config"]["task"]["name"] for m in out if "memory_format" in (m.get("task_info") or {})}
    return [m for m in out
            if m["config"]["task"]["name"] not in laid_out or "memory_format" in (m.get("task_info") or {})]


def _wall_h(m: dict) -> float:
    return (m["end_time"] - m["start_time"]) / 3600.0


def _key(cfg: dict) -> Tuple[str, str]:
    return str(cfg["task"]["name"]), str(cfg["task"].get("model"))


def per_epoch_rates(manifests: Sequence[dict]) -> Dict[Tuple[str, str], Tuple[float, int]]:
    """(task, model) -> (median wall-clock hours per epoch, number of runs)."""
    samples: Dict[Tuple[str, str], List[float]] = {}
    for m in manifests:
        epochs = m["config"]["trainer"].get("epochs")
        if epochs:
            samples.setdefault(_key(m["config"]), []).append(_wall_h(m) / epochs)
    return {k: (statistics.median(v), len(v)) for k, v in samples.items()}


def _done_runs(results: Path, artifact: str) -> set:
    path = results / artifact / "runs.csv"
    if not path.is_file():
        return set()
    runs = pd.read_csv(path)
    return set(runs.loc[runs["status"].isin(DONE), "run"])


def plan_row(artifact: str, args: List[str], results: Path, manifests: Sequence[dict],
             rates: Dict[Tuple[str, str], Tuple[float, int]]) -> Row:
    sweep_args = [f"+experiment={artifact}", f"scale={SCALE}", *MAKE_ARGS, *args]
    jobs, master = sweep_jobs(sweep_args)
    names = [run_dirname(job, master) for job in jobs]
    done = len(set(names) & _done_runs(results, artifact))
    own = [_wall_h(m) for m in manifests if m["config"].get("experiment_name") == artifact]
    if own:
        return Row(artifact, args, len(jobs), done, statistics.median(own), f"its own runs (n={len(own)})")
    cfg = compose(jobs[0])
    epochs = cfg.trainer.get("epochs")
    key = (str(cfg.task.name), str(cfg.task.get("model")))
    if epochs and key in rates:
        rate, n = rates[key]
        return Row(artifact, args, len(jobs), done, rate * epochs, f"{epochs:g} epochs at the {_name(key)} rate")
    return Row(artifact, args, len(jobs), done, None, "no comparable run yet")


def study_row(name: str, results: Path, manifests: Sequence[dict],
              rates: Dict[Tuple[str, str], Tuple[float, int]]) -> Row:
    """A study's runs (tuning trials + final runs), those done, and their cost per run: the median
    wall-clock of its own committed one-thread runs, else its epochs at the task's rate."""
    from scripts.collect_lib.study_spec import load_study

    study = load_study(name)
    tune = study.tune_members(SCALE)
    # Arms a reused study runs with the same protocol are its runs, not this study's (reuse.py).
    shared = {arm.name: other.name for other in map(load_study, study.reuse) for arm in study.arms
              if arm in other.arms and _protocol(other) == _protocol(study)}
    per_arm = study.budget * len(study.tune_seeds) + len(study.final_seeds)
    planned = (len(study.arms) - len(shared)) * per_arm
    done = 0
    for table in ("trials.csv", "final.csv"):
        path = study.results_dir(results, SCALE) / table
        if path.is_file():
            df = pd.read_csv(path)
            done += int((df["status"].isin(DONE) & ~df["arm"].isin(list(shared))).sum())
    note = f"+{len(shared) * per_arm} of {', '.join(sorted(set(shared.values())))}" if shared else ""
    own = [_wall_h(m) for m in _manifests(results, f"{study.results_dir(results, SCALE).name}/manifests/*/*.json")]
    if own:
        return Row(name, [], planned, done, statistics.median(own), f"its own runs (n={len(own)})", note)
    cfg = compose([*study.common_args(SCALE), *tune[0].overrides])
    epochs = cfg.trainer.get("epochs")
    key = (str(cfg.task.name), str(cfg.task.get("model")))
    if epochs and key in rates:
        return Row(name, [], planned, done, rates[key][0] * epochs, f"{epochs:g} epochs at the {_name(key)} rate",
                   note)
    return Row(name, [], planned, done, None, "no comparable run yet", note)


def _protocol(study) -> List[str]:
    return [a for a in study.common_args(SCALE) if not a.startswith(("experiment_name=", "study="))]


def render_studies(rows: Sequence[Row]) -> str:
    lines = ["", "## Fair-comparison studies (conf/tune/)", "",
             "Each study: tuning trials (the same budget per arm), then each arm at its selected values on "
             "paired final seeds; runs = trials + final runs it trains itself (+ those of the arms it "
             "shares with a study it reuses, counted there).", "",
             "| study | command (tune, select, final, analyze; each skips what is done) | runs | done | left | "
             "min per run | core-hours left |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cmd = f"`make study-{r.artifact} JOBS=2`"
        runs = f"{r.planned} ({r.shared})" if r.shared else f"{r.planned}"
        lines.append(f"| {r.artifact} | {cmd} | {runs} | {r.done} | {r.left} | "
                     f"{_fmt(None if r.hours_per_run is None else 60 * r.hours_per_run)} ({r.basis}) | "
                     f"{_fmt(r.core_hours)} |")
    known = [r.core_hours for r in rows if r.core_hours is not None]
    lines += ["", f"Studies left: {sum(r.left for r in rows)} runs, {sum(known):.1f} core-hours, about "
              f"{sum(known) / 2:.1f} hours with two runs at a time."]
    return "\n".join(lines) + "\n"


def _name(key: Tuple[str, str]) -> str:
    task, model = key
    return task if model == "None" else f"{task}/{model}"


def _fmt(x: Optional[float], digits: int = 1) -> str:
    return "?" if x is None else f"{x:.{digits}f}"


def render(rows: Sequence[Row], rates: Dict[Tuple[str, str], Tuple[float, int]]) -> str:
    lines = [
        "# What is left of the cpu-scale plan",
        "",
        "Written by `make plan` (scripts/plan.py) from the sweep files and the committed results: "
        "a member is done when results/<artifact>/runs.csv holds it as completed or diverged. "
        "Hours are hours of one core (one thread per run, two runs side by side), estimated from "
        "the committed manifests.",
        "",
        "| artifact | command (skips what is done) | runs | done | left | min per run | core-hours left |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        args = f' ARGS="{" ".join(r.args)}"' if r.args else ""
        cmd = f"`make sweep-{r.artifact} SCALE={SCALE} JOBS=2{args}`"
        runs = f"{r.planned} ({r.shared})" if r.shared else f"{r.planned}"
        lines.append(f"| {r.artifact} | {cmd} | {runs} | {r.done} | {r.left} | "
                     f"{_fmt(None if r.hours_per_run is None else 60 * r.hours_per_run)} ({r.basis}) | "
                     f"{_fmt(r.core_hours)} |")
    left = sum(r.left for r in rows)
    known = [r.core_hours for r in rows if r.core_hours is not None]
    unknown = [r.artifact for r in rows if r.core_hours is None and r.left]
    total = sum(known)
    lines += ["", f"Left: {left} runs, {total:.1f} core-hours"
              + (f" plus the unestimated {', '.join(unknown)}" if unknown else "")
              + f", about {total / 2:.1f} hours with two runs at a time."]
    if rates:
        lines += ["", "Wall-clock per epoch (median of committed one-thread runs): "
                  + "; ".join(f"{_name(k)} {60 * h:.1f} min (n={n})" for k, (h, n) in sorted(rates.items()))
                  + "."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    manifests = _manifests(args.results)
    rates = per_epoch_rates(manifests)
    rows = [plan_row(a, extra, args.results, manifests, rates) for a, extra in PLAN.items()]
    studies = [study_row(name, args.results, manifests, rates) for name in STUDIES]
    out = args.results / "plan.md"
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(render(rows, rates) + render_studies(studies))
    tmp.replace(out)  # atomic: never a half-written plan
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
