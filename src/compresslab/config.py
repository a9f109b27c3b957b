"""Config helpers that must exist before Hydra resolves anything: the ``${model_min_crop:}`` and ``${model_smoke_M:}``
resolvers (the model's own minimum training crop and smoke latent width, used by ``debug=smoke``). Light on purpose:
importing it does not import torch or CompressAI."""

from __future__ import annotations

from omegaconf import OmegaConf



def model_min_crop(*, _root_) -> int:
    from compresslab.models import get_model_class

    model = OmegaConf.to_container(_root_.model, resolve=True)
    return get_model_class(model["name"]).min_crop(model)


def model_smoke_m(*, _root_) -> int:
    """debug=smoke's model.M: the model class's ``smoke_width`` from its name, arch and smoke's N (only those keys
    are read: model.M itself is this interpolation)."""
    from compresslab.errors import ConfigError
    from compresslab.models import get_model_class
    from compresslab.models.base import CompressLabModel

    cfg = {k: OmegaConf.select(_root_, f"model.{k}") for k in ("name", "arch", "N")}
    try:
        return get_model_class(cfg["name"]).smoke_width(cfg)
    except ConfigError:  # an unknown or refused architecture: its check after composition says so in one line
        return CompressLabModel.smoke_width(cfg)


_RUN_ID: list[str] = []


def run_id() -> str:
    """One id per process (W&B's alphabet), for the default run and sweep folder names: two commands started in the
    same second get different folders. A DDP worker is given its run folder by Lightning, so it never asks."""
    if not _RUN_ID:
        import secrets
        import string

        alphabet = string.ascii_lowercase + string.digits
        _RUN_ID.append("".join(secrets.choice(alphabet) for _ in range(8)))
    return _RUN_ID[0]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("model_min_crop"):
        OmegaConf.register_new_resolver("model_min_crop", model_min_crop)
    if not OmegaConf.has_resolver("model_smoke_M"):
        OmegaConf.register_new_resolver("model_smoke_M", model_smoke_m)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id)


register_resolvers()
