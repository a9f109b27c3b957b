"""Mixed precision without touching the rate: entropy models always compute in float32.

Under ``trainer.precision=bf16-mixed`` autocast runs convolutions and matmuls in bfloat16. The entropy models'
CDF networks (EntropyBottleneck's cumulative logits are matmuls), the Gaussian CDF differences and the aux loss
lose the small probability differences a rate is made of in 8 mantissa bits, so their entry points run with
autocast disabled on float32 inputs; the transforms keep the bf16 speed-up. EntropyBottleneck's forward is also
swapped for the synchronisation-free one of ``sync_free`` (same outputs).
"""

from __future__ import annotations

import functools
import types

import torch
from compressai.entropy_models import EntropyModel
from torch import nn

from compresslab.entropy.sync_free import forward_for

_FP32_METHODS = ("forward", "_likelihood", "_logits_cumulative", "loss")


def _fp32(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        kwargs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in kwargs.items()}
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            return fn(*args, **kwargs)
    wrapper._fp32 = True
    return wrapper


def entropy_models_in_fp32(model: nn.Module) -> int:
    """Wrap (per instance, idempotent) every CompressAI entropy model's rate entry points. Returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, EntropyModel):
            for name in _FP32_METHODS:
                fn = forward_for(type(m)) if name == "forward" else getattr(type(m), name, None)
                if fn is not None and not getattr(getattr(m, name), "_fp32", False):
                    # bound per instance (deepcopy rebinds a bound method to the copy, a closure would not)
                    setattr(m, name, types.MethodType(_fp32(fn), m))
            n += 1
    return n
