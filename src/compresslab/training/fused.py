"""speed.compile=step: the whole training step (forward, RD loss, backward, gradient clipping, the network's Adam step,
aux loss, its backward and the quantiles' Adam step) as one torch.compile graph.

Why not ``loss.backward(); opt.step()`` inside the compiled function: dynamo traces ``backward()`` (with
``trace_autograd_ops``) as ``autograd.grad`` plus a write of ``p.grad``, and an optimizer's ``step`` graph-breaks on
a parameter whose ``.grad`` the graph has written (and on ``_use_grad``'s explicit breaks). So the step takes the
gradients from ``torch.autograd.grad`` and applies ``torch.optim.adam.adam``, the functional update ``Adam.step``
itself calls, on the optimizer's own state tensors: the optimizer's state_dict (checkpoints, resume) is unchanged,
``p.grad`` stays None. The learning rate enters as a tensor argument, so a scheduler never triggers a recompile.

Random numbers: inductor draws the quantisation noise with its own generator (same distribution, other values);
``torch._inductor.config.fallback_random = True`` draws eager's exact noise (tests/test_fused_step.py).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.optim.adam import adam as adam_update

from compresslab.errors import NonFiniteLossError
from compresslab.training.speed import inductor_options, to_memory_format


def _adam_state(opt: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Per param group: its parameters, Adam's state tensors (created now, as ``Adam._init_group`` would lazily on
    the first step, unless a resumed checkpoint brought them) and its constant hyperparameters."""
    if not isinstance(opt, torch.optim.Adam):
        raise ValueError(f"speed.compile=step applies Adam's update itself; optimizer {type(opt).__name__} is not "
                         f"Adam/AdamW: use optim.name=adam|adamw or speed.compile=false")
    groups = []
    for group in opt.param_groups:
        if group["fused"] or group["differentiable"]:
            raise ValueError("speed.compile=step needs Adam with fused=False, differentiable=False")
        params = [p for p in group["params"] if p.requires_grad]
        for p in params:
            state = opt.state[p]
            if len(state) == 0:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st = [opt.state[p] for p in params]
        groups.append({
            "params": params, "exp_avgs": [s["exp_avg"] for s in st], "exp_avg_sqs": [s["exp_avg_sq"] for s in st],
            "max_exp_avg_sqs": [s["max_exp_avg_sq"] for s in st] if group["amsgrad"] else [],
            "steps": [s["step"] for s in st],
            "hyper": {"amsgrad": group["amsgrad"], "beta1": group["betas"][0], "beta2": group["betas"][1],
                      "weight_decay": group["weight_decay"], "eps": group["eps"], "maximize": group["maximize"],
                      "decoupled_weight_decay": group.get("decoupled_weight_decay", False)}})
    return groups


def _apply_adam(groups: list[dict[str, Any]], grads: list[Tensor | None], lrs: Tensor) -> None:
    """Adam's update for every parameter that received a gradient (Adam skips the others, so does this)."""
    i = 0
    for g, group in enumerate(groups):
        keep = [j for j, grad in enumerate(grads[i:i + len(group["params"])]) if grad is not None]
        mine = grads[i:i + len(group["params"])]
        i += len(group["params"])
        if not keep:
            continue
        pick = lambda name: [group[name][j] for j in keep] if group[name] else []  # noqa: E731
        adam_update(pick("params"), [mine[j] for j in keep], pick("exp_avgs"), pick("exp_avg_sqs"),
                    pick("max_exp_avg_sqs"), pick("steps"), foreach=False, capturable=False, differentiable=False,
                    fused=None, has_complex=False, lr=lrs[g], **group["hyper"])


def _clip_(grads: list[Tensor | None], max_norm: float) -> None:
    """torch.nn.utils.clip_grad_norm_ (what Lightning's clip_gradients calls) on a gradient list, in place."""
    present = [g for g in grads if g is not None]
    if not present:
        return
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(present, 2.0)), 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    torch._foreach_mul_(present, coef)


