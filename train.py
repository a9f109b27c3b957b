"""Train a learned image codec: ``python train.py model=hyperprior lambda=0.0067`` (see README)."""

import sys

import hydra
from omegaconf import DictConfig

import compresslab.config  # noqa: F401  (registers ${model_min_crop:} before Hydra resolves the config)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig):
    from compresslab.checkpoints import CheckpointError
    from compresslab.config import ConfigError
    from compresslab.data import DataLayoutError
    from compresslab.train import run  # imported here so `--help` and config errors come back fast

    try:
        result = run(cfg)
    except (ConfigError, CheckpointError, DataLayoutError) as e:
        # config: an impossible combination, caught before any work; checkpoint: init_from / ckpt_path /
        # model.base_ckpt missing, corrupt, unsafe or of another model, or a checkpoint write that failed (full
        # disk: the previous one is intact); data: the dataset's layout is missing. One line, no traceback.
        kind = "config" if isinstance(e, ConfigError) else "data" if isinstance(e, DataLayoutError) else "checkpoint"
        line = f"{kind} error: {e}"
        if _in_multirun():  # sys.exit would end the whole sweep; a failed job is recorded and the others go on
            print(line, file=sys.stderr, flush=True)
            raise RuntimeError(line) from None
        sys.exit(line)
    print(f"\nrun directory: {result['run_dir']}\nlast checkpoint: {result['last_ckpt']}")
    return result["objective"]  # what a sweeper (hparams_search=...) optimises; None without cfg.objective


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


if __name__ == "__main__":
    main()
