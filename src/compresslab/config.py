"""Config helpers that must exist before Hydra resolves anything: the ``${model_min_crop:}`` resolver (the model's own minimum training
crop, used by ``debug=smoke``). Light on purpose: importing it does not import torch or CompressAI."""

from __future__ import annotations

from omegaconf import OmegaConf



def model_min_crop(*, _root_) -> int:
    from compresslab.models import get_model_class

    model = OmegaConf.to_container(_root_.model, resolve=True)
    return get_model_class(model["name"]).min_crop(model)


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
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id)


register_resolvers()
