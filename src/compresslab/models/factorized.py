"""bmshj2018-factorized (Ballé et al. 2018, fully factorized prior).

A thin subclass of CompressAI's ``FactorizedPrior``: same modules, same state-dict keys, so weights trained here
load into ``compressai.models.FactorizedPrior`` and CompressAI's ``eval_model``. ``compress``/``decompress`` produce
the same strings as CompressAI's and additionally return the quantised latents on both sides, so the evaluator can
prove the decoder rebuilt exactly what the encoder coded.
"""

from __future__ import annotations

from compressai.models import FactorizedPrior

from compresslab.entropy.ste import eb_likelihood, ste_round
from compresslab.models.base import CompressLabModel
from compresslab.models.registry import register_model


@register_model("factorized")
class Factorized(CompressLabModel, FactorizedPrior):
    #: name CompressAI's zoo / eval_model uses for this architecture
    compressai_arch = "bmshj2018-factorized"
    #: inputs must be padded to a multiple of this for compress/decompress

    def __init__(self, N: int = 128, M: int = 192):
        super().__init__(N=N, M=M)
        self.hparams_dict = {"N": N, "M": M}

    # The latent interface (encode_latents / latent_forward / compress_latents) is what latent overfitting uses.
    def encode_latents(self, x):
        return {"y": self.g_a(x)}

    def latent_forward(self, latents):
        eb = self.entropy_bottleneck
        y_hat = ste_round(latents["y"], eb._get_medians())
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": eb_likelihood(eb, y_hat)}}


    def compress_latents(self, latents):
        y = latents["y"]
        eb = self.entropy_bottleneck
        strings = eb.compress(y)
        y_hat = eb.quantize(y, "dequantize", eb._get_medians())
        return {"strings": [strings], "shape": y.size()[-2:], "latents": {"y": y_hat}}

    def string_layout(self, shape):
        return [[self.entropy_bottleneck.channels * shape[0] * shape[1]]]  # y

    def string_tables(self):
        return [self.entropy_bottleneck]

    def decompress(self, strings, shape):
        y_hat = self.entropy_bottleneck.decompress(strings[0], shape)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": {"y": y_hat}}
