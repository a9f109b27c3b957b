import pytest
import torch
from compressai.losses import RateDistortionLoss as CompressAIRDLoss
from compressai.models import FactorizedPrior, ScaleHyperprior

from compresslab import models
from compresslab.evaluation.losses import RateDistortionLoss
from compresslab.conf import CONF_DIR


def test_registry_builds_and_rejects_unknown():
    assert {"factorized", "hyperprior"} <= set(models.model_names())
    m = models.build({"name": "hyperprior", "N": 32, "M": 48})
    assert isinstance(m, ScaleHyperprior) and m.g_a[0].out_channels == 32
    with pytest.raises(KeyError, match="unknown model 'nope'.*factorized"):
        models.build({"name": "nope"})


@pytest.mark.parametrize("name,ref", [("factorized", FactorizedPrior), ("hyperprior", ScaleHyperprior)])
def test_weights_load_into_compressai_classes(name, ref):
    torch.manual_seed(0)
    extra = {"deterministic_coding": False} if name == "hyperprior" else {}  # CompressAI's float32 table selection
    ours = models.build({"name": name, "N": 32, "M": 48, **extra}).eval()
    ours.update(force=True)
    theirs = ref.from_state_dict(ours.state_dict()).eval()
    assert set(theirs.state_dict()) == set(ours.state_dict())
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
        assert torch.equal(a["x_hat"], b["x_hat"])
        theirs.update(force=True)
        # same strings as CompressAI's own compress
        assert ours.compress(x)["strings"] == theirs.compress(x)["strings"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["factorized", "hyperprior"])
def test_mse_loss_equals_compressai(name):
    torch.manual_seed(1)
    m = models.build({"name": name, "N": 32, "M": 48}).train()
    x = torch.rand(2, 3, 64, 64)
    out = m(x)
    ours = RateDistortionLoss(0.0067)(out, x)
    ref = CompressAIRDLoss(lmbda=0.0067)(out, x)
    for k in ("bpp_loss", "mse_loss", "loss"):
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_msssim_loss_equals_compressai():
    torch.manual_seed(2)
    m = models.build({"name": "factorized", "N": 32, "M": 48}).train()
    x = torch.rand(1, 3, 192, 192)
    out = m(x)
    ours = RateDistortionLoss(8.73, metric="msssim")(out, x)
    ref = CompressAIRDLoss(lmbda=8.73, metric="ms-ssim")(out, x)
    torch.testing.assert_close(ours["bpp_loss"], ref["bpp_loss"])
    torch.testing.assert_close(ours["ms_ssim_loss"], ref["ms_ssim_loss"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours["loss"], ref["loss"])


def test_loss_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown distortion metric"):
        RateDistortionLoss(0.01, metric="lpips")
    with pytest.raises(ValueError, match="lambda must be"):
        RateDistortionLoss(float("nan"))


def test_hyperprior_deterministic_coding_picks_compressais_tables_except_at_grid_edges():
    """The float64 CPU h_s on a 2^-8 grid may move an element to the neighbouring scale table only when its scale lies
    within half a grid step of a table edge; everything else codes exactly as CompressAI does."""
    torch.manual_seed(3)
    m = models.build({"name": "hyperprior", "N": 32, "M": 48}).eval()
    m.update(force=True)
    z_hat = m.entropy_bottleneck.quantize(m.h_a(m.g_a(torch.rand(1, 3, 256, 256)).abs()), "dequantize",
                                          m.entropy_bottleneck._get_medians())
    with torch.no_grad():
        ours = m._coding_indexes(z_hat)
        ref = m.gaussian_conditional.build_indexes(m.h_s(z_hat))
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    assert (ours != ref).float().mean() < 0.01
    assert torch.equal(ours, m._coding_indexes(z_hat.clone()))


def test_a_new_model_is_one_file_and_one_yaml():
    """Every module of compresslab.models is imported by the package, and every registered model has its YAML."""
    import pkgutil
    from pathlib import Path

    import compresslab.models as pkg
    from compresslab.models.registry import _REGISTRY

    conf = CONF_DIR / "model"
    assert set(pkg.model_names()) >= {"factorized", "hyperprior", "adaptive", "msp"}
    for name in pkg.model_names():
        assert (conf / f"{name}.yaml").is_file(), f"model {name!r} has no conf/model/{name}.yaml"
    modules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    homes = {cls.__module__.rsplit(".", 1)[-1] for cls in _REGISTRY.values()}
    assert homes <= modules  # each model lives in its own module of the package, found without a list to edit
