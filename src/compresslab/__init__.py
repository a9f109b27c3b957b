"""CompressLab: an experiment framework for learned image compression.

Built on CompressAI (models, entropy coders), Lightning (training loop), Hydra (configs),
torchmetrics, bjontegaard (BD-rate) and W&B (logging).
"""

__version__ = "0.1.0"

import warnings as _warnings

# compressai imports torch_geometric, which calls the deprecated torch.jit.script at import time (torch 2.14).
_warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
