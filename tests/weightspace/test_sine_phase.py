"""The SIREN phase canonicalization on trained SIRENs: same function, one representative per orbit."""
import math

import pytest
import torch

from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import Architecture, canonicalize_sine_phase, forward, random_transform, unflatten


def _shift_phase(arch, params, generator):
    """An independent move along the period symmetry: each hidden bias by a random whole number of
    half-periods π/w0 in [-5, 5], outgoing weights negated for the odd ones."""
    out = params.clone()
    layers = unflatten(arch, out)
    for (w, b), (w_next, _) in zip(layers[:-1], layers[1:]):
        k = torch.randint(-5, 6, b.shape, generator=generator).to(b.dtype)
        b.add_(k * math.pi / arch.w0)
        w_next.mul_((1.0 - 2.0 * torch.remainder(k, 2)).unsqueeze(-2))
    return out


def test_keeps_the_function_of_trained_sirens(trained_sirens):
    arch, params = trained_sirens
    canon = canonicalize_sine_phase(arch, params)
    x = coordinate_grid(28, dtype=torch.float64)
    assert (canon - params).abs().max() > 1e-2  # the weights really moved
    torch.testing.assert_close(forward(arch, canon, x), forward(arch, params, x), rtol=1e-9, atol=1e-9)
    period = math.pi / arch.w0
    for _, b in unflatten(arch, canon)[:-1]:
        assert float(b.min()) >= 0.0 and float(b.max()) <= 0.5 * period


@pytest.mark.parametrize("moves", ["phase", "sign", "phase+sign+permutation"])
def test_one_representative_per_orbit(trained_sirens, moves):
    """A network moved by its period, its sign symmetry or both canonicalizes to the same biases and,
    after the permutation is undone by sorting units, the same weights."""
    arch, params = trained_sirens
    g = torch.Generator().manual_seed(0)
    moved = params
    if "phase" in moves:
        moved = _shift_phase(arch, moved, g)
    if "sign" in moves:
        moved = random_transform(arch, moved, "PD" if "permutation" in moves else "D", generator=g)
    x = coordinate_grid(28, dtype=torch.float64)
    torch.testing.assert_close(forward(arch, moved, x), forward(arch, params, x), rtol=1e-7, atol=1e-7)
    assert (moved - params).abs().max() > 1e-2
    a, b = canonicalize_sine_phase(arch, params), canonicalize_sine_phase(arch, moved)
    if "permutation" not in moves:
        torch.testing.assert_close(b, a, rtol=0, atol=1e-9)
    else:  # same multiset of canonical biases per layer
        for (_, ba), (_, bb) in zip(unflatten(arch, a)[:-1], unflatten(arch, b)[:-1]):
            torch.testing.assert_close(bb.sort(dim=-1).values, ba.sort(dim=-1).values, rtol=0, atol=1e-9)


def test_encoder_sees_one_network_per_orbit(trained_sirens):
    """With `phase_canonical`, the ScaleGMN encoder is invariant to the period symmetry; without, it is not."""
    from gmnae.nn import EncoderConfig, ScaleGMNEncoder

    arch, params = trained_sirens
    params = params.float()
    moved = _shift_phase(arch, params.double(), torch.Generator().manual_seed(1)).float()
    encoders = []
    for phase_canonical in (False, True):
        torch.manual_seed(0)
        cfg = EncoderConfig.inr(d=16, n_layers=2, latent_dim=8, dropout=0.0, input_scale="layer-rms",
                                phase_canonical=phase_canonical)
        encoders.append(ScaleGMNEncoder(arch, cfg).eval())
        encoders[-1].set_input_scale(params)
    plain, canon = encoders
    with torch.no_grad():
        torch.testing.assert_close(canon(moved), canon(params), rtol=1e-4, atol=1e-4)
        latents = plain(params)
        spread = (latents - latents.mean(dim=0)).abs().max()  # how far apart different networks land
        assert (plain(moved) - latents).abs().max() > 0.5 * spread


def test_refuses_networks_without_sine():
    with pytest.raises(ValueError, match="SIRENs"):
        canonicalize_sine_phase(Architecture.small_cnn("relu"), torch.zeros(1, 10))
    from gmnae.nn import EncoderConfig, ScaleGMNEncoder
    with pytest.raises(ValueError, match="SIRENs"):
        ScaleGMNEncoder(Architecture.small_cnn("tanh"), EncoderConfig.cnn(d=8, n_layers=1, phase_canonical=True))
