"""Real multi-process runs on CPU (gloo): Lightning-launched DDP, torchrun, SIGTERM and resume."""
import json
import os
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch

from .conftest import REPO, gmnae_cmd, run_cmd, tiny_overrides

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def _val_metrics(run_dir, extra):
    """Metrics of a validation, from the folder of its own it writes beside the run."""
    before = set(run_dir.glob("validate-*"))
    run_cmd(gmnae_cmd("train", *extra, "mode=validate"))
    (folder,) = set(run_dir.glob("validate-*")) - before
    return json.loads((folder / "validate_metrics.json").read_text())


def test_ddp_two_processes_train_and_reduce_like_one(digits_cnn_zoo, tmp_path):
    base = tiny_overrides(digits_cnn_zoo.root, tmp_path, "digits-cnn", run_name="ddp")
    proc = run_cmd(gmnae_cmd("train", *base, *DDP))
    run_dir = tmp_path / "ddp"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.exists(), proc.stdout
    assert torch.load(ckpt, weights_only=False)["global_step"] == 6  # 2 epochs x 3 batches, in lockstep
    # Validation of one fixed checkpoint: 2 processes (each half the networks, padded) == 1 process.
    common = [*base, f"ckpt_path={ckpt}", "trainer.limit_val_batches=null"]
    one = _val_metrics(run_dir, [*common, "trainer.devices=1"])
    two = _val_metrics(run_dir, [*common, *DDP])
    assert one.keys() == two.keys() and "val/loss" in one
    for k in one:
        assert two[k] == pytest.approx(one[k], rel=1e-5, abs=1e-6), k


def test_torchrun_two_processes(digits_inr_zoo, tmp_path):
    base = tiny_overrides(digits_inr_zoo.root, tmp_path, run_name="torchrun")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]
    run_cmd(gmnae_cmd("train", *base, *DDP, launcher=torchrun))
    ckpt = tmp_path / "torchrun" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 6
    assert (tmp_path / "torchrun" / "config.yaml").exists()


def test_sigterm_mid_epoch_then_resume(digits_inr_zoo, tmp_path):
    base = tiny_overrides(digits_inr_zoo.root, tmp_path, run_name="killed", **{
        "trainer.max_epochs": 50, "trainer.limit_train_batches": "null", "data.batch_size": 4,
        "checkpoint.every_n_train_steps": 2})
    run_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(gmnae_cmd("train", *base), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 180
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.exists(), proc.communicate()[0][-3000:]
    time.sleep(1.0)  # let it get further into the epoch than the periodic checkpoint
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    stopped = torch.load(last, weights_only=False)
    step = stopped["global_step"]
    assert f"interrupted at step {step}" in out  # the checkpoint holds the very step it stopped at
    assert step > 0
    per_epoch = digits_inr_zoo.count("train") // 4
    # where it stopped: the epoch resume starts in and the batches of it already done (a stop after an
    # epoch's last batch -- in its validation or between epochs -- names the next epoch, 0 done)
    state = stopped["ZooDataModule"]
    done = state["train_batches_done"]
    assert state["train_epoch"] * per_epoch + done == step and 0 <= done < per_epoch
    # Resume with other checkpoint settings (last.ckpt every step): last.ckpt still names the newest state.
    proc = run_cmd(gmnae_cmd("train", "--resume", str(run_dir), f"trainer.max_steps={step + 3}",
                             "checkpoint.every_n_train_steps=1"))
    assert "Restored all states from the checkpoint" in proc.stdout + proc.stderr
    resumed = torch.load(last, weights_only=False)
    assert resumed["global_step"] == step + 3  # exactly three more optimizer steps: nothing repeated or lost
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]


class _SigtermAtFirstEpochEnd(L.Callback):
    """Sends this process SIGTERM as epoch 0 ends: Lightning stops after the epoch counter advanced."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_between_epochs_then_resume(digits_inr_zoo, tmp_path, monkeypatch):
    from gmnae.commands import train as train_module
    from gmnae.cli import main
    from gmnae.config.load import load_config

    base = tiny_overrides(digits_inr_zoo.root, tmp_path, run_name="between", **{
        "trainer.max_epochs": 3, "trainer.limit_train_batches": "null", "data.batch_size": 16})
    build = train_module.build_trainer
    monkeypatch.setattr(train_module, "build_trainer",
                        lambda cfg, run_dir, extra=(): build(cfg, run_dir, (*extra, _SigtermAtFirstEpochEnd())))
    with pytest.raises(SystemExit) as stop:
        train_module.train(load_config(base))
    assert stop.value.code == 143
    monkeypatch.undo()
    last = tmp_path / "between" / "checkpoints" / "last.ckpt"
    stopped = torch.load(last, weights_only=False)
    per_epoch = digits_inr_zoo.count("train") // 16
    assert stopped["global_step"] == per_epoch and stopped["epoch"] == 1
    assert stopped["ZooDataModule"] == {"train_epoch": 1, "train_batches_done": 0}  # the next epoch starts fresh
    assert main(["train", "--resume", str(tmp_path / "between"), f"trainer.max_steps={per_epoch + 3}",
                 "checkpoint.every_n_train_steps=1"]) == 0
    assert torch.load(last, weights_only=False)["global_step"] == per_epoch + 3


def test_a_finished_run_closes_its_process_group(tmp_path):
    """`gmnae train` ends a DDP run's process group itself: left to interpreter exit, gloo's threads could
    abort a finished run (exit -6). A one-process gloo group stands in for a rank."""
    import torch.distributed as dist

    from gmnae.commands.train import _close_process_group

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    _close_process_group()
    assert not dist.is_initialized()
    _close_process_group()  # nothing to close: no error
