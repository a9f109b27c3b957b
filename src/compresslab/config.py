"""Config helpers that must exist before Hydra resolves anything: the ``${model_min_crop:}`` resolver (the model's own minimum training
crop, used by ``debug=smoke``). Light on purpose: importing it does not import torch or CompressAI."""

from __future__ import annotations

from omegaconf import OmegaConf



def model_min_crop(*, _root_) -> int:
    from compresslab.models import get_model_class

    model = OmegaConf.to_container(_root_.model, resolve=True)
    return get_model_class(model["name"]).min_crop(model)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("model_min_crop"):
        OmegaConf.register_new_resolver("model_min_crop", model_min_crop)


register_resolvers()
