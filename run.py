"""Train one run (or, with -m, a sweep): ``python run.py task=cifar10 optim=lookahead_sgd``.

Hydra composes ``conf/`` against the schemas in ``experiments/config.py``; everything else
happens in :func:`experiments.main.run`. See the README for the config groups.
"""

import hydra
from omegaconf import DictConfig

from experiments.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from experiments.main import run

    return run(cfg)


if __name__ == "__main__":
    main()
