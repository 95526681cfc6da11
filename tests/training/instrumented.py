"""Real `gmnae` runs with test instruments plugged into the Trainer, set by environment variables:

    GMNAE_TEST_BATCH_LOG=FILE        append every training batch as a JSON line {"epoch": e, "rows": [...]}
    GMNAE_TEST_SIGKILL_AT_EPOCH=K    SIGKILL this process as epoch K starts, i.e. right after epoch K-1's
                                     validation checkpoint (what an OOM kill or a crash leaves behind)

In a subprocess: `python -m tests.training.instrumented train ...`; in the test process:
`monkeypatch.setattr(gmnae.commands.train, "build_trainer", instrumented(gmnae.commands.train.build_trainer))`.
"""
from __future__ import annotations

import json
import os
import signal
import sys

import lightning as L


class BatchLog(L.Callback):
    def __init__(self, path: str):
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with open(self.path, "a") as f:
            f.write(json.dumps({"epoch": trainer.current_epoch, "rows": batch.index.tolist()}) + "\n")


class SigkillAtEpoch(L.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def callbacks_from_env() -> list[L.Callback]:
    out = []
    if os.environ.get("GMNAE_TEST_BATCH_LOG"):
        out.append(BatchLog(os.environ["GMNAE_TEST_BATCH_LOG"]))
    if os.environ.get("GMNAE_TEST_SIGKILL_AT_EPOCH"):
        out.append(SigkillAtEpoch(int(os.environ["GMNAE_TEST_SIGKILL_AT_EPOCH"])))
    return out


def instrumented(build_trainer):
    def build(cfg, run_dir, callbacks_extra=()):
        return build_trainer(cfg, run_dir, (*callbacks_extra, *callbacks_from_env()))
    return build


def read_batch_log(path) -> dict[int, list[list[int]]]:
    """Epoch -> the batches (lists of rows) trained in it, in order."""
    epochs: dict[int, list[list[int]]] = {}
    for line in open(path):
        entry = json.loads(line)
        epochs.setdefault(entry["epoch"], []).append(entry["rows"])
    return epochs


if __name__ == "__main__":
    from gmnae.commands import train
    from gmnae.cli import main

    train.build_trainer = instrumented(train.build_trainer)
    sys.exit(main(sys.argv[1:]))
