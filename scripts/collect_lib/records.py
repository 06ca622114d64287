"""Read run directories: what each run is (from its manifest only) and what it logged.

A run is a directory holding ``manifest.json`` (and ``metrics.csv``); the manifest alone says
which artifact (``config.experiment_name``), which grid point (``overrides``) and which
outcome (``status``, ``final``) it is. Directory names are never parsed. A run that failed
before its manifest was filled in (a config error inside one sweep member) has only
``status``/``error``; its identity then comes from the records Hydra wrote beside it
(``.hydra/config.yaml``, ``.hydra/overrides.yaml``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd
import yaml

# Override keys that never change a result (or are columns of their own): not grid keys.
NOT_GRID_KEYS = {
    "seed", "scale", "task", "optim", "experiment", "experiment_name", "experiment_scale",
    "data.root", "trainer.threads", "trainer.progress", "trainer.device", "logger", "resume",
    "hydra/launcher",
}
# Config values every run carries as columns (so a table says k, alpha, lr without the config).
DESCRIPTORS = (
    "task.model", "optim.lr", "optim.momentum", "optim.weight_decay", "optim.lookahead.k",
    "optim.lookahead.alpha", "data.batch_size", "trainer.epochs",
)


@dataclass
class Run:
    """One run directory, read once."""

    path: Path
    manifest: Dict[str, Any]
    config: Dict[str, Any]
    overrides: List[str]
    metrics: Optional[pd.DataFrame] = field(default=None, repr=False)
    # Read back from an artifact's committed record (restore.recorded_runs), not a run folder:
    # ``path`` is then ``results/<artifact>/manifests/<run id>`` and the metrics are its curves.
    recorded: bool = False

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def manifest_path(self) -> Path:
        return self.path.parent / f"{self.path.name}.json" if self.recorded else self.path / "manifest.json"

    @property
    def diff_path(self) -> Path:
        """The stored diff of a run made from a dirty tree (it may not exist)."""
        return self.path.parent / f"{self.path.name}.diff" if self.recorded else self.path / "git.diff"

    @property
    def artifact(self) -> Optional[str]:
        return self.config.get("experiment_name")

    @property
    def status(self) -> str:
        return str(self.manifest.get("status", "unknown"))

    def grid(self) -> Dict[str, Any]:
        """The run's grid coordinates: ``{key: value}`` for each override that is a grid key.

        The value is the resolved config value when the key is a config path holding a scalar
        (typed: 0.5, not "0.5"), else the override's text (config-group choices such as
        ``la=disabled``).
        """
        out = {}
        for override in self.overrides:
            key, _, text = override.partition("=")
            key = key.lstrip("+~")
            if key in NOT_GRID_KEYS or key.startswith("hydra."):
                continue
            value = select(self.config, key)
            out[key] = value if _is_scalar(value) else text
        return out


_MISSING = object()


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def select(config: Dict[str, Any], dotted: str) -> Any:
    """``config["a"]["b"]`` for ``"a.b"``; a sentinel when any part is absent."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def descriptor(config: Dict[str, Any], dotted: str) -> Any:
    value = select(config, dotted)
    return None if value is _MISSING or not _is_scalar(value) else value


def read_run(manifest_path: Path) -> Run:
    """Read one run; the metrics are loaded when present (an early failure has none)."""
    run_dir = manifest_path.parent
    manifest = json.loads(manifest_path.read_text())
    config = manifest.get("config")
    overrides = manifest.get("overrides")
    hydra_dir = run_dir / ".hydra"
    if config is None and (hydra_dir / "config.yaml").exists():
        config = _resolved(hydra_dir / "config.yaml")
    if overrides is None and (hydra_dir / "overrides.yaml").exists():
        overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text())
    metrics = None
    if (run_dir / "metrics.csv").exists() and (run_dir / "metrics.csv").stat().st_size > 0:
        metrics = pd.read_csv(run_dir / "metrics.csv")
    return Run(run_dir, manifest, config or {}, list(overrides or []), metrics)


def _resolved(path: Path) -> Dict[str, Any]:
    """Hydra saves a job's config unresolved (``optim.name: ${optim.inner}``); resolve it as the
    run would have, keeping the text where that fails (a resolver not registered here)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        return OmegaConf.to_container(cfg)


def find_runs(runs_dir: Path) -> List[Run]:
    """Every run under ``runs_dir`` (any depth), in path order."""
    return [read_run(p) for p in sorted(Path(runs_dir).rglob("manifest.json"))]


def last_value(metrics: Optional[pd.DataFrame], column: str) -> float:
    """The last logged value of a metric column (NaN when never logged)."""
    if metrics is None or column not in metrics:
        return math.nan
    values = metrics[column].dropna()
    return float(values.iloc[-1]) if len(values) else math.nan


def value_at_fraction(metrics: Optional[pd.DataFrame], column: str, fraction: float) -> float:
    """The metric at the logged row whose epoch is nearest ``fraction`` of the run's last epoch
    (Table 2 reads epoch 50 of a 60-epoch run as fraction 5/6)."""
    if metrics is None or column not in metrics:
        return math.nan
    rows = metrics.dropna(subset=[column])
    if not len(rows):
        return math.nan
    target = fraction * float(metrics["epoch"].max())
    nearest = (rows["epoch"] - target).abs().to_numpy().argmin()
    return float(rows[column].iloc[nearest])


def error_line(manifest: Dict[str, Any]) -> str:
    """The last non-empty line of a failed run's error (the exception message)."""
    lines = [line.strip() for line in str(manifest.get("error") or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
