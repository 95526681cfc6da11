"""CIFAR-10 task images from the standard python-version batches, grayscale in [-1, 1]."""
import os
import pickle

import numpy as np
import pytest

from gmnae.errors import GmnaeError
from gmnae.tasks import cifar10
from gmnae.tasks.classification import task_images

NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_batches(folder, n=4, seed=0, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for name in NAMES:
        d = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=protocol)
        out[name] = d
    return out


@pytest.mark.parametrize("protocol", [2, 5])
def test_grayscale_images_as_the_zoo_was_trained(tmp_path, protocol):
    batches = write_batches(tmp_path / "cifar-10-batches-py", protocol=protocol)
    x, y = cifar10.grayscale_images(tmp_path, "train")  # the folder holding cifar-10-batches-py
    assert x.shape == (20, 1, 32, 32) and x.dtype.is_floating_point and y.shape == (20,)
    rgb = np.concatenate([batches[n][b"data"] for n in NAMES[:5]]).reshape(20, 3, 32, 32).astype(np.float64)
    np.testing.assert_allclose(x.numpy()[:, 0], (rgb / 255 * 2 - 1).mean(axis=1), atol=1e-6)
    assert y.tolist() == sum((batches[n][b"labels"] for n in NAMES[:5]), [])
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    # Pixel (r, c) of the data row is plane * 1024 + r * 32 + c.
    d = batches["data_batch_1"][b"data"][0].astype(int)
    assert x[0, 0, 2, 5].item() == pytest.approx((d[2 * 32 + 5] + d[1024 + 2 * 32 + 5] + d[2048 + 2 * 32 + 5]) / 3 / 127.5 - 1, abs=1e-6)
    xt, yt = task_images({"name": "cifar10"}, "test", tmp_path / "cifar-10-batches-py")  # the folder itself
    assert xt.shape == (4, 1, 32, 32) and yt.tolist() == batches["test_batch"][b"labels"]


def test_missing_files_are_named_with_the_fix(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    os.remove(tmp_path / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(GmnaeError, match=r"missing test_batch.*cifar-10-python.tar.gz"):
        cifar10.grayscale_images(tmp_path, "test")
    with pytest.raises(GmnaeError, match="data_root"):
        cifar10.grayscale_images(None, "train")
    with pytest.raises(GmnaeError, match="'train' and 'test'"):
        cifar10.grayscale_images(tmp_path, "val")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_bad_batches_are_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_batches(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f)
    with pytest.raises(GmnaeError, match=r"test_batch is not a CIFAR-10 python batch.*refusing to load"):
        cifar10.grayscale_images(folder, "test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(GmnaeError, match=r"uint8 \[N, 3072\]"):
        cifar10.grayscale_images(folder, "test")
