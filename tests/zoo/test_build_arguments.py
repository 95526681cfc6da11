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


def test_build_into_a_folder_that_cannot_be_written_is_one_line(capsys):
    assert main(["zoo", "build", "digits-inr", "--size", "2", "--out", "/proc/gmnae/z", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gmnae: error: zoo folder /proc/gmnae/z: cannot write in /proc") and len(err.splitlines()) == 1


def test_sigterm_during_a_build_says_it_resumes(tmp_path):
    """As Ctrl-C does: one line, and the signal's exit code (143); the build resumes when rerun."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "z"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gmnae", "zoo", "build", "digits-inr", "--size", "400",
                             "--block-size", "40", "--out", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (out / ".build" / "config.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("gmnae: stopped by SIGTERM; the build resumes where it stopped: "
                                            "run the same command again"), err
    assert "Traceback" not in err
