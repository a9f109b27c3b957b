"""Hard quantisation with straight-through gradients, and entropy-model likelihoods of already-quantised values.

Used by latent overfitting: the forward pass sees exactly what the coder codes (rounding on the median grid), the
backward pass treats rounding as identity.
"""

from __future__ import annotations

from torch import Tensor


def ste_round(x: Tensor, offset: Tensor | None = None) -> Tensor:
    """round(x - offset) + offset in the forward pass, identity gradient."""
    q = x.round() if offset is None else (x - offset).round() + offset
    return x + (q - x).detach()


def eb_likelihood(eb, y_hat: Tensor) -> Tensor:
    """EntropyBottleneck likelihood of already-quantised ``y_hat`` with gradients to it (its forward() rounds
    internally, which would block them). Same layout handling and lower bound as ``EntropyBottleneck.forward``."""
    perm = (1, 0, *range(2, y_hat.dim()))
    inv = tuple(perm.index(i) for i in range(len(perm)))
    v = y_hat.permute(*perm).contiguous()
    shape = v.shape
    lik, _, _ = eb._likelihood(v.reshape(shape[0], 1, -1))
    if eb.use_likelihood_bound:
        lik = eb.likelihood_lower_bound(lik)
    return lik.reshape(shape).permute(*inv).contiguous()


def gaussian_likelihood(gc, y_hat: Tensor, scales: Tensor, means: Tensor | None = None) -> Tensor:
    lik = gc._likelihood(y_hat, scales, means)
    if gc.use_likelihood_bound:
        lik = gc.likelihood_lower_bound(lik)
    return lik
