"""The optimiser every LightningModule of gmnae uses: AdamW (torch's fused kernel where it applies), linear warm-up,
then constant or cosine."""
from __future__ import annotations

import math

import lightning as L
import torch


def adamw_with_schedule(module: L.LightningModule, o: dict) -> dict:
    """`configure_optimizers` result for `module` from the `optim` config group."""
    opt = adamw(module.parameters(), module.trainer.precision, lr=o.get("lr", 1e-3),
                weight_decay=o.get("weight_decay", 0.01))
    warmup = int(o.get("warmup_steps", 0))
    total = max(int(module.trainer.estimated_stepping_batches), 1)
    schedule, floor = o.get("schedule", "constant"), o.get("min_lr_ratio", 0.05)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "cosine":
            t = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def adamw(params, precision, lr: float = 1e-3, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW over `params` as every gmnae module steps it under `precision` (the benchmarks build theirs here too)."""
    params = list(params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused_adamw_applies(params, precision))


def fused_adamw_applies(params, precision) -> bool:
    """torch's fused AdamW (one kernel over all parameters; on CPU 4.5 ms a step instead of 17-20 for the 4.7M
    parameters of `scalegmn-cnn`) where every parameter is a floating tensor on CPU or CUDA and no fp16
    GradScaler runs: a fused step unscales inside, where Lightning could not clip first (bf16 has no scaler:
    `WeightSpaceModule.configure_gradient_clipping` clips for it)."""
    params = list(params)
    fp16 = "16" in str(precision) and "bf16" not in str(precision)
    return (bool(params) and not fp16
            and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params))


def clip_gradients(optimizer: torch.optim.Optimizer, value: float, algorithm: str | None) -> None:
    """Clip every parameter's gradient of `optimizer` by norm (default) or by value, as Lightning does."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if algorithm == "value":
        torch.nn.utils.clip_grad_value_(params, value)
    else:
        torch.nn.utils.clip_grad_norm_(params, value)
