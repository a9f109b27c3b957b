"""CompressLab's Hydra sweeper on Optuna's ask-and-tell API (``hydra/sweeper=optuna``); see ``sweeper.py``."""
