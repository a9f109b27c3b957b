"""Throughput knobs (conf/train.yaml: speed.*), applied to the model before training. Each is measured side by side
with a plain PyTorch loop in benchmarks/train_step.py; all are off by default (see the README's throughput table)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn


# The convolutional parts: compiling the entropy models would trace their CDF bookkeeping for nothing.
COMPILED_PARTS = ("g_a", "g_s", "h_a", "h_s")


def apply_speed_settings(model: nn.Module, speed: Mapping[str, Any] | None) -> dict[str, Any]:
    """channels_last: weights (and, through ``to_memory_format``, inputs) in NHWC, which cuDNN's convolutions
    prefer on tensor-core GPUs. compile: ``nn.Module.compile`` in place on g_a/g_s/h_a/h_s, so parameter names and
    checkpoints are unchanged (a compiled wrapper module would rename every key to ``*._orig_mod.*``).
    compile=step (or step:<backend>): nothing here; ``step`` names the backend RateDistortionModule compiles its
    whole training step with (training/fused.py)."""
    speed = dict(speed or {})
    unknown = set(speed) - {"channels_last", "compile"}
    if unknown:
        raise ValueError(f"unknown speed setting(s) {sorted(unknown)}; known: channels_last, compile")
    channels_last = bool(speed.get("channels_last", False))
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
                part.compile(backend=backend, dynamic=None)
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

