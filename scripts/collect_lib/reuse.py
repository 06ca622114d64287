"""Members a study shares with another study: taken from its finished run, not trained again.

A study file may name studies whose arms it repeats (``reuse: [ptb_sgd]``: the same task, scale,
protocol, overrides, space and design seed, hence the same trial points, and after a selection
from the same trials the same final values). Before ``tune`` or ``final`` launches, each member
without a run folder of its own is looked up by name in the runs folder of each named study (whose
committed runs are written back first, ``restore.py``). A finished run there (``completed`` or
``diverged``) is taken only when it is the same run:

- its manifest's config equals the member's config as this study's launch composes it in every
  key that can change a result (labels such as ``experiment_name`` and ``study`` do not count,
  and an option added since the run counts as equal at its default: the check a relaunch makes,
  ``experiments/fingerprint.py: config_changes``), and
- its data fingerprint equals the data's now.

Its records are then copied into ``RUNS/<study>/<phase>/<member>`` (manifest, metrics.csv, run.log,
git.diff; not the checkpoint), built aside and renamed into place. The manifest is the source's
with this study's labels (``config.experiment_name``, ``config.study``), the config hash of the
fingerprint now, and ``reused_from`` (the source study, phase, run and its labels); everything
else (commit, versions, device, threads, seed, metrics) is the run's own. The sweep then skips the
member as a finished run (its usual fingerprint check), and selection and analysis read it as one
of this study's. A member of the same name whose config differs in anything that can change the
result (another BatchNorm protocol, another point) is not taken: it trains, and the first
difference is reported.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Sequence

from .restore import FINISHED, restore_study_runs
from .study_spec import Member, Study, load_study

COPIED = ("metrics.csv", "run.log", "git.diff")  # besides the manifest


@dataclass
class Reused:
    """What one lookup did: ``taken`` ``{member: source study}``, ``differ`` ``{member: first difference}``."""

    taken: Dict[str, str] = field(default_factory=dict)
    differ: Dict[str, str] = field(default_factory=dict)


def reuse_runs(study: Study, phase: str, members: Sequence[Member], job_args: Sequence[str], scale: str,
               runs_root: Path, results_root: Path) -> Reused:
    """Copy into ``RUNS/<study>/<phase>/`` every member the studies of ``study.reuse`` have finished
    with the same config and data; ``job_args`` are the overrides every member is launched with
    (before its own), ``scale`` the scale it runs at."""
    from omegaconf import OmegaConf

    from experiments import fingerprint
    from experiments.sweep import compose

    out = Reused()
    if not study.reuse:
        return out
    for name in study.reuse:
        other = load_study(name)
        restore_study_runs(other.results_dir(results_root, scale), Path(runs_root) / other.name)
    for member in members:
        target = Path(runs_root) / study.name / phase / member.name
        if target.exists():  # its own run, finished or not, always wins
            continue
        sources = [(n, Path(runs_root) / n / phase / member.name / "manifest.json") for n in study.reuse]
        sources = [(n, p) for n, p in sources if p.is_file()]
        if not sources:
            continue
        resolved = OmegaConf.to_container(compose([*job_args, *member.overrides]), resolve=True)
        want = fingerprint.config_hash(resolved)
        data = fingerprint.data_fingerprint(resolved).get("sha256")
        for source_study, path in sources:
            manifest = json.loads(path.read_text())
            if manifest.get("status") not in FINISHED or not isinstance(manifest.get("config"), dict):
                continue
            diff = fingerprint.config_changes(manifest["config"], resolved)
            if diff:
                out.differ[member.name] = f"{source_study}: {diff[0]}"
                continue
            if (manifest.get("data_fingerprint") or {}).get("sha256") != data:
                out.differ[member.name] = f"{source_study}: data fingerprint"
                continue
            _copy(path.parent, target, manifest, study.name, source_study, phase, want)
            out.taken[member.name] = source_study
            out.differ.pop(member.name, None)
            break
    return out


def _copy(source: Path, target: Path, manifest: dict, study: str, source_study: str, phase: str,
          config_hash: str) -> None:
    config = dict(manifest["config"])
    labels = {"experiment_name": config.get("experiment_name"), "study": config.get("study")}
    config.update(experiment_name=study, study=study)
    record = {**manifest, "config": config, "config_hash": config_hash,
              "reused_from": {"study": source_study, "phase": phase, "run": source.name, **labels}}
    # Built aside and renamed into place: a run folder is either whole or absent.
    tmp = target.with_name(target.name + ".reusing")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in COPIED:
        if (source / name).is_file():
            shutil.copy2(source / name, tmp / name)
    (tmp / "manifest.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.rename(target)
