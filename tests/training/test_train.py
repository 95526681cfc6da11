"""Training end to end: smoke runs, checkpoints and logs, end-to-end invariance, bad input."""
import shutil

import h5py
import pytest
import torch

from gmnae.training.autoencoder import WeightSpaceAutoencoder
from gmnae.cli import main
from gmnae.config.load import load_config
from gmnae.commands.train import train
from gmnae.weightspace import random_transform
from gmnae.weightspace.registry import code_of

from .conftest import tiny_overrides


@pytest.fixture(scope="module")
def inr_run(digits_inr_zoo, tmp_path_factory):
    return train(load_config(tiny_overrides(digits_inr_zoo.root, tmp_path_factory.mktemp("runs"))))


@pytest.fixture(scope="module")
def cnn_run(digits_cnn_zoo, tmp_path_factory):
    return train(load_config(tiny_overrides(digits_cnn_zoo.root, tmp_path_factory.mktemp("runs"), "digits-cnn")))


@pytest.mark.parametrize("run", ["inr_run", "cnn_run"])
def test_smoke_run_writes_config_checkpoints_and_logs(request, run):
    run_dir = request.getfixturevalue(run)
    assert (run_dir / "config.yaml").exists()
    ckpts = {p.name for p in (run_dir / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    csv = (run_dir / "csv" / "metrics.csv").read_text()
    assert "val/loss" in csv and "train/loss_step" in csv
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 6


def test_cnn_run_logs_distillation_metrics(cnn_run):
    csv = (cnn_run / "csv" / "metrics.csv").read_text()
    for key in ("val/accuracy", "val/teacher_accuracy", "val/agreement"):
        assert key in csv


@pytest.mark.parametrize("run,fixture,kinds", [("inr_run", "trained_sirens", "PD"),
                                               ("cnn_run", "trained_relu_cnns", "PS"),
                                               ("cnn_run", "trained_tanh_cnns", "PD")])
def test_trained_model_latent_is_invariant(request, run, fixture, kinds):
    run_dir = request.getfixturevalue(run)
    model = WeightSpaceAutoencoder.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt").double().eval()
    arch, params = request.getfixturevalue(fixture)
    moved = random_transform(arch, params, kinds, generator=torch.Generator().manual_seed(3))
    codes = torch.full((len(params),), code_of(arch.activation))
    with torch.no_grad():
        z, z_moved = model.encode(params, codes), model.encode(moved, codes)
        z_noisy = model.encode(params + 0.01 * params.std() * torch.randn_like(params), codes)
    rel = ((z_moved - z).norm(dim=1) / z.norm(dim=1)).max()
    assert rel < 1e-6
    assert ((z_noisy - z).norm(dim=1) / z.norm(dim=1)).min() > 100 * rel


def test_checkpoint_saved_before_the_renames_loads(inr_run, trained_sirens, tmp_path):
    """A checkpoint written before "kind" got its own words (the autoencoder's `family`, a layer's
    `layer_type`, the decoder's `type`) loads, and computes exactly what the same weights saved today compute."""
    ckpt = torch.load(inr_run / "checkpoints" / "last.ckpt", weights_only=False)
    hp = ckpt["hyper_parameters"]
    assert hp.pop("family") == "siren"
    hp["kind"] = "inr"  # the family's name before one vocabulary
    for layer in hp["arch"]["layers"]:
        layer["kind"] = layer.pop("layer_type")
    hp["decoder"]["kind"] = hp["decoder"].pop("type")  # model.decoder.kind, now model.decoder.type
    torch.save(ckpt, tmp_path / "old.ckpt")
    old = WeightSpaceAutoencoder.load_from_checkpoint(tmp_path / "old.ckpt").eval()
    new = WeightSpaceAutoencoder.load_from_checkpoint(inr_run / "checkpoints" / "last.ckpt").eval()
    assert old.family.name == "siren" and old.hparams["family"] == "siren" and "kind" not in old.hparams
    assert old.arch == new.arch and [l.layer_type for l in old.arch.layers] == ["dense"] * 3
    params = trained_sirens[1].float()
    with torch.no_grad():
        assert torch.equal(old(params), new(params))


def test_unknown_dataset(capsys):
    assert main(["train", "dataset=nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no dataset config named 'nope'" in err and "digits-inr" in err and len(err.splitlines()) == 1


def test_bad_override_syntax(capsys):
    assert main(["train", "optim.lr"]) == 2
    assert "not key=value" in capsys.readouterr().err
    assert main(["train", "optimm.lr=1"]) == 2
    assert "unknown config key 'optimm'" in capsys.readouterr().err


def test_missing_imported_zoo_names_the_import_command(tmp_path, capsys):
    assert main(["train", "dataset=cifar10-cnn", f"dataset.zoo={tmp_path}/cifar10-cnn"]) == 2
    err = capsys.readouterr().err
    assert "gmnae zoo import small-cnn-zoo" in err and len(err.strip().splitlines()) == 1


def test_architecture_mismatch(digits_cnn_zoo, tmp_path, capsys):
    assert main(["train", "dataset=digits-inr", f"dataset.zoo={digits_cnn_zoo.root}", f"runs_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "expects siren" in err and str(digits_cnn_zoo.root) in err


def test_corrupt_shard_stops_before_training(digits_inr_zoo, tmp_path, capsys):
    zoo = tmp_path / "digits-inr"
    shutil.copytree(digits_inr_zoo.root, zoo)
    with h5py.File(zoo / "train-00000.h5", "r+") as f:
        f["params"][0, 0] = 42.0
    assert main(["train", f"dataset.zoo={zoo}", f"runs_dir={tmp_path}/runs"]) == 2
    err = capsys.readouterr().err
    assert "train-00000.h5 is corrupt" in err
    assert not (tmp_path / "runs").exists()  # nothing started


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_smoke_run_on_cuda(digits_cnn_zoo, tmp_path):
    run_dir = train(load_config(tiny_overrides(digits_cnn_zoo.root, tmp_path, "digits-cnn",
                                               **{"trainer.accelerator": "gpu", "evaluation.enabled": "true",
                                                  "evaluation.pairs_per_type": 2, "evaluation.lambdas": 5})))
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6
    assert (run_dir / "report.html").exists()


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("gmnae: error:") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("where", ["typo", "empty"])
@pytest.mark.parametrize("build_flag", [[], ["--build-zoo"]])
def test_missing_zoo_stops_instead_of_building(tmp_path, capsys, where, build_flag):
    """A mistyped or moved dataset.zoo, or an empty folder, never starts a build of many minutes --
    not even with --build-zoo (`make train`), which builds only at the dataset's own zoo path."""
    zoo = tmp_path / "zoo" / "digits-inrr"
    if where == "empty":
        zoo.mkdir(parents=True)
    assert main(["train", *build_flag, f"dataset.zoo={zoo}", f"runs_dir={tmp_path}/runs"]) == 2
    err = _one_line(capsys)
    assert f"no zoo at {zoo}" in err and f"gmnae zoo build digits-inr --out {zoo}" in err
    assert not (tmp_path / "runs").exists()
    assert (list(zoo.iterdir()) == []) if where == "empty" else not zoo.exists()


def test_only_the_default_zoo_path_is_built_on_request(tmp_path, monkeypatch):
    from gmnae.data.zoo_checks import builds_missing_zoo

    monkeypatch.chdir(tmp_path)  # the default zoo/digits-inr is missing here
    cfg = load_config([])
    assert cfg.dataset.zoo == str(tmp_path / "zoo" / "digits-inr")  # saved configs hold absolute paths
    assert builds_missing_zoo(cfg, build_zoo=True) and not builds_missing_zoo(cfg, build_zoo=False)
    assert not builds_missing_zoo(load_config(["dataset.zoo=elsewhere/digits-inr"]), build_zoo=True)
    assert not builds_missing_zoo(load_config(["dataset=cifar10-cnn"]), build_zoo=True)  # imported, not built


def test_resume_from_another_directory_finds_the_zoo(digits_inr_zoo, tmp_path, monkeypatch):
    monkeypatch.chdir(digits_inr_zoo.root.parent)  # the run is started with a relative dataset.zoo
    run = train(load_config(tiny_overrides(digits_inr_zoo.root.name, tmp_path, run_name="rel",
                                           **{"trainer.max_epochs": 1})))
    assert f"zoo: {digits_inr_zoo.root}\n" in (run / "config.yaml").read_text()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", str(run), "trainer.max_epochs=2"]) == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6


def test_dataset_zoo_that_is_a_file(tmp_path, capsys):
    (tmp_path / "zoo.h5").write_bytes(b"x")
    assert main(["train", f"dataset.zoo={tmp_path / 'zoo.h5'}", f"runs_dir={tmp_path}/runs"]) == 2
    assert f"dataset.zoo {tmp_path / 'zoo.h5'} is a file, not a zoo folder" in _one_line(capsys)


@pytest.mark.parametrize("runs_dir,says", [("file", "is a file, not a folder"),
                                           ("file/below", "is a file, not a folder"),
                                           ("/proc/gmnae-runs", "cannot write in /proc")])
def test_runs_dir_that_cannot_hold_runs(digits_inr_zoo, tmp_path, capsys, runs_dir, says):
    (tmp_path / "file").write_text("x")
    runs = runs_dir if runs_dir.startswith("/") else tmp_path / runs_dir
    assert main(["train", f"dataset.zoo={digits_inr_zoo.root}", f"runs_dir={runs}"]) == 2
    err = _one_line(capsys)
    assert f"runs_dir={runs}" in err and says in err


# ---- a run that stops before it starts, validation of a saved run, a typo on resume -------------------
def test_a_run_that_stops_before_training_leaves_no_folder(digits_inr_zoo, tmp_path, capsys):
    """`too few networks for the batch` is found when Lightning sets the data up, after it made the run's log
    folders: the folder goes, so the next run does not start in a folder with another run's files."""
    runs = tmp_path / "runs"
    assert main(["train", *tiny_overrides(digits_inr_zoo.root, runs), "data.batch_size=4096"]) == 2
    assert "too few" in _one_line(capsys)
    assert not runs.exists() or not any(runs.iterdir())


def test_a_taken_folder_without_config_is_not_reused(tmp_path):
    from gmnae.training.run_folder import RUN_DIR_ENV, resolve_run_dir

    cfg = load_config([f"runs_dir={tmp_path}"])
    (tmp_path / "digits-inr-scalegmn-small-s0" / "tensorboard").mkdir(parents=True)  # a failed start's leftovers
    try:
        assert resolve_run_dir(cfg).name == "digits-inr-scalegmn-small-s0-v2"
    finally:
        import os

        os.environ.pop(RUN_DIR_ENV, None)


def test_validate_a_checkpoint_with_its_runs_own_settings(inr_run, tmp_path, monkeypatch, capsys):
    """The run was trained with model.encoder.d=16 on a fixture zoo; the defaults say d=64 and zoo/digits-inr."""
    monkeypatch.chdir(tmp_path)  # no zoo/digits-inr here
    assert main(["train", "mode=validate", f"ckpt_path={inr_run / 'checkpoints' / 'last.ckpt'}",
                 "trainer.limit_val_batches=1"]) == 0
    out = capsys.readouterr()
    assert f"settings from {inr_run / 'config.yaml'}" in out.err
    assert list(inr_run.glob("validate-last-*/validate_metrics.json"))


def test_a_typo_on_resume_is_not_called_a_settings_mismatch(inr_run, capsys):
    assert main(["train", "--resume", str(inr_run), "trainer.max_epochs=abc"]) == 2
    err = _one_line(capsys)
    assert "trainer.max_epochs = 'abc' is not an integer" in err and "trained with" not in err


def test_a_gpu_default_on_a_machine_without_one_trains_on_the_cpu(monkeypatch, capsys):
    """dataset=mnist-inr suggests trainer=gpu; without a GPU that was a 31-line MisconfigurationException."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "dataset=mnist-inr", "--print-config"]) == 0
    out = capsys.readouterr()
    assert "training with trainer=cpu instead of trainer=gpu (the default of dataset=mnist-inr)" in out.err
    assert len(out.err.strip().splitlines()) == 1 and "accelerator: cpu" in out.out
    assert main(["train", "dataset=mnist-inr", "trainer=gpu", "--print-config"]) == 2  # asked for: one line
    assert "this machine has no CUDA GPU; add trainer=cpu" in _one_line(capsys)
