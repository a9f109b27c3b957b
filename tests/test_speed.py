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
