"""What makes entropy parameters the same on every device and in every process: the networks that pick CDF tables
run as float64 CPU copies, and their outputs are rounded to a grid, so a float difference between encoder and
decoder changes a table only if it straddles a grid point (MSP means/scales, the hyperprior's scales, the adaptive
model's PMFs)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

SCALE_GRID = 2.0**8   # Gaussian means and scales (MSP, hyperprior)
PMF_GRID = 2.0**24    # probabilities (the adaptive model's p_hat)


def float64_cpu_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).to(device="cpu", dtype=torch.float64).eval()


def to_grid(t: Tensor, grid: float = SCALE_GRID) -> Tensor:
    return torch.round(t * grid) / grid
