"""FunctionProbe: exactly invariant on trained networks, sensitive to noise, outputs = reference modules."""
import pytest
import torch

from gmnae.nn import FunctionProbe
from gmnae.tasks.digits import classification_images
from gmnae.weightspace import build_module, random_transform

CASES = [("trained_sirens", "PD"), ("trained_relu_cnns", "PS"), ("trained_tanh_cnns", "PD")]


def _probe(arch, points, dtype=torch.float64):
    torch.manual_seed(0)
    probe = FunctionProbe(arch, latent_dim=16, points=points).to(dtype)
    if arch.family != "siren":
        probe.set_inputs(classification_images("train", 0)[0][:points].to(dtype))
    return probe


@pytest.mark.parametrize("name,kinds", CASES)
def test_probe_is_invariant_on_trained_networks(request, name, kinds):
    arch, params = request.getfixturevalue(name)
    probe = _probe(arch, 16)
    gen = torch.Generator().manual_seed(5)
    moved = random_transform(arch, params, kinds, generator=gen)
    noisy = params + 0.01 * params.std() * torch.randn(params.shape, generator=gen, dtype=params.dtype)
    with torch.no_grad():
        z, zm, zn = probe(params), probe(moved), probe(noisy)
    sym = ((zm - z).norm(dim=1) / z.norm(dim=1)).max()
    noise = ((zn - z).norm(dim=1) / z.norm(dim=1)).min()
    assert sym < 1e-9
    assert noise > 1e4 * sym and noise > 1e-4


@pytest.mark.parametrize("name", ["trained_sirens", "trained_tanh_cnns"])
def test_probe_outputs_equal_reference_modules(request, name):
    arch, params = request.getfixturevalue(name)
    probe = _probe(arch, 16)
    with torch.no_grad():
        out = probe.outputs(params[:3])
        for i in range(3):
            net = build_module(arch, params[i]).double()
            ref = net(probe.inputs)
            if arch.family != "siren":
                ref = torch.log_softmax(ref, -1).clamp_min(-20.0)
            torch.testing.assert_close(out[i], ref.flatten())


def test_siren_probe_grid_and_errors(trained_sirens, trained_relu_cnns):
    arch, _ = trained_sirens
    probe = _probe(arch, 64)
    assert probe.inputs.shape == (64, 2) and probe.inputs.abs().max() < 1  # cell centres inside the image
    with pytest.raises(ValueError, match="square"):
        FunctionProbe(arch, 16, points=10)
    cnn = FunctionProbe(trained_relu_cnns[0], 16, points=4)
    with pytest.raises(ValueError, match="probe images"):
        cnn.set_inputs(torch.zeros(3, 1, 8, 8))
