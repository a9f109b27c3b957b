"""The data root: ``$COMPRESSLAB_DATA``, else ``./data``. No torch here, so that reading results and anchors (the
sweep summary of a submitting process, ``compresslab rd``) does not pay for importing it."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "COMPRESSLAB_DATA"


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$COMPRESSLAB_DATA``, else ``./data`` (the current folder's, as for an installed
    package: nothing is looked up relative to the source tree)."""
    if root:
        return Path(root).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return Path("data").resolve()
