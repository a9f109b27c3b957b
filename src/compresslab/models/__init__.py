"""Models by name. Importing this package registers every model family."""

from .registry import build, get_model_class, model_names, register_model
from . import adaptive, factorized, hyperprior, msp  # noqa: F401  (registration side effect)

__all__ = ["build", "get_model_class", "model_names", "register_model"]
