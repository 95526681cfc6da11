"""Shared fixtures: small but *really trained* zoos, built once per test session with the forge."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch

from gmnae.zoo import Zoo
from gmnae.zoo.forge import build_zoo

torch.set_num_threads(2)
# the matcher's measured solver choice is kept on disk: never in the user's cache from the tests
os.environ["GMNAE_CACHE_DIR"] = tempfile.mkdtemp(prefix="gmnae-test-cache-")


@pytest.fixture(scope="session")
def digits_inr_zoo(tmp_path_factory) -> Zoo:
    """48 images x 2 seeds of trained SIRENs (~30 dB)."""
    out = tmp_path_factory.mktemp("zoos") / "digits-inr"
    build_zoo("digits-inr", out, progress=False, size=48, seeds=2, steps=120, block_size=96)
    return Zoo(out)


@pytest.fixture(scope="session")
def digits_cnn_zoo(tmp_path_factory) -> Zoo:
    """96 trained digits CNNs, ReLU and tanh mixed, hyperparameters drawn per network."""
    out = tmp_path_factory.mktemp("zoos") / "digits-cnn"
    build_zoo("digits-cnn", out, progress=False, size=96, steps=150, block_size=96)
    return Zoo(out)


@pytest.fixture(scope="session")
def digits_leaky_cnn_zoo(tmp_path_factory) -> Zoo:
    """24 trained digits CNNs with LeakyReLU: the activation added by one registry row (weightspace/registry.py)."""
    from gmnae.cli import main

    out = tmp_path_factory.mktemp("zoos") / "digits-cnn-leaky"
    assert main(["zoo", "build", "digits-cnn", "--activations", "leaky_relu", "--out", str(out), "--size", "24",
                 "--steps", "150", "--block-size", "24", "--threads", "1", "--no-progress"]) == 0
    return Zoo(out)


def zoo_params(zoo: Zoo, split: str = "train", activation: str | None = None, limit: int | None = None,
               dtype=torch.float32) -> torch.Tensor:
    """Trained networks of a zoo as a tensor, optionally only those with the given activation."""
    params = torch.from_numpy(zoo.read_params(split)).to(dtype)
    if activation is not None and zoo.arch.activation == "mixed":
        acts = np.array(zoo.activations(split))
        params = params[torch.from_numpy(acts == activation)]
    return params[:limit] if limit else params


@pytest.fixture(scope="session")
def trained_sirens(digits_inr_zoo):
    return digits_inr_zoo.arch, zoo_params(digits_inr_zoo, limit=16, dtype=torch.float64)


@pytest.fixture(scope="session")
def trained_relu_cnns(digits_cnn_zoo):
    return digits_cnn_zoo.arch.with_activation("relu"), zoo_params(digits_cnn_zoo, activation="relu", limit=12,
                                                                    dtype=torch.float64)


@pytest.fixture(scope="session")
def trained_leaky_cnns(digits_leaky_cnn_zoo):
    return digits_leaky_cnn_zoo.arch, zoo_params(digits_leaky_cnn_zoo, limit=12, dtype=torch.float64)


@pytest.fixture(scope="session")
def trained_tanh_cnns(digits_cnn_zoo):
    return digits_cnn_zoo.arch.with_activation("tanh"), zoo_params(digits_cnn_zoo, activation="tanh", limit=12,
                                                                    dtype=torch.float64)
