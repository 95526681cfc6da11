"""Each symmetry action preserves the function of *trained* networks; a non-symmetry change does not."""
import pytest
import torch

from gmnae.tasks import digits
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import (apply_element, compose, forward, identity_element, invert, random_element,
                               random_transform)


def _inputs(arch):
    if arch.family == "siren":
        return coordinate_grid(28, dtype=torch.float64)
    return digits.classification_images("test")[0][:64].double()


CASES = [("trained_sirens", "P"), ("trained_sirens", "D"), ("trained_sirens", "PD"),
         ("trained_tanh_cnns", "P"), ("trained_tanh_cnns", "D"), ("trained_tanh_cnns", "PD"),
         ("trained_relu_cnns", "P"), ("trained_relu_cnns", "S"), ("trained_relu_cnns", "PS"),
         ("trained_leaky_cnns", "P"), ("trained_leaky_cnns", "S"), ("trained_leaky_cnns", "PS")]


@pytest.mark.parametrize("fixture,symmetries", CASES)
def test_symmetry_preserves_function(request, fixture, symmetries):
    arch, params = request.getfixturevalue(fixture)
    g = torch.Generator().manual_seed(0)
    moved = random_transform(arch, params, symmetries, generator=g)
    x = _inputs(arch)
    y, y_moved = forward(arch, params, x), forward(arch, moved, x)
    assert (moved - params).abs().max() > 1e-2  # the weights really changed
    torch.testing.assert_close(y_moved, y, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("fixture,symmetries", [("trained_sirens", "S"), ("trained_tanh_cnns", "S"),
                                           ("trained_relu_cnns", "D"), ("trained_leaky_cnns", "D")])
def test_wrong_symmetry_changes_function(request, fixture, symmetries):
    """Scaling is no symmetry of sine/tanh, sign flips none of ReLU or LeakyReLU."""
    arch, params = request.getfixturevalue(fixture)
    moved = random_transform(arch, params, symmetries, generator=torch.Generator().manual_seed(0))
    x = _inputs(arch)
    diff = (forward(arch, moved, x) - forward(arch, params, x)).abs().amax(dim=(1, 2))
    assert torch.all(diff > 1e-3)


def test_unpaired_permutation_changes_function(trained_sirens):
    """Permuting only the incoming weights of a hidden layer (not the outgoing ones) is not a symmetry."""
    arch, params = trained_sirens
    broken = params.clone()
    w0 = broken[:, :64].view(-1, 32, 2)
    w0.copy_(w0.flip(1))
    x = _inputs(arch)
    diff = (forward(arch, broken, x) - forward(arch, params, x)).abs().amax(dim=(1, 2))
    assert torch.all(diff > 1e-3)


def test_group_algebra(trained_relu_cnns):
    arch, params = trained_relu_cnns
    g1 = random_element(arch, len(params), "PS", torch.Generator().manual_seed(1), dtype=torch.float64)
    g2 = random_element(arch, len(params), "PS", torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(apply_element(arch, apply_element(arch, params, g1), g2),
                               apply_element(arch, params, compose(g1, g2)))
    torch.testing.assert_close(apply_element(arch, apply_element(arch, params, g1), invert(g1)), params)
    torch.testing.assert_close(apply_element(arch, params, identity_element(arch, len(params), dtype=torch.float64)),
                               params)


def test_unknown_symmetry_is_rejected(trained_sirens):
    arch, params = trained_sirens
    with pytest.raises(ValueError, match="unknown symmetries"):
        random_transform(arch, params, "PX")
