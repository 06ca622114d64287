"""The trials of a study, and the selection of each arm's values from validation scores only.

A run belongs to a study by its manifest alone (``config.study``, ``config.arm``,
``config.trial``, ``config.seed``, ``scale``; directory names are never parsed): ``trial >= 0`` is
a tuning trial, ``trial = -1`` a final run.

Score of a trial: the study's selection metric (``select.metric``, a ``val_*`` metric) at the end
of the run (the manifest's ``final``, the reported weights: slow for Lookahead), averaged over the
tuning seeds. A trial is *diverged* when any of its runs diverged or ended with a non-finite
score; a diverged trial ranks below every other (the worst score). A trial some of whose runs are
not results (failed, unfinished, missing) has no score: selection refuses to run until the whole
budget of every arm is a result, so no arm is selected from fewer trials than another.

Selection: per arm, the trial with the best score (``select.mode``: max or min), ties to the
lowest trial id. :func:`select` reads only the columns named in ``SELECTION_COLUMNS`` (the score
is the selection metric alone), never a ``test_*`` column (tests/test_tune.py scrambles them to
show it); the selected values are the design's point of the selected trial.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Dict, List, Sequence, Tuple

import pandas as pd

from .records import _MISSING, Run, error_line
from .records import select as config_select
from .study_spec import Study, StudyError

SELECTION_COLUMNS = ("arm", "trial", "seed", "status", "score", "diverged")
RESULTS = ("completed", "diverged")


def run_scale(run: Run) -> str:
    return str(run.manifest.get("scale") or run.config.get("scale") or "unknown")


def study_runs(runs: Sequence[Run], study: Study, scale: str) -> Tuple[List[Run], List[Run]]:
    """``(tuning runs, final runs)`` of ``study`` at ``scale``, from the manifests."""
    tune, final = [], []
    for run in runs:
        if run.config.get("study") != study.name or run_scale(run) != scale:
            continue
        (tune if int(run.config.get("trial", -1)) >= 0 else final).append(run)
    return tune, final


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def check_values(run: Run, values: Dict[str, Any], what: str) -> None:
    """Stop when a run's config does not hold ``values`` (the study file or selection changed)."""
    for key, want in values.items():
        got = config_select(run.config, key)
        got = None if got is _MISSING else got
        if not same_value(got, want):
            raise StudyError(f"{run.path} holds {key}={got!r}, but {what} says {want!r}: the run is from another "
                             "version of the study; move it away or restore the study file")


def _score(run: Run, metric: str) -> Tuple[float, bool]:
    """(score, diverged) of one run that is a result."""
    value = (run.manifest.get("final") or {}).get(metric)
    if run.status == "diverged":
        return math.nan, True
    if value is None:  # a completed run that never logged the metric: the study asks for the wrong one
        logged = ", ".join(sorted(run.manifest.get("final") or {})) or "nothing"
        raise StudyError(f"{run.path} completed without {metric} (it logged {logged}); the study's select.metric "
                         "must be a validation metric its task logs (CIFAR: protocol=val)")
    if not math.isfinite(float(value)):
        return math.nan, True
    return float(value), False


def trials_table(study: Study, runs: Sequence[Run], scale: str) -> pd.DataFrame:
    """One row per (arm, trial, tuning seed) of the design, present or not.

    Columns: identity (study, scale, task, dataset, arm, optim, trial, seed), status (``missing``
    when no run exists yet), the trial's values (one column per search key), ``score`` (the
    selection metric; NaN unless completed and finite), ``diverged``, every final metric of the
    run as ``final_<metric>`` (test included: shown, never selected on), run id and error.
    """
    by_id: Dict[Tuple[str, int, int], Run] = {}
    for run in runs:
        key = (str(run.config.get("arm")), int(run.config.get("trial", -1)), int(run.config.get("seed", -1)))
        if key in by_id:
            raise StudyError(f"two runs of study {study.name} are arm {key[0]}, trial {key[1]}, seed {key[2]}: "
                             f"{by_id[key].path} and {run.path}; keep one")
        by_id[key] = run
    rows, used = [], set()
    for arm in study.arms:
        for trial, point in enumerate(study.points(arm)):
            for seed in study.tune_seeds:
                run = by_id.get((arm.name, trial, seed))
                used.add((arm.name, trial, seed))
                row: Dict[str, Any] = {"study": study.name, "scale": scale, "task": study.task, "arm": arm.name,
                                       "trial": trial, "seed": seed, **point}
                if run is None:
                    rows.append({**row, "status": "missing", "score": math.nan, "diverged": False})
                    continue
                check_values(run, point, f"the design of {study.path.name}")
                score, diverged = _score(run, study.metric) if run.status in RESULTS else (math.nan, False)
                task = run.config.get("task") or {}
                optim = (run.config.get("optim") or {}).get("name")
                rows.append({**row, "dataset": task.get("dataset"), "optim": optim, "status": run.status,
                             "score": score, "diverged": diverged,
                             **{f"final_{k}": v for k, v in sorted((run.manifest.get("final") or {}).items())},
                             "run": run.run_id, "error": error_line(run.manifest)})
    outside = sorted(k for k in by_id if k not in used)
    if outside:  # e.g. the budget was lowered after these ran: never counted, never selected
        print(f"warning: {len(outside)} runs of study {study.name} are outside its design (first: arm "
              f"{outside[0][0]}, trial {outside[0][1]}, seed {outside[0][2]}); not counted", file=sys.stderr)
    df = pd.DataFrame(rows)
    front = ["study", "scale", "task", "dataset", "arm", "optim", "trial", "seed", "status"]
    keys = list(dict.fromkeys(d.key for a in study.arms for d in a.space))
    finals = sorted(c for c in df if c.startswith("final_"))
    order = [c for c in front + keys + ["score", "diverged"] + finals + ["run", "error"] if c in df]
    return df.reindex(columns=order)


