"""Local MNIST copies: idx files (gz or not, torchvision's raw/ folder) and mnist_png folders agree."""
import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from gmnae.errors import GmnaeError
from gmnae.tasks import mnist


def idx_bytes(a: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def fake_mnist(seed=0, n_train=12, n_test=5):
    rng = np.random.default_rng(seed)
    return {s: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
            for s, n in (("train", n_train), ("test", n_test))}


def write_idx(folder, data, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for s, (img, lab) in data.items():
        for name, a in zip(mnist.IDX_FILES[s], (img, lab)):
            raw = idx_bytes(a)
            if gz:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(raw)
            else:
                (folder / name).write_bytes(raw)


def write_png(folder, data):
    for s, (img, lab) in data.items():
        for i, (im, l) in enumerate(zip(img, lab)):
            d = folder / mnist.PNG_DIRS[s] / str(int(l))
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im).save(d / f"{i}.png")


@pytest.mark.parametrize("layout", ["idx-gz", "idx", "torchvision", "png"])
def test_every_layout_gives_the_same_images(tmp_path, layout):
    data = fake_mnist()
    root = tmp_path / "mnist"
    if layout == "idx-gz":
        write_idx(root, data)
    elif layout == "idx":
        write_idx(root, data, gz=False)
    elif layout == "torchvision":
        write_idx(root / "MNIST" / "raw", data, gz=False)
    else:
        write_png(root / "mnist_png", data)
    for s in ("train", "test"):
        images, labels = mnist.load_mnist(root, s)
        np.testing.assert_array_equal(images, data[s][0])
        np.testing.assert_array_equal(labels, data[s][1])
        assert images.dtype == np.uint8 and labels.dtype == np.int64


def test_missing_and_corrupt_copies(tmp_path):
    with pytest.raises(GmnaeError, match="train-images-idx3-ubyte.gz.*mnist_png"):
        mnist.load_mnist(tmp_path, "train")
    data = fake_mnist()
    write_idx(tmp_path, {"test": data["test"]})
    with pytest.raises(GmnaeError, match=r"MNIST train images are missing.*train-images-idx3-ubyte\[.gz\]"):
        mnist.load_mnist(tmp_path, "train")
    assert mnist.load_mnist(tmp_path, "test")[0].shape == (5, 28, 28)
    bad = tmp_path / "bad"
    write_idx(bad, data, gz=False)
    p = bad / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(GmnaeError, match="truncated or corrupt"):
        mnist.load_mnist(bad, "train")
    png = tmp_path / "png"
    write_png(png, data)
    next((png / "training").glob("*/3.png")).unlink()
    with pytest.raises(GmnaeError, match=r"first missing: 3.png"):
        mnist.load_mnist(png, "train")
