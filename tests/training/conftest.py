import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def gmnae_cmd(*args, launcher=None):
    """Command line running `gmnae` in a fresh Python (Lightning's DDP launcher re-runs it per rank)."""
    return [*(launcher or [sys.executable]), "-m", "gmnae", *args]


def run_cmd(cmd, timeout=240, cwd=None, env=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("GMNAE_RUN_DIR", None)
    proc = subprocess.run(cmd, cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def tiny_overrides(zoo, runs, dataset="digits-inr", **extra):
    """A few steps of a small model on a fixture zoo (no evaluation callback unless asked)."""
    kw = {"dataset.zoo": str(zoo), "runs_dir": str(runs), "model.encoder.d": 16, "model.encoder.n_layers": 2,
          "model.encoder.latent_dim": 16, "model.decoder.hidden": "[32,64]", "data.batch_size": 8,
          "trainer.max_epochs": 2, "trainer.limit_train_batches": 3, "trainer.limit_val_batches": 2,
          "trainer.enable_progress_bar": "false", "trainer.log_every_n_steps": 1, "evaluation.enabled": "false",
          "optim.warmup_steps": 2, **extra}
    return [f"dataset={dataset}"] + [f"{k}={v}" for k, v in kw.items()]
