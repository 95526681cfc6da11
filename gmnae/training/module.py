"""What every gmnae LightningModule shares: the three steps, the optimiser, batch transfer, metric logging."""
from __future__ import annotations

import lightning as L
import torch

from ..data.shard_stream import Batch
from .optim import adamw_with_schedule


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

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device, non_blocking=True) if isinstance(batch, Batch) else batch
