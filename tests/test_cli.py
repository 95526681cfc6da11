"""What a user sees: --version, sub-command listings, train --help, the run folder first, no Lightning tips."""
import pytest

from gmnae.cli import main

from .training.conftest import gmnae_cmd, run_cmd, tiny_overrides


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    from gmnae import __version__

    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"gmnae {__version__}"


def test_zoo_without_a_subcommand_lists_them(capsys):
    with pytest.raises(SystemExit):
        main(["zoo"])
    assert "{build,info,verify,import}" in capsys.readouterr().err


def test_train_help_lists_datasets_and_the_run_folder(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "digits-inr" in out and "digits-cnn" in out and "mnist-inr" in out and "run folder: runs_dir/run_name" in out


def test_run_prints_its_folder_first_and_no_tips(digits_inr_zoo, tmp_path):
    proc = run_cmd(gmnae_cmd("train", *tiny_overrides(digits_inr_zoo.root, tmp_path, run_name="shown",
                                                       **{"trainer.max_epochs": 1})))
    assert proc.stdout.splitlines()[0] == f"run folder: {tmp_path / 'shown'}"
    shown = proc.stdout + proc.stderr
    assert "Tip:" not in shown and "transfer_batch_to_device" not in shown and "__len__" not in shown
