"""A quickly trained autoencoder run on the fixture INR zoo, shared by the autoencoder-merge tests."""
import pytest

from gmnae.config.load import load_config
from gmnae.commands.train import train

from ..training.conftest import tiny_overrides


@pytest.fixture(scope="session")
def inr_autoencoder_run(digits_inr_zoo, tmp_path_factory):
    """A few steps of the CPU default model (ScaleGMN + function probe) on the fixture digits-inr zoo."""
    runs = tmp_path_factory.mktemp("ae-runs")
    return train(load_config(tiny_overrides(digits_inr_zoo.root, runs, run_name="ae")))
