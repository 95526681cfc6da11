"""What every gmnae LightningModule shares: the three steps, the optimiser, batch transfer, metric logging."""
from __future__ import annotations

import lightning as L
import torch

from ..data.shard_stream import Batch
from .optim import adamw_with_schedule, clip_gradients


class WeightSpaceModule(L.LightningModule):
    """Subclasses set `self.metrics` (a ModuleDict of `<stage>_<name>` metrics) and `self.optim_cfg`, and
    implement `_step(batch, stage) -> loss`."""

    def log_stage_metrics(self, stage: str, batch_size: int, prog_bar=lambda key: True) -> None:
        for key, metric in self.metrics.items():
            if key.startswith(stage):
                self.log(f"{stage}/{key[len(stage) + 1:]}", metric, on_step=stage == "train", on_epoch=True,
                         prog_bar=prog_bar(key), batch_size=batch_size)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        return adamw_with_schedule(self, self.optim_cfg)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Lightning's mixed-precision plugin refuses to clip for a fused optimizer (a guard for fp16's GradScaler,
        # which a fused step unscales inside); under bf16 there is no scaler, so the gradients are clipped here
        opt = getattr(optimizer, "_optimizer", optimizer)
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if gradient_clip_val and scaler is None and opt.defaults.get("fused"):
            clip_gradients(opt, gradient_clip_val, gradient_clip_algorithm)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device, non_blocking=True) if isinstance(batch, Batch) else batch
