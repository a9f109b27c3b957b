"""Training step time: our Lightning module vs a plain PyTorch loop (CompressAI examples/train.py style).

Same model class and initial weights, same batches (in memory, so data loading is not measured), same thread count,
same work per step (forward, RD loss, backward, clip 1.0, Adam step, aux loss backward + Adam step). The two are run
in alternating rounds in one process and the ratio of medians is reported. Usage:

    python benchmarks/train_step.py --model factorized --N 128 --M 192 --batch 8 --patch 256 --steps 10 --rounds 3
    python benchmarks/train_step.py --device cuda --batch 16 --steps 50 --rounds 5     # on a GPU (synchronised timing)
    python benchmarks/train_step.py --device cuda --precision bf16-mixed ...              # both loops in bf16 autocast
    python benchmarks/train_step.py --device cuda --channels-last --compile ...           # speed.* knobs, both loops
    python benchmarks/train_step.py --device cuda --sync-debug                            # where ours blocks the host
    python benchmarks/train_step.py --fused --model msp ...    # + speed.compile=step (one graph) vs the plain loop

Also reports images/s. On a GPU both loops see the batches already on the device and time with a synchronise at
both ends, so the ratio is the framework's per-step overhead, not data loading.
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning.pytorch as pl
import torch
from compressai.losses import RateDistortionLoss
from torch.utils.data import DataLoader, TensorDataset

from compresslab import models
from compresslab.training.speed import apply_speed_settings, to_memory_format
from compresslab.training.module import RateDistortionModule, aux_parameters, net_parameters


def sync_report(model, batches, lmbda, precision, channels_last, warm=2):
    """Run our loop with CUDA's sync debug mode on from step `warm` (set-up and the first steps excluded) and count
    the Python call sites that blocked the host. None means the host never waits for the GPU inside a step, so the
    framework's Python overlaps the GPU's work."""
    import collections
    import traceback
    import warnings

    sites = collections.Counter()
    shown = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return shown(message, category, filename, lineno, file, line)
        stack = [f for f in traceback.extract_stack()[:-1] if "warnings" not in f.filename
                 and "/torch/nn/modules/module.py" not in f.filename and "apply_func" not in f.filename]
        sites[" <- ".join(f"{f.filename.split('site-packages/')[-1].split('/src/')[-1]}:{f.lineno}"
                          for f in stack[-5:][::-1])] += 1

    class _Debug(pl.Callback):
        def on_train_batch_start(self, trainer, *a):
            if trainer.global_step == warm:
                torch.cuda.set_sync_debug_mode("warn")

        def on_train_end(self, *a):
            torch.cuda.set_sync_debug_mode(0)

    warnings.showwarning = record
    warnings.simplefilter("always")
    try:
        lightning_loop(model, batches, lmbda, "cuda", precision, channels_last, callbacks=[_Debug()])
    finally:
        torch.cuda.set_sync_debug_mode(0)
        warnings.showwarning = shown
    return sites, len(batches) - warm


def sync_free_plain(model):
    """The plain loop with our synchronisation-free EntropyBottleneck forward: the ratio then measures the framework
    alone, not the CompressAI forward we replace."""
    import types

    from compressai.entropy_models import EntropyBottleneck

    from compresslab.entropy.sync_free import eb_forward

    for m in model.modules():
        if type(m) is EntropyBottleneck:
            m.forward = types.MethodType(eb_forward, m)
    return model


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain_loop(model, batches, lmbda, device="cpu", precision="32-true", channels_last=False):
    model.to(device)
    batches = [to_memory_format(b.to(device), channels_last) for b in batches]
    opt = torch.optim.Adam(net_parameters(model), lr=1e-4)
    aux = torch.optim.Adam(aux_parameters(model), lr=1e-3)
    crit = RateDistortionLoss(lmbda=lmbda)
    model.train()
    _sync(device)
    t0 = time.perf_counter()
    for x in batches:
        opt.zero_grad()
        aux.zero_grad()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            out = crit(model(x), x)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        a = model.aux_loss()
        a.backward()
        aux.step()
    _sync(device)
    return (time.perf_counter() - t0) / len(batches)


def fused_loop(model, batches, lmbda, rounds, device="cpu"):
    """speed.compile=step's FusedStep (training/fused.py) on one model: the first step compiles (timed on its own),
    then ``rounds`` passes over the batches, seconds per step for each. One model throughout, so the graph is
    compiled once (a fresh model per round would be a recompilation per round)."""
    from compresslab.entropy.precision import entropy_models_in_fp32
    from compresslab.evaluation.losses import RateDistortionLoss
    from compresslab.training.fused import FusedStep

    model.to(device)
    batches = [b.to(device) for b in batches]  # on the device already, as in the other loops
    entropy_models_in_fp32(model)  # what RateDistortionModule does to every model
    model.train()
    opt = torch.optim.Adam(net_parameters(model), lr=1e-4)
    aux = torch.optim.Adam(aux_parameters(model), lr=1e-3)
    step = FusedStep(model, RateDistortionLoss(lmbda), opt, aux, grad_clip=1.0)
    t0 = time.perf_counter()
    step(batches[0])
    _sync(device)
    compile_s = time.perf_counter() - t0
    per_round = []
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        for x in batches:
            step(x)
        _sync(device)
        per_round.append((time.perf_counter() - t0) / len(batches))
    return compile_s, per_round


class _Timer(pl.Callback):
    def __init__(self, device: str):
        self.device = device

    def on_train_batch_start(self, *a):
        if not hasattr(self, "t0"):
            _sync(self.device)
            self.t0 = time.perf_counter()

    def on_train_end(self, *a):
        _sync(self.device)
        self.t1 = time.perf_counter()


def lightning_loop(model, batches, lmbda, device="cpu", precision="32-true", channels_last=False, callbacks=()):
    extra = {"channels_last": True} if channels_last else {}  # also runs against older modules (before/after)
    module = RateDistortionModule(model, lmbda, loss={"metric": "mse"},
                                  optim={"lr": 1e-4, "aux_lr": 1e-3, "grad_clip": 1.0, "scheduler": None}, **extra)
    timer = _Timer(device)
    trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_steps=len(batches), logger=False, callbacks=[timer, *callbacks],
                         precision=precision,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0)
    # The batches are on the device already, as in the plain loop: the ratio is the framework's per-step work, not
    # a host-to-device copy only one side makes (a pageable copy also blocks the host).
    loader = DataLoader(TensorDataset(torch.stack(batches).to(device)), batch_size=None,
                        collate_fn=lambda t: t[0])
    trainer.fit(module, train_dataloaders=loader)
    # Time from the first batch to the end of training (excludes Trainer set-up, which happens once per run).
    return (timer.t1 - timer.t0) / len(batches)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="factorized")
    p.add_argument("--N", type=int, default=128)
    p.add_argument("--M", type=int, default=192)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=("32-true", "bf16-mixed"), default="32-true",
                   help="both loops: autocast bf16 for the plain one, Lightning's bf16-mixed for ours")
    p.add_argument("--channels-last", action="store_true", help="speed.channels_last for both loops")
    p.add_argument("--compile", action="store_true", help="speed.compile for both loops (g_a/g_s/h_a/h_s, inductor)")
    p.add_argument("--fused", action="store_true",
                   help="also time speed.compile=step (the whole step as one inductor graph) against the plain loop")
    p.add_argument("--no-lightning", action="store_true", help="skip our Lightning module's loop (with --fused)")
    p.add_argument("--sync-debug", action="store_true", help="also list where our loop blocks the host (CUDA only)")
    p.add_argument("--plain-sync-free", action="store_true",
                   help="give the plain loop our synchronisation-free EntropyBottleneck forward too (framework cost "
                        "alone); default: CompressAI's stock forward, as examples/train.py runs it")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    init = models.build({"name": a.model, "N": a.N, "M": a.M}).state_dict()
    batches = [torch.rand(a.batch, 3, a.patch, a.patch) for _ in range(a.steps)]

    speed = {"channels_last": a.channels_last, "compile": a.compile}

    def fresh():
        m = models.build({"name": a.model, "N": a.N, "M": a.M})
        m.load_state_dict(init)
        apply_speed_settings(m, speed)
        return m

    cl = a.channels_last
    # warm-up (allocator, cuDNN autotuning, kernels; with --compile also the compilation, which is then cached)
    fresh_plain = (lambda: sync_free_plain(fresh())) if a.plain_sync_free else fresh
    plain_loop(fresh_plain(), batches[:3], 0.0067, a.device, a.precision, cl)
    ours_on = not a.no_lightning
    if ours_on:
        lightning_loop(fresh(), batches[:3], 0.0067, a.device, a.precision, cl)
    plain, ours = [], []
    for _ in range(a.rounds):
        plain.append(plain_loop(fresh_plain(), batches, 0.0067, a.device, a.precision, cl))
        if ours_on:
            ours.append(lightning_loop(fresh(), batches, 0.0067, a.device, a.precision, cl))
    fused = fused_loop(fresh(), batches, 0.0067, a.rounds, a.device) if a.fused else None
    mp = statistics.median(plain)
    mo = statistics.median(ours) if ours_on else float("nan")
    dev = torch.cuda.get_device_name() if a.device == "cuda" else f"cpu, {a.threads} threads"
    print(f"model={a.model}({a.N},{a.M}) batch={a.batch} patch={a.patch} device={dev} "
          f"steps={a.steps} rounds={a.rounds} precision={a.precision} channels_last={cl} compile={a.compile} "
          f"plain={'sync-free EntropyBottleneck' if a.plain_sync_free else 'stock CompressAI'}")
    print(f"plain PyTorch loop : {mp:.4f} s/step, {a.batch / mp:.1f} images/s  "
          f"(rounds: {', '.join(f'{v:.4f}' for v in plain)})")
    if ours_on:
        print(f"CompressLab module : {mo:.4f} s/step, {a.batch / mo:.1f} images/s  "
              f"(rounds: {', '.join(f'{v:.4f}' for v in ours)})")
        print(f"ratio ours/plain   : {mo / mp:.3f}")
    if fused is not None:
        compile_s, rounds = fused
        mf = statistics.median(rounds)
        print(f"fused step (speed.compile=step): {mf:.4f} s/step, {a.batch / mf:.1f} images/s  "
              f"(rounds: {', '.join(f'{v:.4f}' for v in rounds)}); first step (compilation) {compile_s:.1f} s")
        print(f"ratio fused/plain  : {mf / mp:.3f}")
        saved = mp - mf
        print(f"compilation paid back after: "
              f"{f'{compile_s / saved:.0f} steps' if saved > 0 else 'never (the fused step is not faster)'}")
    if a.sync_debug and a.device == "cuda":
        sites, n = sync_report(fresh(), batches[:12], 0.0067, a.precision, cl)
        print(f"host-blocking calls in our loop over {n} steps (after 2): {sum(sites.values())}")
        for site, n in sites.most_common(12):
            print(f"  {n:4d}x {site}")


if __name__ == "__main__":
    main()
