"""Optimizers and LR schedulers from plain config mappings (conf/optim/*.yaml)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch.optim.lr_scheduler import LRScheduler, MultiStepLR, ReduceLROnPlateau

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
    raise ValueError(f"unknown scheduler {name!r} (optim.scheduler.name); use plateau, multistep or none")


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
