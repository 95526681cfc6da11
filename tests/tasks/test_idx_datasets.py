"""IDX image sets (Fashion-MNIST, MNIST) from tiny files written in the exact format: magic 2051 / 2049,
big-endian sizes, gzipped or not; every bad file stops in one line naming it and both ways to get the data."""
import struct

import numpy as np
import pytest

from gmnae.errors import GmnaeError
from gmnae.tasks import idx_datasets
from tests.tasks.test_mnist import idx_bytes, write_idx  # the IDX format as written, shared with the MNIST tests


def write_idx_set(folder, n_train=24, n_test=6, gz=True, seed=0):
    """Images and labels of a tiny IDX set in `folder` (the four standard file names); returns them as written."""
    rng = np.random.default_rng(seed)
    data = {split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8))
            for split, n in (("train", n_train), ("test", n_test))}
    write_idx(folder, data, gz=gz)
    return data


def test_magic_numbers_are_the_published_ones():
    assert struct.unpack(">I", idx_bytes(np.zeros((2, 28, 28)))[:4])[0] == 2051
    assert struct.unpack(">I", idx_bytes(np.zeros(2))[:4])[0] == 2049


@pytest.mark.parametrize("gz", [True, False])
def test_reads_images_and_labels_gzipped_or_not(tmp_path, gz):
    data = write_idx_set(tmp_path / "fm", gz=gz)
    got = idx_datasets.load("fmnist", tmp_path / "fm")
    for split, (images, labels) in data.items():
        np.testing.assert_array_equal(got[f"{split}_images"], images)
        np.testing.assert_array_equal(got[f"{split}_labels"], labels)
        assert got[f"{split}_labels"].dtype == np.int64


def test_finds_torchvisions_raw_folder(tmp_path):
    data = write_idx_set(tmp_path / "data" / "FashionMNIST" / "raw")
    np.testing.assert_array_equal(idx_datasets.load("fmnist", tmp_path / "data")["test_labels"], data["test"][1])


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_file_names_it_and_both_ways_to_get_it(tmp_path):
    write_idx_set(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(GmnaeError) as e:
        idx_datasets.load("fmnist", tmp_path / "fm")
    msg = _one_line(e)
    assert "t10k-labels-idx1-ubyte" in msg and "apt-get install dataset-fashion-mnist" in msg and "--src" in msg


def test_missing_folder_and_mnist_without_src(tmp_path):
    with pytest.raises(GmnaeError, match="does not exist.*apt-get install dataset-fashion-mnist"):
        idx_datasets.load("fmnist", tmp_path / "nowhere")
    with pytest.raises(GmnaeError, match="no MNIST folder given.*--src"):
        idx_datasets.load("mnist", None)


def test_truncated_file_is_named(tmp_path):
    write_idx_set(tmp_path / "fm", gz=False)
    path = tmp_path / "fm" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(GmnaeError) as e:
        idx_datasets.load("fmnist", tmp_path / "fm")
    msg = _one_line(e)
    assert str(path) in msg and "truncated" in msg and "apt-get install" in msg


def test_truncated_gzip_is_named(tmp_path):
    write_idx_set(tmp_path / "fm")
    path = tmp_path / "fm" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(GmnaeError) as e:
        idx_datasets.load("fmnist", tmp_path / "fm")
    assert str(path) in _one_line(e)


def test_wrong_magic_is_named(tmp_path):
    write_idx_set(tmp_path / "fm", gz=False)
    path = tmp_path / "fm" / "train-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # float data instead of unsigned bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(GmnaeError) as e:
        idx_datasets.load("fmnist", tmp_path / "fm")
    msg = _one_line(e)
    assert str(path) in msg and "magic" in msg


def test_labels_that_do_not_match_the_images(tmp_path):
    write_idx_set(tmp_path / "fm", gz=False)
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5)))
    with pytest.raises(GmnaeError, match="t10k-labels-idx1-ubyte.*6 images"):
        idx_datasets.load("fmnist", tmp_path / "fm")
