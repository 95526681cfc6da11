"""Thread count: from the CPUs this process may use and the machine's load, or as told; applied by every command."""
import os

import pytest
import torch

from gmnae.cli import main
from gmnae.config import load_config
from gmnae.errors import ConfigError
from gmnae.threads import auto_threads, choose_threads, usable_cpus


def test_auto_is_within_the_cpus_we_may_use(monkeypatch):
    monkeypatch.delenv("GMNAE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert usable_cpus() <= len(os.sched_getaffinity(0))
    assert 1 <= auto_threads() <= usable_cpus()
    assert choose_threads() == (auto_threads(), "auto")


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
