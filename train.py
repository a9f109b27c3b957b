"""Train a learned image codec: ``python train.py model=hyperprior lambda=0.0067`` (see README)."""

import sys

import hydra
from omegaconf import DictConfig

import compresslab.config  # noqa: F401  (registers ${model_min_crop:} before Hydra resolves the config)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig):
    from compresslab.checkpoints import CheckpointError
    from compresslab.config import ConfigError
    from compresslab.train import run  # imported here so `--help` and config errors come back fast

    try:
        result = run(cfg)
    except ConfigError as e:  # an impossible combination: one line, before any work
        sys.exit(f"config error: {e}")
    except CheckpointError as e:  # init_from / ckpt_path / model.base_ckpt: missing, corrupt, unsafe, wrong model
        sys.exit(f"checkpoint error: {e}")
    print(f"\nrun directory: {result['run_dir']}\nlast checkpoint: {result['last_ckpt']}")
    return result["objective"]  # what a sweeper (hparams_search=...) optimises; None without cfg.objective


if __name__ == "__main__":
    main()
