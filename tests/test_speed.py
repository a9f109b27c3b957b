"""Throughput knobs and the synchronisation-free training path: they must not change what is computed."""

import torch
from compressai.entropy_models import EntropyBottleneck

from compresslab import models
from compresslab.entropy.precision import entropy_models_in_fp32
from compresslab.entropy.sync_free import eb_forward
from compresslab.training.speed import apply_speed_settings, to_memory_format


def test_sync_free_entropy_bottleneck_matches_compressai():
    eb = EntropyBottleneck(8)
    x = torch.randn(3, 8, 5, 7) * 4
    for training in (True, False):
        torch.manual_seed(1)
        ref_out, ref_lik = EntropyBottleneck.forward(eb, x, training)
        torch.manual_seed(1)
        out, lik = eb_forward(eb, x, training)
        assert torch.equal(out, ref_out) and torch.equal(lik, ref_lik)
        assert out.shape == x.shape and out.is_contiguous()


def test_wrapped_models_use_the_sync_free_forward_and_train_identically():
    torch.manual_seed(0)
    a = models.build({"name": "hyperprior", "N": 16, "M": 24})
    b = models.build({"name": "hyperprior", "N": 16, "M": 24})
    b.load_state_dict(a.state_dict())
    entropy_models_in_fp32(b)
    assert b.entropy_bottleneck.forward.__wrapped__ is eb_forward
    x = torch.rand(2, 3, 64, 64)
    torch.manual_seed(3)
    ra = a(x)
    torch.manual_seed(3)
    rb = b(x)
    assert torch.equal(ra["x_hat"], rb["x_hat"])
    for k in ra["likelihoods"]:
        assert torch.equal(ra["likelihoods"][k], rb["likelihoods"][k])


def test_channels_last_keeps_the_loss_and_names():
    torch.manual_seed(0)
    ref = models.build({"name": "factorized", "N": 16, "M": 24})
    nhwc = models.build({"name": "factorized", "N": 16, "M": 24})
    nhwc.load_state_dict(ref.state_dict())
    info = apply_speed_settings(nhwc, {"channels_last": True})
    assert info["channels_last"] and set(nhwc.state_dict()) == set(ref.state_dict())
    assert nhwc.g_a[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64)
    ref.eval(), nhwc.eval()
    a, b = ref(x), nhwc(to_memory_format(x, True))
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)
    assert to_memory_format({"y": x}, True) == {"y": x}


def test_compile_is_in_place_and_unknown_keys_fail():
    m = models.build({"name": "hyperprior", "N": 16, "M": 24})
    keys = set(m.state_dict())
    info = apply_speed_settings(m, {"compile": "eager"})  # the eager backend: the plumbing without a C++ build
    assert info["compiled"] == ["g_a", "g_s", "h_a", "h_s"] and set(m.state_dict()) == keys
    x = torch.rand(1, 3, 64, 64)
    m.eval()
    assert m(x)["x_hat"].shape == x.shape
    try:
        apply_speed_settings(m, {"channel_last": True})
    except ValueError as e:
        assert "channel_last" in str(e) and "channels_last" in str(e)
    else:
        raise AssertionError("a misspelt speed key must fail")


def test_the_nhwc_weight_gradient_hazard_is_named_refused_and_compiled_around(monkeypatch):
    """torch 2.14's CPU weight gradient of a 1x1 stride-2 convolution with few input channels corrupts memory in
    channels_last (msp's and cheng2020's g_a shortcut on the RGB input): speed.channels_last is refused for them on the
    CPU, and inductor (which picks channels_last itself) compiles them with NCHW convolutions there."""
    import pytest

    from compresslab.errors import ConfigError
    from compresslab.evaluation.losses import RateDistortionLoss
    from compresslab.training import fused
    from compresslab.training.module import aux_parameters, net_parameters
    from compresslab.training.speed import inductor_options, nhwc_weight_grad_hazards

    msp = models.build({"name": "msp", "N": 16, "M": 16})  # N=8: the inner strided shortcuts (8 channels) too
    cheng = models.build({"name": "cheng2020-anchor", "N": 16, "M": 16})
    plain = models.build({"name": "hyperprior", "N": 8, "M": 8})
    assert nhwc_weight_grad_hazards(msp) == nhwc_weight_grad_hazards(cheng) == ["g_a.0.skip"]
    assert nhwc_weight_grad_hazards(plain) == []
    tiny = models.build({"name": "msp", "N": 8, "M": 8})
    assert nhwc_weight_grad_hazards(tiny) == [f"g_a.{i}.skip" for i in (0, 2, 4)]
    with pytest.raises(ConfigError, match=r"speed.channels_last=true on the CPU: .*g_a.0.skip.*channels_last=false"):
        apply_speed_settings(msp, {"channels_last": True})
    assert apply_speed_settings(cheng, {"channels_last": True}, cpu=False)["channels_last"]  # a GPU run keeps it
    assert apply_speed_settings(plain, {"channels_last": True})["channels_last"]
    assert inductor_options(msp, cpu=True) == {"layout_optimization": False}
    assert inductor_options(msp, cpu=False) is None and inductor_options(plain, cpu=True) is None

    seen = []
    monkeypatch.setattr(fused.torch, "compile", lambda fn, **kw: seen.append(kw) or fn)
    for m in (msp, plain):
        net, aux = torch.optim.Adam(net_parameters(m), lr=1e-3), torch.optim.Adam(aux_parameters(m), lr=1e-3)
        fused.FusedStep(m, RateDistortionLoss(0.01), net, aux, grad_clip=1.0, backend="inductor")
    assert seen[0].get("options") == {"layout_optimization": False} and "options" not in seen[1]
