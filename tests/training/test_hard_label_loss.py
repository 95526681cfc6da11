"""The hard-label agreement term of the CNN autoencoder loss, against a hand computation."""
import numpy as np
import pytest
import torch

from gmnae.training.losses import teacher_label_ce
from gmnae.tasks import digits
from gmnae.weightspace import cnn_forward


def test_teacher_label_ce_is_the_cross_entropy_to_the_teachers_argmax(trained_relu_cnns):
    arch, nets = trained_relu_cnns
    x = digits.classification_images("test")[0][:64].double()
    t, s = cnn_forward(arch, nets[:4], x), cnn_forward(arch, nets[4:8], x)
    got = teacher_label_ce(t, s)
    sl, target = s.numpy(), t.numpy().argmax(-1)
    logp = sl - sl.max(-1, keepdims=True) - np.log(np.exp(sl - sl.max(-1, keepdims=True)).sum(-1, keepdims=True))
    hand = -np.take_along_axis(logp, target[..., None], -1)[..., 0].mean(-1)
    np.testing.assert_allclose(got.numpy(), hand, rtol=1e-10)
    # a network agreeing with itself pays only its own uncertainty: below a different network's cost
    assert (teacher_label_ce(t, t) < got).all()


def _model(loss):
    from gmnae.training.autoencoder import WeightSpaceAutoencoder
    from gmnae.weightspace import Architecture

    arch = Architecture.small_cnn("relu", padding="same", image_size=(8, 8), name="digits-cnn-relu")
    return WeightSpaceAutoencoder(arch.to_dict(), "cnn", {"d": 8, "n_layers": 1, "latent_dim": 8},
                                  {"type": "mlp", "hidden": [8, 8]}, {}, loss=loss,
                                  task={"name": "digits", "split_seed": 0})


def test_mixup_images_are_blends_of_two_train_images():
    x, y = digits.classification_images("train")
    plain_x, plain_y = _model({"mixup": 0.0})._image_batch("train", 32)
    g = torch.Generator().manual_seed(1000)  # the model's seeded stream, drawn in the same order
    idx = torch.randint(len(x), (32,), generator=g)
    assert torch.equal(plain_x, x[idx]) and torch.equal(plain_y, y[idx])  # mixup 0: the plain draw
    mixed_x, mixed_y = _model({"mixup": 0.5})._image_batch("train", 32)
    partner = torch.randint(len(x), (16,), generator=g)
    lam = torch.rand(16, generator=g).view(-1, 1, 1, 1)
    torch.testing.assert_close(mixed_x[:16], lam * x[idx[:16]] + (1 - lam) * x[partner], rtol=0, atol=1e-6)
    assert torch.equal(mixed_x[16:], x[idx[16:]]) and torch.equal(mixed_y, y[idx])
    assert not any(torch.equal(m, t) for m in mixed_x[:16] for t in x[idx[:16]])
