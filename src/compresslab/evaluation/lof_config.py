"""LOF's settings and their defaults, without torch: the CLI builds its --lof-* flags from them, and `compresslab
--help` / `fetch` must not pay for importing torch and CompressAI (compresslab.evaluation.lof, which uses them, imports this)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LOFConfig:
    steps: int = 500            # iteration budget
    lr: float = 1e-3            # Adam learning rate, decayed exponentially ...
    lr_end: float = 1e-4        # ... to this at the last step
    patience: int = 50          # stop after this many iterations without a new best
    optimize_z: bool = True     # hyperprior models: also optimise the hyper-latent
    metric: str = "mse"         # the distortion of the model's training loss

    @classmethod
    def from_mapping(cls, m: dict[str, Any] | None) -> "LOFConfig":
        m = {k: v for k, v in dict(m or {}).items() if k != "enabled"}
        unknown = set(m) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown lof.* keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**m)
