"""A study's tables under ``results/<study>/``: trials, expected best score, paired differences, table.md.

Written by ``scripts/study.py analyze`` and by ``make collect`` for every study with runs:

- ``trials.csv``: every trial of the design (``selection.trials_table``), its values and scores;
- ``expected_max.csv``: per arm, the expected best validation score of n = 1..N trials
  (``expected_max.expected_best``; a diverged trial counts as ``select.diverged`` when the study
  gives it, else as the worst finite score of any trial of the study), once the budget is complete;
- ``final.csv``: one row per final run (arm, seed, status, final metrics);
- ``paired.csv``: per comparison (arm minus baseline) and reported metric, the paired per-seed
  difference with its t and bootstrap 95% intervals (``paired.paired_difference``);
- ``table.md``: n, the tuning budget and both intervals beside every comparison, "no difference
  supported" where an interval contains zero; the selected values; the expected-best curve;
- ``manifests/{tune,final}/<run>.json`` (and ``.diff``): each tabulated run's manifest, verbatim, and
  nothing else (a file no run stands behind is removed).

Pooling (contract): the final runs of a study must share precision (``trainer.precision``, "auto"
read as bf16 on CUDA and fp32 on CPU), layout (``trainer.channels_last``) and thread count
(the manifest's ``threads``), and so must its tuning runs; otherwise nothing is written and a
:class:`StudyError` names the groups (``collect`` and ``study.py`` print it and exit 2). Final runs
must hold the values of ``selected.yaml``.

``selected.yaml`` is read here, never written (``scripts/study.py select`` writes it).
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd
import yaml

from . import _csv, _write, provenance_line
from .expected_max import expected_best
from .paired import paired_difference
from .records import Run, error_line
from .selection import RESULTS, check_values, missing_trials, study_runs, trials_table
from .study_spec import Study, StudyError

PERCENT = re.compile(r"_acc\d*$")  # accuracies are fractions in the runs, shown in % / pp


def pooling_key(run: Run) -> Tuple[str, Any, Any]:
    """(precision, channels_last, threads) a run trained with."""
    trainer = run.config.get("trainer") or {}
    precision = trainer.get("precision")
    if precision == "auto":  # TrainerConfig: bf16 autocast on CUDA, fp32 on CPU
        precision = "fp32" if str(run.manifest.get("device", "")).startswith("CPU") else "bf16"
    return str(precision), trainer.get("channels_last"), run.manifest.get("threads")


def check_poolable(study: Study, runs: Sequence[Run], what: str) -> Optional[Tuple[str, Any, Any]]:
    """The one pooling key of ``runs``; a StudyError when they differ."""
    keys = Counter(pooling_key(r) for r in runs)
    if len(keys) <= 1:
        return next(iter(keys), None)
    groups = "; ".join(f"{n} x (precision {p}, channels_last {c}, {t} threads), e.g. "
                       f"{next(r.run_id for r in runs if pooling_key(r) == (p, c, t))}"
                       for (p, c, t), n in sorted(keys.items(), key=str))
    raise StudyError(f"study {study.name}: cannot pool its {what} runs, they differ in precision, layout or "
                     f"threads: {groups}; rerun them alike (trainer.precision, trainer.channels_last, trainer.threads)")


def read_selected(path: Path) -> Optional[Dict[str, Any]]:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def final_table(study: Study, runs: Sequence[Run], selected: Optional[Dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for run in sorted(runs, key=lambda r: (str(r.config.get("arm")), int(r.config.get("seed", -1)))):
        arm = str(run.config.get("arm"))
        chosen = ((selected or {}).get("arms") or {}).get(arm)
        if chosen is None:
            raise StudyError(f"{run.path} is a final run of arm {arm!r}, which selected.yaml does not select")
        check_values(run, chosen["values"], "selected.yaml")
        rows.append({"study": study.name, "scale": run.manifest.get("scale"), "task": study.task,
                     "dataset": (run.config.get("task") or {}).get("dataset"), "arm": arm,
                     "optim": (run.config.get("optim") or {}).get("name"), "seed": run.config.get("seed"),
                     "status": run.status,
                     **{f"final_{k}": v for k, v in sorted((run.manifest.get("final") or {}).items())},
                     "run": run.run_id, "error": error_line(run.manifest)})
    return pd.DataFrame(rows)


def paired_table(study: Study, final: pd.DataFrame) -> pd.DataFrame:
    """Per comparison and reported metric: the paired statistics over completed seeds."""
    rows = []
    for arm, base in study.comparisons:
        for metric in study.report:
            column = f"final_{metric}"

            def values(name: str) -> Dict[int, float]:
                if final.empty or column not in final:
                    return {}
                mine = final[(final["arm"] == name) & (final["status"] == "completed")]
                return {int(s): float(v) for s, v in zip(mine["seed"], mine[column]) if pd.notna(v)}

            stats = paired_difference(values(arm), values(base))
            diverged = {a: int(((final["arm"] == a) & (final["status"] == "diverged")).sum()) if len(final) else 0
                        for a in (arm, base)}
            rows.append({"comparison": f"{arm} - {base}", "arm": arm, "baseline": base, "metric": metric, **stats,
                         "arm_diverged": diverged[arm], "baseline_diverged": diverged[base]})
    return pd.DataFrame(rows)


def diverged_score(study: Study, trials: pd.DataFrame) -> float:
    """What a diverged trial counts as in the expected-best curve."""
    if study.diverged is not None:
        return study.diverged
    finite = trials["score"].dropna()
    if finite.empty:
        return math.nan
    return float(finite.min() if study.higher_is_better else finite.max())


def expected_max_table(study: Study, trials: pd.DataFrame) -> pd.DataFrame:
    from .selection import trial_scores

    scores = trial_scores(trials)
    worst = diverged_score(study, trials)
    frames = []
    for arm in study.arms:
        mine = scores[scores["arm"] == arm.name]
        values = mine["score"].where(~mine["diverged"], worst).to_numpy(float)
        frames.append(expected_best(values, study.higher_is_better).assign(
            arm=arm.name, metric=study.metric, budget=study.budget, diverged=int(mine["diverged"].sum()),
            diverged_as=worst))
    df = pd.concat(frames, ignore_index=True)
    return df[["arm", "metric", "n", "expected_best", "std", "expected_best_wr", "budget", "diverged", "diverged_as"]]


# --- table.md ------------------------------------------------------------------------------------

def _scale_of(metric: str) -> Tuple[float, str]:
    return (100.0, " pp") if PERCENT.search(metric) else (1.0, "")


def _num(x: float, factor: float = 1.0, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{factor * x:+.4g}" if signed else f"{factor * x:.4g}"


def _interval(lo: float, hi: float, factor: float) -> str:
    return "-" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{factor * lo:+.3g}, {factor * hi:+.3g}]"


def lower_is_better(study: Study, metric: str) -> bool:
    """The selection metric's own direction; accuracies and BLEU up, losses and perplexities down."""
    if metric == study.metric:
        return not study.higher_is_better
    return not (PERCENT.search(metric) or metric.endswith("bleu"))


