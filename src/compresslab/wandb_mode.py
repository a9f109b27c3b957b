"""The one rule for W&B's mode, used by training runs, RD reports and LOF curve logging: offline unless asked.

An explicit ``WANDB_MODE`` in the environment wins (``online``, ``offline``, ``disabled``); otherwise a training run
follows ``logger.wandb.offline`` and every other W&B writer (``compresslab rd``, ``evaluate --wandb``, sweep
reports) is offline, so nothing needs an account or a server unless a user asks for one."""

from __future__ import annotations

import os


def wandb_mode(offline: bool = True) -> str:
    """Set (if unset) and return the W&B mode for this process."""
    return os.environ.setdefault("WANDB_MODE", "offline" if offline else "online")
