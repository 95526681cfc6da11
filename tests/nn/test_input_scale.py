"""`input_scale=layer-rms`: one constant per tensor, 1 / its RMS over the zoo; the encoder stays exactly invariant."""
import numpy as np
import torch

from gmnae.nn import EncoderConfig, ScaleGMNEncoder
from gmnae.weightspace import random_transform


def test_layer_rms_scale_matches_an_independent_computation_and_keeps_invariance(trained_sirens):
    arch, params = trained_sirens
    torch.manual_seed(0)
    enc = ScaleGMNEncoder(arch, EncoderConfig.inr(d=16, n_layers=2, latent_dim=8, dropout=0.0,
                                                  input_scale="layer-rms")).double().eval()
    enc.set_input_scale(params)
    p = params.numpy()
    sizes = [64, 32, 1024, 32, 32, 1]  # W0 [32,2], b0, W1 [32,32], b1, W2 [1,32], b2
    bounds = np.cumsum([0] + sizes)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        want = 1.0 / np.sqrt((p[:, lo:hi] ** 2).mean())
        np.testing.assert_allclose(enc.param_scale[lo:hi].numpy(), want, rtol=1e-6)
    moved = random_transform(arch, params, "PD", generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z, z_moved = enc(params), enc(moved)
    assert ((z_moved - z).norm(dim=1) / z.norm(dim=1)).max() < 1e-10
    # "none" leaves the input alone, and an old checkpoint without the buffer loads as "none"
    plain = ScaleGMNEncoder(arch, EncoderConfig.inr(d=16, n_layers=2, latent_dim=8, dropout=0.0))
    plain.set_input_scale(params)
    assert (plain.param_scale == 1).all()
    state = {k: v for k, v in enc.state_dict().items() if k != "param_scale"}
    enc.load_state_dict(state)
    assert (enc.param_scale == 1).all()


def test_layer_rms_keeps_scale_invariance_on_relu_cnns(trained_relu_cnns):
    arch, params = trained_relu_cnns
    torch.manual_seed(0)
    enc = ScaleGMNEncoder(arch, EncoderConfig.cnn(d=16, n_layers=2, latent_dim=8, dropout=0.0, symmetry="scale",
                                                  input_scale="layer-rms")).double().eval()
    enc.set_input_scale(params)
    moved = random_transform(arch, params, "PS", generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        z, z_moved = enc(params), enc(moved)
    assert ((z_moved - z).norm(dim=1) / z.norm(dim=1)).max() < 1e-8