def trial_scores(trials: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, trial): ``result`` (every tuning seed is a result), ``diverged`` (any diverged)
    and ``score`` (mean over the tuning seeds; NaN when diverged or not a result)."""
    rows = []
    for (arm, trial), g in trials.groupby(["arm", "trial"], sort=False):
        result = bool(g["status"].isin(RESULTS).all())
        diverged = bool(g["diverged"].astype(bool).any())
        score = float(g["score"].mean()) if result and not diverged else math.nan
        rows.append({"arm": arm, "trial": int(trial), "result": result, "diverged": diverged, "score": score})
    return pd.DataFrame(rows, columns=["arm", "trial", "result", "diverged", "score"])


def missing_trials(study: Study, trials: pd.DataFrame) -> Dict[str, List[int]]:
    """Arm -> the trial ids of its budget that are not yet results (empty when complete)."""
    scores = trial_scores(trials)
    return {arm.name: scores.loc[(scores["arm"] == arm.name) & ~scores["result"], "trial"].tolist()
            for arm in study.arms}


def select(study: Study, trials: pd.DataFrame) -> Dict[str, Dict[str, Any]]:
    """Per arm: the selected trial, its score, its values, and how many of its trials diverged.

    Reads only the ``SELECTION_COLUMNS`` of ``trials``; the values are the design's.
    """
    visible = trials[list(SELECTION_COLUMNS)]
    missing = {arm: ids for arm, ids in missing_trials(study, visible).items() if ids}
    if missing:
        arm, ids = next(iter(missing.items()))
        raise StudyError(f"study {study.name}: the budget is not complete: arm {arm} lacks trial "
                         f"{', '.join(map(str, ids))} of {study.budget} (run `make tune-{study.name}`; it runs only "
                         "what is missing)")
    scores = trial_scores(visible)
    out: Dict[str, Dict[str, Any]] = {}
    for arm in study.arms:
        mine = scores[scores["arm"] == arm.name]
        ok = mine[~mine["diverged"]]
        if ok.empty:
            raise StudyError(f"study {study.name}: every trial of arm {arm.name} diverged; narrow its space "
                             f"({', '.join(d.key for d in arm.space)}) in {study.path.name}")
        sign = -1.0 if study.higher_is_better else 1.0
        best = ok.assign(key=sign * ok["score"]).sort_values(["key", "trial"], kind="stable").iloc[0]
        values = study.points(arm)[int(best["trial"])]  # the design's values (each run was checked to hold them)
        out[arm.name] = {"trial": int(best["trial"]), "score": float(best["score"]), "values": values,
                         "diverged": int(mine["diverged"].sum()), "trials": int(len(mine))}
    return out


def selected_document(study: Study, scale: str, selection: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """What ``results/<study>/selected.yaml`` holds."""
    return {
        "study": study.name, "scale": scale, "metric": study.metric, "mode": study.mode,
        "budget": study.budget, "tune_seeds": list(study.tune_seeds), "design_sha256": study.design_sha256(scale),
        "arms": {arm: {"trial": s["trial"], "score": s["score"], "values": s["values"], "diverged": s["diverged"],
                       "trials": s["trials"]} for arm, s in selection.items()},
    }
