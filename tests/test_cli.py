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
    assert "{build,info,verify,export,import}" in capsys.readouterr().err


def test_train_help_lists_datasets_and_the_run_folder(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "digits-inr" in out and "digits-cnn" in out and "mnist-inr" in out and "run folder: runs_dir/run_name" in out


def test_merge_help_names_every_architecture_it_accepts(capsys):
    from gmnae.weightspace.architecture import NAMED_ARCHITECTURES, named_architecture

    with pytest.raises(SystemExit):
        main(["merge", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    for name in NAMED_ARCHITECTURES:
        assert name in out
        assert named_architecture(name).n_params > 0


def test_run_prints_its_folder_first_and_no_tips(digits_inr_zoo, tmp_path):
    proc = run_cmd(gmnae_cmd("train", *tiny_overrides(digits_inr_zoo.root, tmp_path, run_name="shown",
                                                       **{"trainer.max_epochs": 1})))
    assert proc.stdout.splitlines()[0] == f"run folder: {tmp_path / 'shown'}"
    shown = proc.stdout + proc.stderr
    assert "Tip:" not in shown and "transfer_batch_to_device" not in shown and "__len__" not in shown


@pytest.mark.parametrize("command,zoo", [(["train", "--print-config"], None), (["zoo", "info"], "digits_inr_zoo")])
def test_a_reader_that_stops_early_is_no_error(command, zoo, request):
    """`gmnae zoo info Z | head -1`: the pipe closes before gmnae has written; no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    if zoo:  # named in the parameters, so tests/conftest.py files this case under integration
        command = [*command, str(request.getfixturevalue(zoo).root)]
    read, write = os.pipe()
    os.close(read)  # the reader has gone: every write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "gmnae", *command], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_top_level_help_lists_every_zoo_and_how_to_get_it(capsys):
    from gmnae.zoo.catalogue import CATALOGUE

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for zoo in CATALOGUE:
        assert any(line.split()[:1] == [zoo.name] and "gmnae zoo" in line for line in out.splitlines()), zoo.name
