"""Errors every layer may raise and the entry points print as one line (no imports: the bottom of the package)."""


class ConfigError(ValueError):
    """A config that cannot work; raised before any work starts and printed as one line by train.py."""


class NonFiniteLossError(FloatingPointError):
    """The RD loss became NaN/inf; the step was not applied and nothing was saved from it."""
