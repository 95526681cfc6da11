"""Shared fixtures: small but *really trained* zoos, built once per test session with the forge.

Test tiers. A test that uses a trained zoo (one of TRAINED_ZOOS, directly or through another fixture such as
`trained_sirens` or `inr_autoencoder_run`) is marked `integration` here, at collection; a test that trains or
builds in another way (a subprocess, its own zoo) carries `@pytest.mark.integration` (or a module's
`pytestmark`) itself. Every other test is a unit test: `make test-fast` runs those (`-m "not slow and not
integration"`, under 2 minutes on 2 cores); `make test` runs both tiers.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np

import pytest
import torch

from gmnae.zoo import Zoo
from gmnae.zoo.forge import build_zoo

torch.set_num_threads(2)
# the matcher's measured solver choice is kept on disk: never in the user's cache from the tests
os.environ["GMNAE_CACHE_DIR"] = tempfile.mkdtemp(prefix="gmnae-test-cache-")
atexit.register(shutil.rmtree, os.environ["GMNAE_CACHE_DIR"], ignore_errors=True)  # one per run, not one per run left behind

TRAINED_ZOOS = {"digits_inr_zoo", "digits_cnn_zoo", "digits_leaky_cnn_zoo"}


def _uses_a_trained_zoo(item) -> bool:
    """Its fixtures, and the fixtures it names in a parameter (`request.getfixturevalue(name)`), depend on one of
    TRAINED_ZOOS, followed through the fixtures they use."""
    callspec = getattr(item, "callspec", None)
    todo = [*getattr(item, "fixturenames", ()),
            *(v for v in (callspec.params.values() if callspec else ()) if isinstance(v, str))]
    seen = set()
    while todo:
        name = todo.pop()
        if name in TRAINED_ZOOS:
            return True
        if name in seen:
            continue
        seen.add(name)
        for fixture in item.session._fixturemanager.getfixturedefs(name, item) or ():
            todo.extend(fixture.argnames)
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _uses_a_trained_zoo(item):
            item.add_marker(pytest.mark.integration)


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
