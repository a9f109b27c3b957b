"""Train a learned image codec: ``python train.py model=hyperprior lambda=0.0067`` (see README)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from compresslab.train import run  # imported here so `--help` and config errors come back fast

    result = run(cfg)
    print(f"\nrun directory: {result['run_dir']}\nlast checkpoint: {result['last_ckpt']}")


if __name__ == "__main__":
    main()