class FusedStep:
    """``step(batch)`` -> (loss terms detached, aux loss detached), having updated the model and both optimizers'
    state. ``net_opt``/``aux_opt`` are the raw torch optimizers; their param groups' ``lr`` is read every call."""

    def __init__(self, model: nn.Module, criterion: Callable, net_opt: torch.optim.Optimizer,
                 aux_opt: torch.optim.Optimizer | None, grad_clip: float | None, backend: str = "inductor"):
        self.model, self.criterion, self.grad_clip = model, criterion, float(grad_clip) if grad_clip else None
        self.net_opt, self.aux_opt = net_opt, aux_opt
        self.net = _adam_state(net_opt)
        aux_params = {id(p) for p in model.parameters()}
        # build_optimizers gives a model without entropy bottlenecks a placeholder aux parameter: nothing to train
        self.aux = _adam_state(aux_opt) if aux_opt is not None and any(
            id(p) in aux_params for g in aux_opt.param_groups for p in g["params"]) else []
        self.backend = backend
        params = next(model.parameters(), None)
        options = inductor_options(model, params is None or params.device.type == "cpu") \
            if backend == "inductor" else None
        self.compiled = torch.compile(self.eager_step, backend=backend, fullgraph=False,
                                      **({"options": options} if options else {})) if backend != "none" \
            else self.eager_step

    def eager_step(self, batch: Any, net_lr: Tensor, aux_lr: Tensor) -> tuple[dict[str, Tensor], Tensor, int]:
        """The step's arithmetic, uncompiled (what the compiled graph computes)."""
        losses, batch_size = self.model.training_losses(batch, self.criterion)
        net_params = [p for g in self.net for p in g["params"]]
        grads = list(torch.autograd.grad(losses["loss"], net_params, allow_unused=True))
        with torch.no_grad():
            if self.grad_clip:
                _clip_(grads, self.grad_clip)
            _apply_adam(self.net, grads, net_lr)
        aux_loss = self.model.aux_loss()
        if self.aux and torch.is_tensor(aux_loss) and aux_loss.requires_grad:
            aux_params = [p for g in self.aux for p in g["params"]]
            aux_grads = list(torch.autograd.grad(aux_loss, aux_params, allow_unused=True))
            with torch.no_grad():
                _apply_adam(self.aux, aux_grads, aux_lr)
        aux_loss = aux_loss.detach() if torch.is_tensor(aux_loss) else torch.zeros(())
        return {k: v.detach() for k, v in losses.items()}, aux_loss, batch_size

    @staticmethod
    def _lrs(opt: torch.optim.Optimizer | None) -> Tensor:
        # float64: Adam's update divides the lr in double precision when it is a Python float
        # on the parameters' device: a CPU tensor among a CUDA graph's inputs failed inductor's kernel launch
        device = opt.param_groups[0]["params"][0].device if opt and opt.param_groups[0]["params"] else None
        return torch.tensor([float(g["lr"]) for g in opt.param_groups] if opt else [0.0], dtype=torch.float64,
                            device=device)

    def __call__(self, batch: Any) -> tuple[dict[str, Tensor], Tensor, int]:
        with torch._dynamo.config.patch(trace_autograd_ops=True):
            return self.compiled(batch, self._lrs(self.net_opt), self._lrs(self.aux_opt))


def count_graph_breaks(step: FusedStep, batch: Any) -> tuple[int, int, list[str]]:
    """(graphs, graph breaks, reasons) of tracing ``step`` on ``batch`` (torch._dynamo.explain: it runs the step
    once, eagerly op by op, so the model and optimizers advance by one step)."""
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        ex = torch._dynamo.explain(step.eager_step)(batch, step._lrs(step.net_opt), step._lrs(step.aux_opt))
    return ex.graph_count, ex.graph_break_count, [str(r.reason).splitlines()[0] for r in ex.break_reasons]


def fused_training_step(module, batch: Any, batch_idx: int) -> Tensor:
    """RateDistortionModule.training_step under speed.compile=step."""
    net_opt, aux_opt = module.optimizers()
    if module._fused is None:
        trainer = module._trainer
        if trainer is not None and (trainer.world_size > 1 or str(trainer.precision) != "32-true"):
            raise ValueError(f"speed.compile=step runs on one device in trainer.precision=32-true (this run: "
                             f"{trainer.world_size} processes, precision {trainer.precision}): its gradients bypass "
                             f"DDP's all-reduce and autocast; use speed.compile=false or true there")
        module._fused = FusedStep(module.model, module.criterion, net_opt.optimizer, aux_opt.optimizer,
                                  module.optim_cfg.get("grad_clip"), backend=module.fused_step)
    batch = to_memory_format(batch, module.channels_last)
    out = []
    # Through LightningOptimizer.step, so Lightning counts the step and runs its hooks; the closure updates the
    # weights, and Adam.step afterwards finds no .grad (the fused step never writes one) and changes nothing.
    net_opt.step(closure=lambda: out.append(module._fused(batch)))
    losses, aux_loss, batch_size = out[0]
    if not bool(torch.isfinite(losses["loss"])):
        raise NonFiniteLossError(
            f"non-finite training loss ({losses['loss'].item()}) at global step {module.global_step - 1} (batch "
            f"{batch_idx}); speed.compile=step applied it to the weights in memory only, no checkpoint was written "
            f"from it. Resume from the last checkpoint with a lower optim.lr or check the input data")
    return module._after_step(losses, aux_loss, net_opt, batch_size)


