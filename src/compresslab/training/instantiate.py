"""The one route from config to callbacks and loggers (after lightning-hydra-template's ``instantiators.py``): every
entry of ``callbacks:`` and ``logger:`` is a ``_target_`` node built by Hydra's ``instantiate``, the built-in ones
and the user's alike. An entry set to ``null``/``false`` or holding ``enabled: false`` is left out; ``extra:`` (what
``+callbacks/extra=...`` adds) is a dict of more such entries. Facts of the run (its folder, the evaluation set, the
prepared model config, the config hash) reach the YAMLs as ``${runtime.*}``, which ``training.run.run`` fills in
before building anything."""

from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from compresslab.errors import ConfigError


def entries(section: Any, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, spec) of every enabled entry, ``extra``'s flattened in after the built-ins."""
    plain = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section or {})
    out = []
    for name, spec in plain.items():
        if name == "extra":
            out += [(f"extra.{k}", v) for k, v in (spec or {}).items() if v not in (None, False)]
            continue
        if spec in (None, False):
            continue
        out.append((name, spec))
    built = []
    for name, spec in out:
        if not isinstance(spec, Mapping) or "_target_" not in spec:
            raise ConfigError(f"{kind}.{name} needs a _target_ (a class path), got {spec!r}")
        spec = dict(spec)
        if not spec.pop("enabled", True):
            continue
        built.append((name, spec))
    return built


def instantiate_all(section: Any, kind: str) -> list[Any]:
    """Build every enabled entry of a ``callbacks:`` or ``logger:`` section; a failure is one line naming it."""
    from hydra.utils import instantiate

    out = []
    for name, spec in entries(section, kind):
        try:
            # not recursive: an argument holding a config (W&B's `config`) must arrive as data, not be built
            obj = instantiate(spec, _convert_="all", _recursive_=False)
        except Exception as e:  # noqa: BLE001 - one line naming the entry, the class and the cause
            cause = e.__cause__ or e
            raise ConfigError(f"{kind}.{name} ({spec['_target_']}) could not be built: "
                              f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}") from None
        if obj is not None:  # a factory may decline (the W&B logger on a rank that does not log)
            out.append(obj)
    return out


__all__ = ["entries", "instantiate_all"]
