"""Hydra search-path plugin: the user's config folders ($COMPRESSLAB_CONF_PATH, filled by ``compresslab train`` from a
``hydra.searchpath=[...]`` override) go before CompressLab's built-in ``pkg://compresslab.conf``, so a user YAML with a
built-in's name wins. Hydra discovers it through the ``hydra_plugins`` namespace package."""

from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class CompressLabUserConfFirst(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        paths = [p for p in os.environ.get("COMPRESSLAB_CONF_PATH", "").split(os.pathsep) if p]
        for path in reversed(paths):
            if "://" not in path:
                path = "file://" + os.path.abspath(os.path.expanduser(path))
            # before "main" (the primary config's folder), so a user's group option shadows the built-in one
            search_path.prepend(provider="compresslab-user", path=path, anchor="main")
