"""The hard-label agreement term of the CNN autoencoder loss, against a hand computation."""
import numpy as np
import pytest
import torch

from gmnae.losses import teacher_label_ce
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
