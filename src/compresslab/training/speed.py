"""Throughput knobs (conf/train.yaml: speed.*), applied to the model before training. Each is measured side by side
with a plain PyTorch loop in benchmarks/train_step.py; all are off by default (see the README's throughput table)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from compresslab.errors import ConfigError


# The convolutional parts: compiling the entropy models would trace their CDF bookkeeping for nothing.
COMPILED_PARTS = ("g_a", "g_s", "h_a", "h_s")


def nhwc_weight_grad_hazards(model: nn.Module) -> list[str]:
    """The convolutions whose weight gradient, computed in channels_last on the CPU, corrupts the process's memory in
    torch 2.14 (oneDNN): 1x1, stride 2, 2 to 15 input channels, the shortcut of a strided residual block on the RGB
    input (msp's and cheng2020's g_a). Measured here with a bare ``nn.Conv2d``: 2, 3, 4, 8 and 12 input channels crash
    ("double free or corruption", "corrupted double-linked list", a segfault); 1, 16 and more, stride 1, 3 or 4, and
    3x3/5x5 kernels do not. Inductor chooses channels_last for convolutions on its own (its layout optimisation), so a
    compiled step meets it too."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
            and m.stride == (2, 2) and 1 < m.in_channels < 16]


def inductor_options(model: nn.Module, cpu: bool) -> dict[str, Any] | None:
    """torch.compile options for ``model`` under inductor: NCHW convolutions on the CPU where a layer is one of
    ``nhwc_weight_grad_hazards`` (the channels_last layout inductor picks by itself is what crashes there)."""
    return {"layout_optimization": False} if cpu and nhwc_weight_grad_hazards(model) else None


def apply_speed_settings(model: nn.Module, speed: Mapping[str, Any] | None, cpu: bool = True) -> dict[str, Any]:
    """channels_last: weights (and, through ``to_memory_format``, inputs) in NHWC, which cuDNN's convolutions
    prefer on tensor-core GPUs. compile: ``nn.Module.compile`` in place on g_a/g_s/h_a/h_s, so parameter names and
    checkpoints are unchanged (a compiled wrapper module would rename every key to ``*._orig_mod.*``).
    compile=step (or step:<backend>): nothing here; ``step`` names the backend RateDistortionModule compiles its
    whole training step with (training/fused.py)."""
    speed = dict(speed or {})
    unknown = set(speed) - {"channels_last", "compile"}
    if unknown:
        raise ConfigError(f"unknown speed setting(s) {sorted(unknown)}; known: channels_last, compile")
    channels_last = bool(speed.get("channels_last", False))
    hazards = nhwc_weight_grad_hazards(model) if cpu and channels_last else []
    if channels_last and hazards:
        raise ConfigError(f"speed.channels_last=true on the CPU: the weight gradient of {hazards[0]} (a 1x1 stride-2 "
                         f"convolution with few input channels) corrupts memory in channels_last with torch "
                         f"{torch.__version__.split('+')[0]}'s CPU kernels; use speed.channels_last=false (it is meant "
                         "for GPUs)")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    backend = speed.get("compile", False)
    compiled = []
    step = step_backend(speed)
    if step:  # the whole training step is compiled by the module (training/fused.py), not the parts
        return {"channels_last": channels_last, "compiled": [], "step": step}
    if backend:
        backend = "inductor" if backend is True else str(backend)
        for name in COMPILED_PARTS:
            part = getattr(model, name, None)
            if isinstance(part, nn.Module):
                options = inductor_options(part, cpu) if backend == "inductor" else None
                part.compile(backend=backend, dynamic=None, **({"options": options} if options else {}))
                compiled.append(name)
    return {"channels_last": channels_last, "compiled": compiled, "step": None}


def to_memory_format(batch: Any, channels_last: bool) -> Any:
    """Image batches (N, C, H, W) to NHWC when channels_last is on; anything else (a latent-cache dict) as is."""
    if channels_last and isinstance(batch, Tensor) and batch.dim() == 4:
        return batch.contiguous(memory_format=torch.channels_last)
    return batch


FUSED_MODE = "step"  # the value of speed.compile that selects the fused step (training.fused)


def step_backend(speed: Mapping[str, Any] | None) -> str | None:
    """The torch.compile backend of the fused step: speed.compile=step (inductor) or step:<backend>; else None."""
    value = str((speed or {}).get("compile", False))
    if value == FUSED_MODE:
        return "inductor"
    return value.split(":", 1)[1] if value.startswith(FUSED_MODE + ":") else None

