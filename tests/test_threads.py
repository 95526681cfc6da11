"""Thread count: from the CPUs this process may use and the machine's load, or as told; applied by every command."""
import os

import pytest
import torch

from gmnae.cli import main
from gmnae.config.load import load_config
from gmnae.errors import ConfigError
from gmnae.threads import apply_threads, auto_threads, choose_threads, usable_cpus


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    """Each test starts without thread settings; whatever a test's commands set is undone after it."""
    for env in ("GMNAE_THREADS", "OMP_NUM_THREADS", "GMNAE_THREADS_CHOSEN"):
        monkeypatch.setenv(env, "x")  # records the value to restore
        monkeypatch.delenv(env)


def test_auto_is_within_the_cpus_we_may_use():
    assert usable_cpus() <= len(os.sched_getaffinity(0))
    assert 1 <= auto_threads() <= usable_cpus()
    assert choose_threads() == (auto_threads(), "auto")
    assert choose_threads(processes=64) == (1, "auto")  # CPU DDP ranks share the CPUs


def test_our_own_choice_is_not_taken_for_the_users(monkeypatch):
    before = torch.get_num_threads()
    try:
        n = apply_threads()  # cli.main: exports OMP_NUM_THREADS for torch and child processes
        assert os.environ["OMP_NUM_THREADS"] == str(n) == os.environ["GMNAE_THREADS_CHOSEN"]
        assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)
    assert choose_threads(processes=64) == (1, "auto")  # gmnae train with CPU ranks may still share them
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's
    assert choose_threads(processes=2) == (3, "OMP_NUM_THREADS")


def test_explicit_choices_win_in_order(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads() == (3, "OMP_NUM_THREADS")
    monkeypatch.setenv("GMNAE_THREADS", "2")
    assert choose_threads() == (2, "GMNAE_THREADS")
    assert choose_threads(5) == (5, "setting")


def test_every_command_applies_it(digits_inr_zoo, monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.setenv("GMNAE_THREADS", "1")
    torch.set_num_threads(2)
    try:
        assert main(["zoo", "info", str(digits_inr_zoo.root)]) == 0  # a command that never trains
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def test_threads_setting_is_checked():
    assert load_config(["threads=3"]).threads == 3
    with pytest.raises(ConfigError, match="threads = 0 must be >= 1"):
        load_config(["threads=0"])
