"""A fair-comparison study: its file ``conf/tune/<study>.yaml``, its trial design and its members.

Protocol (README "Fair comparisons"; ../shared/DESIGN.md "Fair comparisons (contract)"):

1. **tune**: every arm (an optimizer with its fixed overrides and a search space) gets the same
   number of trials N (``budget``), drawn by a scrambled Sobol sequence (``scipy.stats.qmc.Sobol``)
   with a fixed seed per arm, mapped to the arm's space: ``log: [lo, hi]`` is log-uniform
   (lr, weight decay), ``uniform: [lo, hi]`` uniform (alpha), ``int: [lo, hi]`` uniform over the
   integers lo..hi (k), ``choice: [a, b, ...]`` one of the values. Lookahead's k and alpha are
   dimensions of its space, so they are searched inside the same N trials as its lr. Each trial
   runs once per tuning seed (``tune_seeds``);
2. **select** (``selection.py``): per arm, the trial with the best validation score (``select``:
   a ``val_*`` metric, never ``test_*``), written to ``results/<study>/selected.yaml``;
3. **final**: each arm at its selected values on the ``final_seeds`` (disjoint from the tuning
   seeds; seeds pair runs: the initialization and the batch order are functions of the seed),
   every member with the same precision, layout and thread count.

Unit point u in [0, 1)^d -> values: ``lo * (hi / lo) ** u`` (log), ``lo + u (hi - lo)`` (uniform),
both rounded to 4 significant digits so run configs stay readable; ``lo + floor(u (hi - lo + 1))``
(int); ``values[floor(u len)]`` (choice). The Sobol seed of an arm is
``numpy.random.default_rng([design.seed, crc32(arm name)])``: each arm its own fixed sequence,
unchanged when arms are added, removed or reordered. N need not be a power of two (the first N
points of the scrambled sequence; Sobol's balance holds exactly only at powers of two).

Why precomputed points run as members of the suite's own multirun, and not Hydra's Optuna
sweeper (``hydra-optuna-sweeper``, Optuna's ``QMCSampler``, a SQLite study): the trials here are
a pure function of the study file, so they need no sampler state; as ordinary sweep members
(``hydra.sweeper.members``, ``hydra_plugins/lookahead_sweeper``) each trial has a run directory
named by what it is (``arm=lookahead_sgd,trial=3,seed=1000,scale=cpu``), a manifest with config
and data fingerprints, resume from its checkpoint, and a skip once it is a result; relaunching
runs exactly the trials not yet done, so it completes the budget and can never exceed it (an
Optuna study asks its sampler for new trials and counts them in a database that a crash, a copied
run folder or a second launcher can put out of step with the run directories). Optuna would add
two dependencies and a second record of what ran, beside the manifests that already are the
record; what it offers beyond this (adaptive samplers, pruning) would break the equal-budget,
same-design protocol. A change of the study file that moves a point makes the relaunch stop at
that run with the key that differs (the fingerprint check of every run), never a silent mix.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
TUNE_DIR = ROOT / "conf" / "tune"
KINDS = ("log", "uniform", "int", "choice")
NAME = re.compile(r"[a-z0-9_]+")
STUDY_KEYS = {"task", "scale", "protocol", "overrides", "select", "report", "budget", "design", "tune_seeds",
              "final_seeds", "baseline", "arms", "comparisons", "title", "reuse"}
ARM_KEYS = {"overrides", "space"}
SIGNIFICANT = 4  # digits kept of a continuous value


class StudyError(ValueError):
    """A study file, or the runs of a study, that cannot be used as they are (one line, exit 2)."""


@dataclass(frozen=True)
class Dim:
    key: str  # a config key (optim.lr)
    kind: str  # log | uniform | int | choice
    bounds: Tuple[Any, ...]

    def value(self, u: float) -> Any:
        """The value at the unit coordinate ``u`` in [0, 1)."""
        if self.kind == "choice":
            return self.bounds[min(int(u * len(self.bounds)), len(self.bounds) - 1)]
        lo, hi = self.bounds
        if self.kind == "int":
            return int(min(lo + math.floor(u * (hi - lo + 1)), hi))
        x = lo * (hi / lo) ** u if self.kind == "log" else lo + u * (hi - lo)
        return float(f"{x:.{SIGNIFICANT}g}")


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: Tuple[str, ...]
    space: Tuple[Dim, ...]


@dataclass(frozen=True)
class Member:
    """One run of a study: its run-directory name and its overrides (after the common ones)."""

    name: str
    overrides: Tuple[str, ...]


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    title: str
    task: str
    scale: str
    protocol: str
    overrides: Tuple[str, ...]
    metric: str
    mode: str  # max | min
    diverged: Optional[float]  # the score a diverged trial counts as (None: the worst finite one)
    report: Tuple[str, ...]
    budget: int
    design_seed: int
    tune_seeds: Tuple[int, ...]
    final_seeds: Tuple[int, ...]
    baseline: str
    arms: Tuple[Arm, ...]
    comparisons: Tuple[Tuple[str, str], ...]
    reuse: Tuple[str, ...] = ()  # studies whose finished members of the same config stand in (reuse.py)

    @property
    def higher_is_better(self) -> bool:
        return self.mode == "max"

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise StudyError(f"study {self.name} has no arm {name!r}; arms: {', '.join(a.name for a in self.arms)}")

    # --- the design --------------------------------------------------------------------------

    def unit_points(self, arm: Arm) -> np.ndarray:
        """(budget, d) scrambled Sobol points of one arm, in [0, 1)."""
        from scipy.stats import qmc

        rng = np.random.default_rng([self.design_seed, zlib.crc32(arm.name.encode())])
        key = "rng" if "rng" in inspect.signature(qmc.Sobol).parameters else "seed"  # scipy >= 1.15: rng
        sampler = qmc.Sobol(len(arm.space), scramble=True, **{key: rng})
        with warnings.catch_warnings():  # N need not be a power of two (see the module docstring)
            warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
            return sampler.random(self.budget)

    def points(self, arm: Arm) -> List[Dict[str, Any]]:
        """The ``budget`` trial points of an arm: ``[{config key: value}]``, trial i at index i."""
        return [{d.key: d.value(float(u)) for d, u in zip(arm.space, row)} for row in self.unit_points(arm)]

    def common_args(self, scale: Optional[str] = None) -> List[str]:
        """The overrides every member of the study gets (before its own)."""
        scale = scale or self.scale
        fixed = [o.replace("{scale}", scale) for o in self.overrides]
        return [f"task={self.task}", f"scale={scale}", f"protocol={self.protocol}", f"experiment_name={self.name}",
                f"study={self.name}", *fixed]

    def tune_members(self, scale: Optional[str] = None) -> List[Member]:
        """Every arm's trials, trial-major (arm A trial 0, arm B trial 0, arm A trial 1, ...): a
        tuning phase stopped part-way leaves every arm with the same number of trials run."""
        scale = scale or self.scale
        points = {arm.name: self.points(arm) for arm in self.arms}
        out = []
        for trial in range(self.budget):
            for arm in self.arms:
                for seed in self.tune_seeds:
                    out.append(Member(f"arm={arm.name},trial={trial},seed={seed},scale={scale}", (
                        *(o.replace("{scale}", scale) for o in arm.overrides), *assignments(points[arm.name][trial]),
                        f"arm={arm.name}", f"trial={trial}", f"seed={seed}")))
        return out

    def final_members(self, selected: Mapping[str, Mapping[str, Any]], scale: Optional[str] = None) -> List[Member]:
        """Each arm at its selected values (``{arm: {config key: value}}``) on every final seed."""
        scale = scale or self.scale
        for arm in self.arms:
            if arm.name not in selected:
                raise StudyError(f"no selected values for arm {arm.name} of study {self.name}")
        out = []
        for seed in self.final_seeds:  # seed-major: a stopped phase leaves whole pairs
            for arm in self.arms:
                out.append(Member(f"arm={arm.name},seed={seed},scale={scale}", (
                    *(o.replace("{scale}", scale) for o in arm.overrides), *assignments(selected[arm.name]),
                    f"arm={arm.name}", f"seed={seed}")))
        return out

    def design_sha256(self, scale: Optional[str] = None) -> str:
        """sha256 of the tuning members (names and overrides): what a selection was made from."""
        members = sorted([m.name, *m.overrides] for m in self.tune_members(scale))  # not the launch order
        blob = json.dumps([self.common_args(scale), members], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def results_dir(self, results: Path, scale: Optional[str] = None) -> Path:
        """``results/<study>`` at the study's own scale, ``results/<study>_<scale>`` at another."""
        scale = scale or self.scale
        return Path(results) / (self.name if scale == self.scale else f"{self.name}_{scale}")


