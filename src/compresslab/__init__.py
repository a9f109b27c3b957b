"""CompressLab: an experiment framework for learned image compression.

Built on CompressAI (models, entropy coders), Lightning (training loop), Hydra (configs),
torchmetrics, bjontegaard (BD-rate) and W&B (logging).
"""

__version__ = "0.1.0"
