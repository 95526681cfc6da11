"""Batched functional forward == ordinary nn.Module forward of each network."""
import pytest
import torch

from gmnae.tasks import digits
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import Architecture, build_module, cnn_forward, flatten, siren_render, unflatten


def test_unflatten_returns_views_and_round_trips():
    arch = Architecture.small_cnn("relu")
    flat = torch.randn(3, arch.n_params)
    layers = unflatten(arch, flat)
    layers[1][0][0, 0, 0, 0, 0] = 123.0  # writes through to the flat batch
    assert (flat == 123.0).sum() == 1
    assert torch.equal(flatten(layers), flat)
    assert [tuple(w.shape[1:]) for w, _ in layers] == [(16, 1, 3, 3), (16, 16, 3, 3), (16, 16, 3, 3), (10, 16)]
    assert arch.n_params == 4970


def test_unflatten_rejects_wrong_width():
    with pytest.raises(ValueError, match="needs 1185"):
        unflatten(Architecture.siren(), torch.zeros(2, 1000))


def test_siren_render_matches_module(trained_sirens):
    arch, params = trained_sirens
    coords = coordinate_grid(28, dtype=torch.float64)
    out = siren_render(arch, params, coords)
    for i in range(len(params)):
        ref = build_module(arch, params[i])(coords)
        torch.testing.assert_close(out[i], ref, rtol=0, atol=1e-10)


def test_trained_siren_renders_its_digit_upright(digits_inr_zoo):
    """The rendering reshaped to 28x28 is the (upsampled) digit, not its transpose."""
    params = torch.from_numpy(digits_inr_zoo.read_params("train", limit=8)).double()
    meta = digits_inr_zoo.read_meta("train", limit=8)
    img = siren_render(digits_inr_zoo.arch, params, coordinate_grid(28, dtype=torch.float64)).squeeze(-1).float()
    target = digits.inr_targets()[torch.from_numpy(meta["image_index"])]
    transposed = target.view(-1, 28, 28).transpose(1, 2).reshape(-1, 784)
    err = (img - target).pow(2).mean(1)
    err_t = (img - transposed).pow(2).mean(1)
    assert torch.all(err < 0.01) and torch.all(err * 3 < err_t)


@pytest.mark.parametrize("padding,size", [("valid", 32), ("same", 8), ("same", 7)])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_cnn_forward_matches_module(padding, size, activation):
    arch = Architecture.small_cnn(activation, padding=padding, image_size=(size, size))
    params = torch.randn(4, arch.n_params, dtype=torch.float64) * 0.3
    images = torch.randn(5, 1, size, size, dtype=torch.float64)
    out = cnn_forward(arch, params, images)
    for i in range(4):
        torch.testing.assert_close(out[i], build_module(arch, params[i])(images), rtol=0, atol=1e-10)


@pytest.mark.parametrize("order", ["grouped", "interleaved"])
def test_cnn_forward_mixed_activations_and_own_images(trained_relu_cnns, trained_tanh_cnns, order):
    (arch, relu), (_, tanh) = trained_relu_cnns, trained_tanh_cnns
    params = torch.cat([relu[:3], tanh[:3]])
    acts = ["relu"] * 3 + ["tanh"] * 3
    if order == "interleaved":  # cnn_forward groups them by activation inside and must give them back in order
        perm = torch.tensor([0, 3, 4, 1, 5, 2])
        params, acts = params[perm], [acts[i] for i in perm]
    params = params.clone().requires_grad_(True)
    images = torch.randn(6, 4, 1, 8, 8, dtype=torch.float64)  # each network its own batch
    out = cnn_forward(arch.with_activation("mixed"), params, images, acts)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    for i in range(6):
        p = params[i].detach().clone().requires_grad_(True)
        ref = cnn_forward(arch.with_activation(acts[i]), p[None], images[i:i + 1])[0]
        torch.testing.assert_close(out[i], build_module(arch, params[i].detach(), activation=acts[i])(images[i]),
                                   rtol=0, atol=1e-10)
        (ref * weights[i]).sum().backward()
        torch.testing.assert_close(params.grad[i], p.grad, rtol=0, atol=1e-10)


def test_trained_cnns_classify_digits(digits_cnn_zoo):
    params = torch.from_numpy(digits_cnn_zoo.read_params("train"))
    acts = digits_cnn_zoo.activations("train")
    x, y = digits.classification_images("test")
    acc = (cnn_forward(digits_cnn_zoo.arch, params, x, acts).argmax(-1) == y).float().mean(1)
    recorded = torch.from_numpy(digits_cnn_zoo.read_meta("train")["test_accuracy"]).float()
    torch.testing.assert_close(acc, recorded, atol=1e-6, rtol=0)
    assert acc.max() > 0.8
