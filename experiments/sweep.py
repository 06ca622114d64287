"""Expand an experiment's sweep the way `python run.py -m +experiment=<name> ...` does.

Hydra's own code does the work: the sweeper is instantiated from the composed
``hydra.sweeper`` node exactly as Hydra's ``Plugins.instantiate_sweeper`` does, its
``_parse_config()`` turns ``hydra.sweeper.params`` into override strings, the command-line
overrides follow (so a command-line value replaces the grid's, as in ``BasicSweeper.sweep``),
Hydra's ``OverridesParser`` parses them and ``BasicSweeper.split_arguments`` forms the jobs.
Run directory names come from Hydra's ``get_overrides_dirname`` with the config's
``exclude_keys``, as ``hydra.sweep.subdir`` (``${hydra:job.override_dirname}``) names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

from omegaconf import DictConfig

# The config tree run.py composes (`@hydra.main(config_path="conf")`).
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
# What `make sweep-<artifact> JOBS=2` adds to the command line besides the scale (Makefile).
MAKE_ARGS = ["trainer.threads=1", "trainer.progress=false"]


def compose(overrides: Sequence[str], hydra: bool = False, multirun: bool = False) -> DictConfig:
    """The config run.py would compose, optionally with the ``hydra`` node (sweeper, run-directory settings);
    ``multirun``: compose the sweep's master config as ``run.py -m`` does (sweep values allowed)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from experiments.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        if not multirun:
            return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)
        return GlobalHydra.instance().hydra.compose_config(
            config_name="config", overrides=list(overrides), run_mode=RunMode.MULTIRUN, from_shell=True,
            with_log_configuration=False)


def sweep_jobs(args: Sequence[str]) -> Tuple[List[List[str]], DictConfig]:
    """The jobs (each a list of overrides) of ``run.py -m *args``, and the composed master config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.plugins import Plugins

    master = compose(args, multirun=True)
    sweeper = Plugins.instance()._instantiate(master.hydra.sweeper)  # as instantiate_sweeper does
    lines = sweeper._parse_config() + list(args)
    overrides = OverridesParser.create().parse_overrides(lines)
    batches = type(sweeper).split_arguments(overrides, sweeper.max_batch_size)
    return [list(job) for batch in batches for job in batch], master


def run_dirname(job: Sequence[str], master: DictConfig) -> str:
    """The run directory name Hydra gives this job (``hydra.job.override_dirname``)."""
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = [o for o in OverridesParser.create().parse_overrides(list(job)) if not o.is_hydra_override()]
    conf = master.hydra.job.config.override_dirname
    return get_overrides_dirname(parsed, exclude_keys=list(conf.exclude_keys), item_sep=conf.item_sep,
                                 kv_sep=conf.kv_sep)
