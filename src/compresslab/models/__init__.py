"""Models by name. Importing this package registers every model family: each module of this package is imported, so a
new model is one Python file here (a class decorated with ``@register_model("name")``) plus ``conf/model/name.yaml``.
A model kept outside the repository is a plugin: a module name or a .py file in ``plugins=[...]`` (conf/train.yaml) or
``$COMPRESSLAB_PLUGINS`` (os.pathsep-separated, read here, so the CLI's evaluate/compress know the model too)."""

import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path

from compresslab.models.base import CompressLabModel, ModelContractError, pad_multiple_of
from compresslab.models.factory import build
from compresslab.models.registry import get_model_class, model_names, register_model

_HELPERS = {"base", "registry", "factory", "from_checkpoint", "base_weights"}  # no models in these
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _HELPERS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

_LOADED: set[str] = set()


def load_plugins(specs) -> None:
    """Import the user's model modules (``pkg.module`` or ``/path/my_models.py``) once each; their
    ``@register_model`` classes join the registry. Named by the user, never by a checkpoint or a data file."""
    for spec in specs or []:
        spec = str(spec)
        if spec in _LOADED:
            continue
        if spec.endswith(".py"):
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"plugin {spec}: no such file (plugins=[...] or $COMPRESSLAB_PLUGINS)")
            name = f"compresslab_plugin_{path.stem}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            mod_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
        _LOADED.add(spec)


load_plugins([s for s in os.environ.get("COMPRESSLAB_PLUGINS", "").split(os.pathsep) if s])

__all__ = ["CompressLabModel", "ModelContractError", "build", "get_model_class", "load_plugins", "model_names",
           "pad_multiple_of", "register_model"]
