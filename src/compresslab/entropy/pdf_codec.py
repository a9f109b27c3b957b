"""The learned codec for per-channel PMFs (h_{a,q} / h_{s,q} of Ulhaq & Bajić 2024, recovered "um-pdf" model).

1-D convolutions run along the bin axis; latent channels are conv channels. Grouped convolutions (G groups) with
ShuffleNet-style channel interleaving between them, three stride-2 stages (s_q = 8, as in the released code and the
5-layer figure; the thesis prose's s_q = 4 is a left-over), softmax over bins at the end. q is coded with its own
EntropyBottleneck (1-D). Input scaling is our choice: the histogram is multiplied by B so a uniform PMF is all ones.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor, nn


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        n, c, length = x.shape
        return x.view(n, self.groups, c // self.groups, length).transpose(1, 2).reshape(n, c, length)


def _conv(cin, cout, k, stride=1, groups=1):
    return nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, groups=groups)


def _deconv(cin, cout, k, stride=1, groups=1):
    return nn.ConvTranspose1d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1, groups=groups)


class PdfCodec(nn.Module):
    def __init__(self, M: int, bins: int, Nq: int = 32, Mq: int = 16, kernel: int = 15, groups: int = 8):
        super().__init__()
        if bins % 8:
            raise ValueError(f"model.bins={bins} must be divisible by 8 (three stride-2 stages)")
        C1 = max(Nq, M // 2)
        for name, ch in (("M", M), ("M/2 or Nq", C1), ("Nq", Nq)):
            if ch % groups:
                raise ValueError(f"{name}={ch} is not divisible by model.groups={groups}")
        K, G = kernel, groups
        self.bins, self.M, self.Mq = bins, M, Mq
        self.h_a = nn.Sequential(
            _conv(M, C1, 5, groups=G), ChannelShuffle(G), nn.ReLU(inplace=True),
            _conv(C1, Nq, K, 2, G), ChannelShuffle(G), nn.ReLU(inplace=True),
            _conv(Nq, Nq, K, 2, G), ChannelShuffle(G), nn.ReLU(inplace=True),
            _conv(Nq, Nq, K, 2, G), nn.ReLU(inplace=True),
            _conv(Nq, Mq, K),
        )
        self.h_s = nn.Sequential(
            _deconv(Mq, Nq, K), nn.ReLU(inplace=True),
            _deconv(Nq, Nq, K, 2, G), ChannelShuffle(G), nn.ReLU(inplace=True),
            _deconv(Nq, Nq, K, 2, G), ChannelShuffle(G), nn.ReLU(inplace=True),
            _deconv(Nq, C1, K, 2, G), ChannelShuffle(G), nn.ReLU(inplace=True),
            _deconv(C1, M, 5, groups=G),
        )
        self.entropy_bottleneck = EntropyBottleneck(Mq)

    @property
    def q_length(self) -> int:
        return self.bins // 8

    def forward(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """p (n, M, B) -> (log p_hat (n, M, B), likelihoods of q (n, Mq, B/8))."""
        q = self.h_a(p * self.bins)
        q_tilde, q_likelihoods = self.entropy_bottleneck(q)
        return torch.log_softmax(self.h_s(q_tilde), dim=-1), q_likelihoods

    def analysis(self, p: Tensor) -> Tensor:
        return self.h_a(p * self.bins)