def verdict(row: pd.Series, lower_better: bool) -> str:
    if row["n"] < 2:
        return "too few paired seeds"
    if not row["supported"]:
        return "no difference supported"
    higher = row["mean_diff"] > 0
    better = higher != lower_better
    return f"{row['arm']} {'higher' if higher else 'lower'} ({'better' if better else 'worse'})"


def _trial_lines(study: Study, trials: pd.DataFrame) -> List[str]:
    """One row per finished trial, arm by arm: its point in the search space and its score."""
    finished = trials[trials["status"].isin(RESULTS)]
    if finished.empty:
        return ["*No trial finished yet.*"]
    f, _ = _scale_of(study.metric)
    out = [f"| arm | trial | values | {study.metric} |", "|---|---|---|---|"]
    for arm in study.arms:
        for _, r in finished[finished["arm"] == arm.name].sort_values("trial").iterrows():
            values = ", ".join(f"{d.key}={r[d.key]:.4g}" for d in arm.space)
            score = "diverged" if r["diverged"] else _num(r["score"], f)
            out.append(f"| {arm.name} | {int(r['trial'])} | {values} | {score} |")
    return out


def render(study: Study, scale: str, trials: pd.DataFrame, selected: Optional[Dict[str, Any]],
           expected: Optional[pd.DataFrame], final: pd.DataFrame, paired: Optional[pd.DataFrame],
           pool: Optional[Tuple[str, Any, Any]], provenance: str) -> str:
    done = int(trials["status"].isin(RESULTS).sum())
    seeds = ", ".join(map(str, study.final_seeds))
    lines = [f"# {study.title}", "",
             f"Study `{study.name}` (conf/tune/{study.name}.yaml) at scale {scale}, protocol {study.protocol}. "
             f"Tuning: {study.budget} trials per arm (scrambled Sobol, design seed {study.design_seed}; tuning seed"
             f"{'s' if len(study.tune_seeds) > 1 else ''} {', '.join(map(str, study.tune_seeds))}), "
             f"{done} of {len(trials)} tuning runs done; selection on `{study.metric}` ({study.mode}) only, "
             f"test never read. Final: each arm at its selected values on seeds {seeds} (paired by seed)"
             + (f", precision {pool[0]}, channels_last {pool[1]}, {pool[2]} thread(s)." if pool else ".")]
    lines += ["", "## Paired differences (final runs, arm minus baseline)", ""]
    if paired is None or paired.empty or not (paired["n"] > 0).any():
        lines.append(f"*No final runs yet: `make select-{study.name} final-{study.name}`.*")
    else:
        lines += ["| comparison | metric | n | arm | baseline | difference | 95% t interval | 95% bootstrap interval "
                  "| verdict |", "|---|---|---|---|---|---|---|---|---|"]
        for _, r in paired.iterrows():
            f, unit = _scale_of(r["metric"])
            lines.append(f"| {r['arm']} - {r['baseline']} | {r['metric']} | {r['n']} | {_num(r['arm_mean'], f)} | "
                         f"{_num(r['baseline_mean'], f)} | {_num(r['mean_diff'], f, True)}{unit} | "
                         f"{_interval(r['t_low'], r['t_high'], f)} | {_interval(r['boot_low'], r['boot_high'], f)} | "
                         f"{verdict(r, lower_is_better(study, r['metric']))} |")
        lines += ["", f"n: seeds where both arms completed (diverged final runs are listed in final.csv). A "
                  "difference is supported only when both intervals exclude zero."]
    lines += ["", "## Selected values (validation scores only)", ""]
    if not selected:
        missing = {a: ids for a, ids in missing_trials(study, trials).items() if ids}
        lines.append(f"*Not selected yet{': trials missing for ' + ', '.join(missing) if missing else ''}: "
                     f"`make tune-{study.name} select-{study.name}`.*")
    else:
        lines += [f"| arm | trial | {study.metric} | values | diverged trials |", "|---|---|---|---|---|"]
        f, _ = _scale_of(study.metric)
        for arm, s in selected["arms"].items():
            values = ", ".join(f"{k}={v}" for k, v in s["values"].items())
            lines.append(f"| {arm} | {s['trial']} | {_num(s['score'], f)} | {values} | "
                         f"{s['diverged']} of {s['trials']} |")
    lines += ["", "## Tuning trials (validation score, the reported weights; test not shown)", ""]
    lines += _trial_lines(study, trials)
    lines += ["", f"## Expected best {study.metric} after n trials (Dodge et al.; unbiased, without replacement)", ""]
    if expected is None:
        lines.append("*The budget is not complete yet.*")
    else:
        f, _ = _scale_of(study.metric)
        ns = sorted(expected["n"].unique())
        lines += ["| arm | " + " | ".join(f"n={n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
        for arm, g in expected.groupby("arm", sort=False):
            lines.append(f"| {arm} | " + " | ".join(_num(v, f) for v in g.sort_values("n")["expected_best"]) + " |")
        level = _num(float(expected['diverged_as'].iloc[0]), f) + (" %" if f != 1.0 else "")
        lines += ["", f"A diverged trial counts as {study.metric} {level}."]
    lines += ["", f"Provenance: {provenance}."]
    return "\n".join(lines) + "\n"


# --- the whole study ----------------------------------------------------------------------------

def analyze(study: Study, runs: Sequence[Run], results_dir: Path, scale: Optional[str] = None) -> List[Path]:
    """Write the study's tables from ``runs`` (any runs: the study's are picked by manifest)."""
    scale = scale or study.scale
    out = study.results_dir(results_dir, scale)
    tune, final_runs = study_runs(runs, study, scale)
    check_poolable(study, [r for r in tune if r.status in RESULTS], "tuning")
    pool = check_poolable(study, [r for r in final_runs if r.status in RESULTS], "final")
    trials = trials_table(study, tune, scale)
    complete = not any(missing_trials(study, trials).values())
    expected = expected_max_table(study, trials) if complete and trials["score"].notna().any() else None
    selected = read_selected(out / "selected.yaml")
    # Without a selection no final run is tabulated, so their committed manifests stay as they are.
    phases = ("tune", "final") if selected is not None else ("tune",)
    if final_runs and selected is None:  # final runs are checked against the selection, or not tabulated
        print(f"warning: {len(final_runs)} final runs of study {study.name} but no {out / 'selected.yaml'}: not "
              f"tabulated; `make select-{study.name}` writes it again from the trials", file=sys.stderr)
        final_runs = []
    final = final_table(study, final_runs, selected) if final_runs else pd.DataFrame()
    paired = paired_table(study, final) if final_runs else None
    files = {"trials.csv": _csv(trials)}
    if expected is not None:
        files["expected_max.csv"] = _csv(expected)
    if paired is not None:
        files["final.csv"], files["paired.csv"] = _csv(final), _csv(paired)
    files["table.md"] = render(study, scale, trials, selected, expected, final, paired, pool,
                               provenance_line([r for r in [*tune, *final_runs] if r.status in RESULTS]))
    for phase, members in (("tune", tune), ("final", final_runs)):
        for run in members:
            files[f"manifests/{phase}/{run.run_id}.json"] = run.manifest_path.read_text()
            if run.diff_path.is_file():
                files[f"manifests/{phase}/{run.run_id}.diff"] = run.diff_path.read_text()
    # The record holds the runs just tabulated and nothing else: a manifest committed while its
    # run was still going (not restored on a fresh checkout, so not among ``runs``), or the diff
    # of a dirty-tree attempt whose run has since finished from a clean tree, would no longer
    # match the tables.
    for phase in phases:
        folder = out / "manifests" / phase
        for old in sorted(folder.glob("*")) if folder.is_dir() else []:
            if old.is_file() and f"manifests/{phase}/{old.name}" not in files:
                old.unlink()
    paths = []
    for name, text in files.items():
        _write(out / name, text)
        paths.append(out / name)
    return paths


def collect_study(name: str, runs: Sequence[Run], results_dir: Path,
                  scales: Optional[Sequence[str]] = None) -> List[Path]:
    """``make collect``'s hook: analyze a study at each scale its runs have (its own scale, and
    those of ``scales``; every scale when None)."""
    from .selection import run_scale
    from .study_spec import load_study

    study = load_study(name)
    present = sorted({run_scale(r) for r in runs})
    paths: List[Path] = []
    for scale in present:
        if scale == study.scale or scales is None or scale in scales:
            paths += analyze(study, runs, results_dir, scale)
            print(f"{name}: study tables at scale {scale} in {study.results_dir(results_dir, scale)}", file=sys.stderr)
    return paths
