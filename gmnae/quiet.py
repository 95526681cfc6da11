"""Lightning's tips and the warnings that are known to be harmless for gmnae runs, kept off users' screens.

Each one is here because gmnae does what it warns about on purpose; anything else still prints.
"""
from __future__ import annotations

import logging
import warnings

HARMLESS = (
    # ZooDataModule.state_dict records how far into an epoch a checkpoint was written; resume skips those
    # batches, which Lightning's check of the loader itself cannot see.
    ".*your dataloader is not resumable.*",
    # ShardStream gives every worker the same number of batches, so its __len__ is exact.
    ".*Your `IterableDataset` has `__len__` defined.*",
    # Batches move to the device in the LightningModule on purpose (one Batch type, pinned memory).
    ".*You have overridden `transfer_batch_to_device` in `LightningModule`.*",
    # A resumed run writes into its own checkpoints folder.
    ".*Checkpoint directory .* exists and is not empty.*",
    # Streaming reads from HDF5 shards; workers are a setting (data.num_workers), 0 is a fine default on CPU.
    ".*does not have many workers.*",
    # Inside Lightning, not ours to fix.
    ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
)


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    for message in HARMLESS:
        warnings.filterwarnings("ignore", message=message)
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in log.filters):
        log.addFilter(_NoTips())
