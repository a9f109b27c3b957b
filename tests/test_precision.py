"""bf16 mixed precision: the transforms run in bfloat16, the rate (entropy models, aux loss) stays float32."""

import pytest
import torch

from compresslab.entropy.precision import entropy_models_in_fp32
from compresslab.evaluation.losses import RateDistortionLoss
from compresslab.models.registry import get_model_class
from conftest import train


@pytest.mark.parametrize("name", ["factorized", "hyperprior", "msp"])
def test_bf16_autocast_keeps_rates_fp32_and_losses_close_to_fp32(name):
    torch.manual_seed(0)
    model = get_model_class(name)(N=32, M=48, **({"profile": "fast", "transform": "gdn"} if name == "msp" else {}))
    x = torch.rand(2, 3, 128, 128)
    crit = RateDistortionLoss(0.01)

    def losses(autocast: bool):
        torch.manual_seed(1)  # the same noise draw in both passes
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
            return out, crit(out, x), model.aux_loss()

    _, ref, _ = losses(False)
    assert entropy_models_in_fp32(model) >= 1 and entropy_models_in_fp32(model) == entropy_models_in_fp32(model)
    out, ours, aux = losses(True)
    assert out["x_hat"].dtype == torch.bfloat16  # the transforms did run in bf16
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values()) and aux.dtype == torch.float32
    for k in ("bpp_loss", "mse_loss", "loss"):
        assert torch.isclose(ours[k], ref[k], rtol=0.02), (k, ours[k], ref[k])


@pytest.mark.slow
def test_bf16_mixed_trains_on_cpu(tmp_path):
    res = train(tmp_path, ["model=hyperprior", "trainer.precision=bf16-mixed", "callbacks.rd_eval.enabled=false"])
    assert res["last_ckpt"] and torch.isfinite(torch.tensor(res["metrics"]["train/loss"]))


@pytest.mark.slow
def test_fp16_is_refused_with_the_reason(tmp_path):
    from compresslab.training.run import ConfigError
    with pytest.raises(ConfigError, match="bf16-mixed"):
        train(tmp_path, ["trainer.precision=16-mixed"])


def test_entropy_model_entry_points_run_without_autocast_on_fp32_inputs():
    """On a GPU autocast turns the CDF networks' matmuls into bf16; the wrapper must switch it off and upcast."""
    from compressai.entropy_models import EntropyBottleneck

    seen = []

    class Spy(EntropyBottleneck):
        def _logits_cumulative(self, inputs, stop_gradient):
            seen.append((torch.is_autocast_enabled("cpu"), inputs.dtype))
            return super()._logits_cumulative(inputs, stop_gradient)

    eb = Spy(4)
    net = torch.nn.Sequential(eb)
    z = torch.randn(1, 4, 3, 3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eb(z)
        assert seen[-1][0]  # unwrapped: autocast is on inside
        entropy_models_in_fp32(net)
        seen.clear()
        _, lik = eb(z)
        eb.loss()
    assert seen and all(state == (False, torch.float32) for state in seen)
    assert lik.dtype == torch.float32