def format_value(value: Any) -> str:
    """A value as Hydra override text (floats in their shortest round-trip form)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def assignments(values: Mapping[str, Any]) -> List[str]:
    return [f"{k}={format_value(v)}" for k, v in values.items()]


# --- reading a study file ------------------------------------------------------------------------

def study_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".yaml" or path.exists():
        return path
    return TUNE_DIR / f"{name_or_path}.yaml"


def declared_studies(tune_dir: Path = TUNE_DIR) -> List[str]:
    """The studies the suite declares: the stem of every ``conf/tune/*.yaml``."""
    return sorted(p.stem for p in Path(tune_dir).glob("*.yaml"))


def load_study(name_or_path: str | Path) -> Study:
    """Read and check a study file; every problem is a :class:`StudyError` naming the key."""
    path = study_path(name_or_path)
    if not path.is_file():
        known = ", ".join(declared_studies()) or "none"
        raise StudyError(f"no study {str(name_or_path)!r}: looked for {path}; declared studies: {known}")
    node = yaml.safe_load(path.read_text()) or {}
    where = f"{path.name}"
    if not isinstance(node, dict):
        raise StudyError(f"{where}: a study file is a mapping of {', '.join(sorted(STUDY_KEYS))}")
    _known(node, STUDY_KEYS, where)
    for key in ("task", "scale", "select", "budget", "tune_seeds", "final_seeds", "baseline", "arms"):
        if key not in node:
            raise StudyError(f"{where}: missing {key}")
    select = node["select"] or {}
    _known(select, {"metric", "mode", "diverged"}, f"{where}: select")
    metric, mode = str(select.get("metric", "")), str(select.get("mode", ""))
    if not metric.startswith("val_"):
        raise StudyError(f"{where}: select.metric must be a validation metric (val_*), not {metric!r}: "
                         "selection never reads test")
    if mode not in ("max", "min"):
        raise StudyError(f"{where}: select.mode must be max or min, not {mode!r}")
    budget = node["budget"]
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise StudyError(f"{where}: budget (trials per arm) must be a positive integer, not {budget!r}")
    tune_seeds, final_seeds = _seeds(node["tune_seeds"], f"{where}: tune_seeds"), _seeds(node["final_seeds"],
                                                                                         f"{where}: final_seeds")
    if set(tune_seeds) & set(final_seeds):
        shared = sorted(set(tune_seeds) & set(final_seeds))
        raise StudyError(f"{where}: final_seeds must not reuse tuning seeds ({shared})")
    design = node.get("design") or {}
    _known(design, {"method", "seed"}, f"{where}: design")
    if design.get("method", "sobol") != "sobol":
        raise StudyError(f"{where}: design.method must be sobol")
    arms = tuple(_arm(name, spec, f"{where}: arms.{name}") for name, spec in (node["arms"] or {}).items())
    names = [a.name for a in arms]
    if len(arms) < 2:
        raise StudyError(f"{where}: a study compares at least two arms")
    baseline = str(node["baseline"])
    if baseline not in names:
        raise StudyError(f"{where}: baseline {baseline!r} is not an arm ({', '.join(names)})")
    comparisons = tuple(tuple(map(str, c)) for c in node.get("comparisons") or
                        [[a, baseline] for a in names if a != baseline])
    for c in comparisons:
        if len(c) != 2 or not set(c) <= set(names) or c[0] == c[1]:
            raise StudyError(f"{where}: a comparison is [arm, baseline] of two different arms, not {list(c)}")
    report = tuple(map(str, node.get("report") or [metric]))
    reuse = node.get("reuse") or []
    for name in reuse if isinstance(reuse, list) else [None]:
        if not isinstance(name, str) or name == path.stem or not NAME.fullmatch(name) or not study_path(name).is_file():
            raise StudyError(f"{where}: reuse is a list of other declared studies (conf/tune/<name>.yaml), "
                             f"not {reuse!r}")
    reuse = tuple(reuse)
    diverged = select.get("diverged")
    return Study(
        name=path.stem, path=path, title=str(node.get("title") or path.stem), task=str(node["task"]),
        scale=str(node["scale"]), protocol=str(node.get("protocol", "paper")),
        overrides=_study_overrides(node.get("overrides") or [], where), metric=metric, mode=mode,
        diverged=None if diverged is None else float(diverged), report=report, budget=budget,
        design_seed=int(design.get("seed", 0)), tune_seeds=tune_seeds, final_seeds=final_seeds, baseline=baseline,
        arms=arms, comparisons=comparisons, reuse=reuse)


# Keys the study sets itself on every member (Study.common_args, the members' identity).
RESERVED = {"task", "scale", "protocol", "experiment_name", "study", "arm", "trial", "seed"}


def _not_reserved(overrides: Sequence[str], where: str) -> None:
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in RESERVED:
            raise StudyError(f"{where}: {key} is set by the study itself (task, scale, protocol, seeds, arms)")


def _known(node: Any, keys: set, where: str) -> None:
    if not isinstance(node, dict):
        raise StudyError(f"{where} must be a mapping of {', '.join(sorted(keys))}")
    extra = sorted(set(node) - keys)
    if extra:
        raise StudyError(f"{where}: unknown key {extra[0]!r}; known: {', '.join(sorted(keys))}")


def _study_overrides(value: Any, where: str) -> Tuple[str, ...]:
    overrides = _strings(value, f"{where}: overrides")
    _not_reserved(overrides, f"{where}: overrides")
    return overrides


def _seeds(value: Any, where: str) -> Tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and s >= 0 for s in value) \
            or len(set(value)) != len(value):
        raise StudyError(f"{where} must be a non-empty list of distinct seeds >= 0, not {value!r}")
    return tuple(value)


def _strings(value: Any, where: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(o, str) and "=" in o for o in value):
        raise StudyError(f"{where} must be a list of KEY=VALUE overrides, not {value!r}")
    return tuple(value)


def _arm(name: str, spec: Any, where: str) -> Arm:
    if not NAME.fullmatch(str(name)):
        raise StudyError(f"{where}: an arm name is lower-case letters, digits and _")
    _known(spec, ARM_KEYS, where)
    space = spec.get("space") or {}
    _known(space, set(space), f"{where}.space")
    if not space:
        raise StudyError(f"{where}.space is empty: an arm's trials would all be the same run")
    dims = []
    for key, rule in space.items():
        if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in KINDS:
            raise StudyError(f"{where}.space.{key}: give one of {', '.join(f'{k}: [...]' for k in KINDS)}")
        kind, bounds = next(iter(rule.items()))
        if not isinstance(bounds, list) or not bounds:
            raise StudyError(f"{where}.space.{key}.{kind} must be a list")
        if kind != "choice":
            if len(bounds) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds) \
                    or not bounds[0] < bounds[1]:
                raise StudyError(f"{where}.space.{key}.{kind} must be [lo, hi] with lo < hi, not {bounds!r}")
            if kind == "log" and bounds[0] <= 0:
                raise StudyError(f"{where}.space.{key}.log needs lo > 0, not {bounds[0]!r}")
            if kind == "int" and not all(isinstance(b, int) for b in bounds):
                raise StudyError(f"{where}.space.{key}.int bounds must be integers, not {bounds!r}")
            if kind in ("log", "uniform"):
                bounds = [float(b) for b in bounds]
        dims.append(Dim(str(key), kind, tuple(bounds)))
    overrides = _strings(spec.get("overrides") or [], f"{where}.overrides")
    _not_reserved(overrides, f"{where}.overrides")
    clash = {o.split("=", 1)[0].lstrip("+~") for o in overrides} & {d.key for d in dims}
    if clash:
        raise StudyError(f"{where}: {sorted(clash)[0]} is both a fixed override and a search dimension")
    return Arm(str(name), overrides, tuple(dims))


def members_override(members: Sequence[Member]) -> str:
    """``++hydra.sweeper.members=[...]`` for the suite's sweeper: named members, in order."""
    def quote(text: str) -> str:
        if "'" not in text:
            return f"'{text}'"
        if '"' not in text:
            return f'"{text}"'
        raise StudyError(f"an override holds both quote characters: {text}")

    items = [f"{{name:{quote(m.name)},overrides:[{','.join(quote(o) for o in m.overrides)}]}}" for m in members]
    return f"++hydra.sweeper.members=[{','.join(items)}]"
