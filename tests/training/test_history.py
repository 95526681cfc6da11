"""A run's history survives: resumes append to its logs, validations and failed resumes leave it as it was."""
import csv
import json
import shutil

import pytest
import torch

from gmnae.cli import main
from gmnae.config.load import load_config
from gmnae.commands.train import train

from .conftest import tiny_overrides


@pytest.fixture(scope="module")
def finished_run(digits_inr_zoo, tmp_path_factory):
    """One epoch of 3 steps; each test works on its own copy."""
    runs = tmp_path_factory.mktemp("runs")
    return train(load_config(tiny_overrides(digits_inr_zoo.root, runs, run_name="run", **{"trainer.max_epochs": 1})))


@pytest.fixture
def run(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / "run")


def _snapshot(run_dir) -> dict:
    """Every file of the run folder and its bytes."""
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _logged_steps(run_dir, key="train/loss_step") -> list[int]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get(key)]


def test_resume_appends_to_the_metrics_csv(run):
    assert _logged_steps(run) == [0, 1, 2]
    assert main(["train", "--resume", str(run), "trainer.max_epochs=2"]) == 0
    assert _logged_steps(run) == [0, 1, 2, 3, 4, 5]  # the first run's rows are still there


def test_failed_resume_on_truncated_checkpoint_changes_nothing(run, capsys):
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "trainer.max_epochs=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "last.ckpt is damaged or truncated" in err and len(err.splitlines()) == 1
    assert _snapshot(run) == before


def test_resume_with_another_model_fails_in_one_line_and_changes_nothing(run, capsys):
    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "model.encoder.latent_dim=24"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot resume from {run / 'checkpoints' / 'last.ckpt'}" in err and len(err.splitlines()) == 1
    assert _snapshot(run) == before


def test_validate_writes_its_own_folder_and_the_run_resumes_after(run, digits_inr_zoo):
    before = _snapshot(run)
    ckpt = run / "checkpoints" / "last.ckpt"
    overrides = tiny_overrides(digits_inr_zoo.root, run.parent, run_name="run")
    assert main(["train", *overrides, "mode=validate", f"ckpt_path={ckpt}"]) == 0
    (folder,) = run.glob("validate-last-*")
    assert "val/loss" in json.loads((folder / "validate_metrics.json").read_text())
    assert "mode: validate" in (folder / "config.yaml").read_text()
    assert {k: v for k, v in _snapshot(run).items() if not str(k).startswith("validate-")} == before
    assert main(["train", "--resume", str(run), "trainer.max_epochs=2"]) == 0  # still trains
    assert torch.load(ckpt, weights_only=False)["global_step"] == 6
