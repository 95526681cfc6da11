"""Resuming from an end-of-epoch checkpoint: every epoch trains all its batches, in its own order, once."""
import os
import signal
import subprocess
import sys

import pytest
import torch

from gmnae.commands import train as train_module
from gmnae.cli import main
from gmnae.data.datamodule import ZooDataModule

from .conftest import REPO, tiny_overrides
from .instrumented import instrumented, read_batch_log

BATCH = 8
LIMIT = 4  # batches per epoch (of 10): an epoch's end is what matters, not its length


def _epoch_batches(zoo, epoch: int) -> list[list[int]]:
    """The batches epoch `epoch` of an uninterrupted run trains (seed 0, the run's batch size)."""
    stream = ZooDataModule(str(zoo.root), batch_size=BATCH)._stream("train", True)
    stream.set_epoch(epoch)
    return [b.index.tolist() for b in stream][:LIMIT]


def _check_epochs(zoo, log, epochs: int) -> None:
    trained = read_batch_log(log)
    assert sorted(trained) == list(range(epochs))
    for e in range(epochs):
        rows = [r for batch in trained[e] for r in batch]
        assert len(rows) == len(set(rows)), f"epoch {e} trained a network twice"
        assert trained[e] == _epoch_batches(zoo, e), f"epoch {e} is not the uninterrupted run's epoch {e}"


def _overrides(zoo, runs, name, epochs):
    return tiny_overrides(zoo.root, runs, run_name=name, **{"trainer.max_epochs": epochs,
                                                            "trainer.limit_train_batches": LIMIT,
                                                            "data.batch_size": BATCH})


def test_extending_a_finished_run_trains_every_new_epoch(digits_inr_zoo, tmp_path, monkeypatch):
    log = tmp_path / "batches.jsonl"
    monkeypatch.setenv("GMNAE_TEST_BATCH_LOG", str(log))
    monkeypatch.setattr(train_module, "build_trainer", instrumented(train_module.build_trainer))
    assert main(["train", *_overrides(digits_inr_zoo, tmp_path, "extend", 1)]) == 0
    assert main(["train", "--resume", str(tmp_path / "extend"), "trainer.max_epochs=3"]) == 0
    last = torch.load(tmp_path / "extend" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 3 * LIMIT
    _check_epochs(digits_inr_zoo, log, 3)


# The last checkpoint before the kill: epoch 0's validation checkpoint; or, with no validation after
# epoch 0, the step checkpoint written on epoch 0's last batch.
@pytest.mark.parametrize("settings", [[], ["trainer.check_val_every_n_epoch=2", f"checkpoint.every_n_train_steps={LIMIT}"]],
                         ids=["validation-checkpoint", "step-checkpoint-on-last-batch"])
def test_sigkill_after_epoch_end_checkpoint_then_resume(digits_inr_zoo, tmp_path, monkeypatch, settings):
    log = tmp_path / "batches.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GMNAE_TEST_BATCH_LOG": str(log), "GMNAE_TEST_SIGKILL_AT_EPOCH": "1"}
    env.pop("GMNAE_RUN_DIR", None)
    proc = subprocess.run([sys.executable, "-m", "tests.training.instrumented", "train",
                           *_overrides(digits_inr_zoo, tmp_path, "killed", 3), *settings],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == LIMIT  # epoch 0's end
    monkeypatch.setenv("GMNAE_TEST_BATCH_LOG", str(log))
    monkeypatch.setattr(train_module, "build_trainer", instrumented(train_module.build_trainer))
    assert main(["train", "--resume", str(tmp_path / "killed")]) == 0
    assert torch.load(last, weights_only=False)["global_step"] == 3 * LIMIT
    _check_epochs(digits_inr_zoo, log, 3)
