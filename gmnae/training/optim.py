"""The optimiser every LightningModule of gmnae uses: AdamW, linear warm-up, then constant or cosine."""
from __future__ import annotations

import math

import lightning as L
import torch


def adamw_with_schedule(module: L.LightningModule, o: dict) -> dict:
    """`configure_optimizers` result for `module` from the `optim` config group."""
    opt = torch.optim.AdamW(module.parameters(), lr=o.get("lr", 1e-3), weight_decay=o.get("weight_decay", 0.01))
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
