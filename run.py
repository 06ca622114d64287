"""Train one run (or, with -m, a sweep): ``python run.py task=cifar10 optim=lookahead_sgd``.

Hydra composes ``conf/`` against the schemas in ``experiments/config.py``; everything else
happens in :func:`experiments.main.run`. Before Hydra starts, :func:`experiments.cli.preflight`
prints the project's ``--help`` and turns a single run's config error into one line and exit 2.
See the README for the config groups.
"""

import hydra
from omegaconf import DictConfig

from experiments.cli import preflight
from experiments.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from experiments.main import run

    return run(cfg)


if __name__ == "__main__":
    preflight()
    main()
