"""`gmnae zoo build` refuses counts that would silently mean something else."""
import pytest

from gmnae.cli import main


@pytest.mark.parametrize("flag", ["--size", "--block-size", "--seeds", "--steps"])
def test_build_refuses_zero_counts(tmp_path, capsys, flag):
    """0 used to mean "all" (--size: a full 3,594-network build) or divide by zero (--block-size)."""
    assert main(["zoo", "build", "digits-inr", flag, "0", "--out", str(tmp_path / "z"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{flag} 0: must be at least 1" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "z").exists()


def test_activations_are_for_cnn_zoos(tmp_path, capsys):
    assert main(["zoo", "build", "digits-inr", "--activations", "relu", "--out", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--activations is for the CNN zoos" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "z").exists()
