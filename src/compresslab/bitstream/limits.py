"""The decoder's default limits and tile size, from conf/decode.yaml (torch-free: the CLI builds its flags from
them without importing the model stack)."""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType

KEYS = ("warn_pixels", "max_pixels", "memory_mb", "tile")


@lru_cache(maxsize=1)
def decode_defaults() -> MappingProxyType:
    import yaml

    from compresslab.conf import CONF_DIR

    cfg = yaml.safe_load((CONF_DIR / "decode.yaml").read_text())
    if set(cfg) != set(KEYS) or not all(isinstance(cfg[k], int) and cfg[k] >= 0 for k in KEYS):
        raise ValueError(f"{CONF_DIR / 'decode.yaml'} must set exactly {', '.join(KEYS)} to integers >= 0")
    return MappingProxyType(cfg)
