"""Optimizers and LR schedulers from plain config mappings (conf/optim/*.yaml)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import math

from torch.optim.lr_scheduler import LambdaLR, LRScheduler, MultiStepLR, ReduceLROnPlateau

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def build_optimizers(net_params, aux_params, cfg: Mapping[str, Any]):
    name = cfg.get("name", "adam")
    if name not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r} (optim.name); use one of {sorted(_OPTIMIZERS)}")
    opt_cls = _OPTIMIZERS[name]
    net = opt_cls(net_params, lr=float(cfg.get("lr", 1e-4)), weight_decay=float(cfg.get("weight_decay", 0.0)))
    # An empty aux group is allowed (a model without entropy bottlenecks); Adam needs at least one tensor.
    aux_params = list(aux_params)
    aux = torch.optim.Adam(aux_params or [torch.zeros(1, requires_grad=True)], lr=float(cfg.get("aux_lr", 1e-3)))
    return net, aux


def build_scheduler(optimizer, cfg: Mapping[str, Any] | None) -> LRScheduler | ReduceLROnPlateau | None:
    if not cfg or cfg.get("name") in (None, "none"):
        return None
    name = cfg["name"]
    if name == "plateau":
        return ReduceLROnPlateau(optimizer, mode="min", factor=float(cfg.get("factor", 0.1)),
                                 patience=int(cfg.get("patience", 10)), min_lr=float(cfg.get("min_lr", 0.0)))
    if name == "multistep":
        return MultiStepLR(optimizer, milestones=list(cfg["milestones"]), gamma=float(cfg.get("gamma", 0.1)))
    if name == "cosine":
        return LambdaLR(optimizer, warmup_cosine(int(cfg.get("warmup_steps", 0)), int(cfg["total_steps"]),
                                                 float(cfg.get("final_ratio", 0.01))))
    raise ValueError(f"unknown scheduler {name!r} (optim.scheduler.name); use plateau, multistep, cosine or none")


def warmup_cosine(warmup: int, total: int, final_ratio: float):
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine from 1 down to ``final_ratio`` at ``total``
    (held there after). Short budgets need the large early step and the small late one both."""
    if total <= warmup:
        raise ValueError(f"optim.scheduler.total_steps ({total}) must exceed warmup_steps ({warmup})")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / (total - warmup))
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def step_scheduler(scheduler, cfg: Mapping[str, Any] | None, when: str, metrics: Mapping[str, Any] | None = None):
    """Manual optimisation steps schedulers itself: plateau after validation, multistep per training step."""
    if isinstance(scheduler, ReduceLROnPlateau):
        if when != "val":
            return
        monitor = (cfg or {}).get("monitor", "val/loss")
        if metrics is None or monitor not in metrics:
            raise KeyError(f"scheduler monitors {monitor!r} but only {sorted(metrics or {})} were logged; "
                           f"set optim.scheduler.monitor")
        scheduler.step(float(metrics[monitor]))
    elif when == "step":
        scheduler.step()
