"""Models by name. Importing this package registers every model family: each module of this package is imported, so a
new model is one Python file here (a class decorated with ``@register_model("name")``) plus ``conf/model/name.yaml``."""

import importlib
import pkgutil

from .registry import build, get_model_class, model_names, register_model

_HELPERS = {"registry", "from_checkpoint", "base_weights", "latent_coding"}  # no models in these
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _HELPERS and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["build", "get_model_class", "model_names", "register_model"]
