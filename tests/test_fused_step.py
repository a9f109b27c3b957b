"""speed.compile=step: the whole training step is one graph (no graph break), and training with it follows the eager
Lightning step's loss sequence."""

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from compresslab import models
from compresslab.entropy.precision import entropy_models_in_fp32
from compresslab.evaluation.losses import RateDistortionLoss
from compresslab.training.fused import FusedStep, count_graph_breaks
from compresslab.training.speed import step_backend
from compresslab.training.module import RateDistortionModule, aux_parameters, net_parameters
from compresslab.training.speed import apply_speed_settings

TINY = {"factorized": {"N": 8, "M": 8}, "hyperprior": {"N": 8, "M": 8}}


@pytest.mark.parametrize("name", ["factorized", "hyperprior"])
def test_fused_step_is_one_graph(name):
    torch.manual_seed(0)
    m = models.build({"name": name, **TINY[name]})
    entropy_models_in_fp32(m)  # as RateDistortionModule does: the sync-free EntropyBottleneck forward
    m.train()
    net, aux = torch.optim.Adam(net_parameters(m), lr=1e-3), torch.optim.Adam(aux_parameters(m), lr=1e-3)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    step = FusedStep(m, RateDistortionLoss(0.01), net, aux, grad_clip=1.0, backend="eager")
    graphs, breaks, reasons = count_graph_breaks(step, torch.rand(2, 3, 64, 64))
    assert (graphs, breaks) == (1, 0), reasons
    # the traced step did the work: the network and the quantiles moved, Adam's state counts one step
    after = m.state_dict()
    assert not torch.equal(after["g_a.0.weight"], before["g_a.0.weight"])
    assert not torch.equal(after["entropy_bottleneck.quantiles"], before["entropy_bottleneck.quantiles"])
    assert float(aux.state[aux_parameters(m)[0]]["step"]) == 1.0 and all(p.grad is None for p in m.parameters())


def _losses(fused_step, steps, lr_schedule=True):
    """The loss of every step of a Lightning run of RateDistortionModule on a tiny factorized model."""
    torch.manual_seed(0)
    m = models.build({"name": "factorized", "N": 8, "M": 8})
    speed = apply_speed_settings(m, {"compile": fused_step})
    scheduler = {"name": "cosine", "warmup_steps": 0, "total_steps": steps, "final_ratio": 0.05}
    module = RateDistortionModule(m, 0.01, loss={"metric": "mse"}, fused_step=speed["step"],
                                  optim={"lr": 1e-3, "aux_lr": 1e-3, "grad_clip": 1.0,
                                         "scheduler": scheduler if lr_schedule else None})
    seen = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(float(outputs["loss"] if isinstance(outputs, dict) else outputs))

    g = torch.Generator().manual_seed(1)
    data = torch.rand(steps, 2, 3, 32, 32, generator=g)
    loader = DataLoader(TensorDataset(data), batch_size=None, collate_fn=lambda t: t[0])
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, callbacks=[Record()],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0)
    torch.manual_seed(2)  # the quantisation noise
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == steps  # one fused step is one Lightning step
    return seen, module


def test_fused_step_follows_the_eager_loss_sequence():  # 22 s on 2 idle cores (8 min while 6 jobs shared them)
    """aot_eager: the same traced joint graph inductor compiles (forward, backward, both Adam updates), run op by op,
    so the quantisation noise is eager's; the inductor kernels themselves are compared in the slow test below."""
    steps = 200
    eager, _ = _losses(False, steps)
    torch._dynamo.utils.counters.clear()
    fused, module = _losses("step:aot_eager", steps)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # compiled once: no recompile per lr
    assert len(fused) == len(eager) == steps
    assert fused[-1] < 0.8 * fused[0]  # it trained
    assert fused == pytest.approx(eager, rel=1e-4)
    # the scheduler drove the fused step's learning rate (a tensor input: no recompilation per step)
    assert module.optimizers()[0].optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.05)


@pytest.mark.slow
def test_fused_step_with_inductor_follows_eager():
    """inductor's own kernels (C++ on this CPU, minutes to build on 2 cores), with eager's random numbers."""
    steps = 20
    eager, _ = _losses(False, steps)
    with torch._inductor.config.patch(fallback_random=True):
        fused, _ = _losses("step", steps)
    assert fused == pytest.approx(eager, rel=1e-3)


def test_step_values_of_speed_compile():
    assert step_backend({"compile": "step"}) == "inductor"
    assert step_backend({"compile": "step:aot_eager"}) == "aot_eager"
    assert step_backend({"compile": True}) is None and step_backend({"compile": "inductor"}) is None
    m = models.build({"name": "factorized", "N": 8, "M": 8})
    info = apply_speed_settings(m, {"compile": "step"})
    assert info == {"channels_last": False, "compiled": [], "step": "inductor"}  # no part compiled on its own


def test_adaptive_stage_on_cached_latents_is_one_graph(tmp_path):
    """Stage 2 of the adaptive model trains on cached latents (data.latent_cache): its batch carries the crop size
    as Python ints, so the traced step has no tensor-to-int break (it had two)."""
    from compresslab.data.latent_cache import LatentDataset, collate_latents

    torch.manual_seed(0)
    base = models.build({"name": "factorized", "N": 8, "M": 8})
    base.update(force=True)
    torch.save({"state_dict": base.state_dict(), "compresslab": {"model": {"name": "factorized", "N": 8, "M": 8}}},
               tmp_path / "base.ckpt")
    m = models.build({"name": "adaptive", "N": 8, "M": 8, "base_ckpt": str(tmp_path / "base.ckpt")})
    entropy_models_in_fp32(m)
    m.train()
    data = LatentDataset(torch.randn(4, 8, 4, 4) * 3, (64, 64))
    batch = collate_latents([data[i] for i in range(2)])
    assert batch["image_hw"] == (64, 64) and batch["y"].shape == (2, 8, 4, 4)
    net, aux = torch.optim.Adam(net_parameters(m), lr=1e-3), torch.optim.Adam(aux_parameters(m), lr=1e-3)
    step = FusedStep(m, RateDistortionLoss(0.01), net, aux, grad_clip=1.0, backend="eager")
    graphs, breaks, reasons = count_graph_breaks(step, batch)
    assert (graphs, breaks) == (1, 0), reasons


def test_msp_fused_step_compiles_once():
    """MSP counts its parameter-network calls for the decode report; a Python int bumped inside the compiled step
    was a guard that failed every step: a recompilation per step (28 s each at N=64 on this CPU)."""
    torch.manual_seed(0)
    m = models.build({"name": "msp", "N": 8, "M": 8})
    entropy_models_in_fp32(m)
    m.train()
    net, aux = torch.optim.Adam(net_parameters(m), lr=1e-3), torch.optim.Adam(aux_parameters(m), lr=1e-3)
    step = FusedStep(m, RateDistortionLoss(0.01), net, aux, grad_clip=1.0, backend="eager")
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(3):
            step(torch.rand(1, 3, 128, 128))
    m.network_evaluations = 0
    m(torch.rand(1, 3, 128, 128))  # outside a compiled step it still counts
    assert m.network_evaluations > 0
