"""Parameters and multiply-accumulates per pixel of a model, by part (g_a, h_a, h_s, g_s, context, entropy models).

MACs are what ``torch.utils.flop_counter`` counts in one forward pass of an image (convolutions, transposed
convolutions and matrix products; elementwise work such as GDN's square and root, activations and the likelihoods is
not counted), halved. The forward pass is the training one, in eval mode: a context model's masked convolution runs
once over the whole latent, which is also what its serial decoding loop computes position by position."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from compresslab.models.base import pad_multiple_of


def _parts(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return dict(model.named_children())


def parameter_counts(model: torch.nn.Module) -> dict[str, Any]:
    by_part = {name: sum(p.numel() for p in m.parameters()) for name, m in _parts(model).items()}
    return {"params": sum(p.numel() for p in model.parameters()), "params_by_part": {k: v for k, v in by_part.items()
                                                                                       if v}}


@torch.no_grad()
def mac_counts(model: torch.nn.Module, height: int = 512, width: int = 768) -> dict[str, Any]:
    """kMAC per pixel of one forward pass on a height x width image (Kodak's size by default), in all and by part."""
    pad = pad_multiple_of(model)
    h, w = -(-height // pad) * pad, -(-width // pad) * pad  # what evaluation pads to
    p = next(model.parameters())
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(p)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as fc:
            model(x)
    finally:
        model.train(was_training)
    counts = fc.get_flop_counts()
    root = next((k for k in counts if k != "Global" and "." not in k), None)
    by_part = {}
    for name in _parts(model):
        ops = counts.get(f"{root}.{name}", {})
        if ops:
            by_part[name] = sum(ops.values()) / 2 / (height * width) / 1e3
    total = fc.get_total_flops() / 2 / (height * width) / 1e3
    return {"image": [height, width], "coded": [h, w], "kmac_per_pixel": total, "kmac_by_part": by_part}


def complexity(model: torch.nn.Module, height: int = 512, width: int = 768) -> dict[str, Any]:
    return {**parameter_counts(model), **mac_counts(model, height, width)}
